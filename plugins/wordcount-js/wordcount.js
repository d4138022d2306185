// Word count in JavaScript: the same three functions as the Rust reference
// (plugins/wordcount), run by QuickJS inside a wasm32-wasip1 module
// (src/lib.rs declares the exports and their types; see README.md).
//
//   map:split             line -> [word, 1n] for every whitespace-separated word
//   reduce:sum            adds two i64 counts (BigInt); overflow throws
//   update:running_count  state = running total per word; emits [word, total]

// A run of characters that are not white space as Rust's char::is_whitespace
// (Unicode White_Space) has it. JavaScript's \s differs: it includes U+FEFF
// and lacks U+0085. (One global match is about twice as fast in QuickJS as
// String.prototype.split with a regular expression.)
const WORD = /[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+/g;

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** Splits a line (a string: the host's bytes, checked to be UTF-8) into words. */
export function split(line) {
  return (line.match(WORD) ?? []).map((word) => [word, 1n]);
}

/** Adds two counts; fails rather than wrapping past the i64 range. */
export function sum(a, b) {
  const s = a + b;
  if (s < I64_MIN || s > I64_MAX) throw new Error(`count overflow adding ${a} and ${b}`);
  return s;
}

/** Running total per word: emits the new total of every word seen this batch. */
export function running_count(word, counts, total) {
  if (counts.length === 0) return [];
  let t = total.exists ? total.get() : 0n;
  for (const c of counts) t += c;
  // The Rust reference's release build wraps.
  t = BigInt.asIntN(64, t);
  total.set(t);
  return [[word, t]];
}
