// {{name}}: a weir plugin in AssemblyScript (word count), no imports.
// The ABI is in docs/abi.md of the weir source tree. AssemblyScript cannot
// put `:` in an export name, so the functions are exported as KIND__NAME
// (`map__split`), which the host reads as KIND:NAME.
//
//   map:split             line -> (word, i64 1) per word (Unicode
//                         whitespace); a line that is not UTF-8 fails.
//   reduce:sum            adds i64 counts; an overflow fails the call.
//   update:running_count  state = i64 total; with new values: total + sum
//                         (wrapping), emits (word, total); without: keeps
//                         the state (or none) and emits nothing.
//
// Build: npm install && npm run build

export function weir_abi_version(): i32 {
  return 1;
}

// The stub runtime's bump allocator: 16-byte aligned, never freed (the
// instance is thrown away after one call).
export function weir_alloc(size: u32): usize {
  return heap.alloc(size as usize);
}

// Reads the framing of docs/abi.md, checking every length.
class Reader {
  bad: bool = false;
  len: u32 = 0; // length of the last byte string read
  constructor(public pos: usize, public end: usize) {}

  u8(): u32 {
    if (this.bad || this.end - this.pos < 1) { this.bad = true; return 0; }
    const v = load<u8>(this.pos);
    this.pos += 1;
    return v;
  }

  u32(): u32 {
    if (this.bad || this.end - this.pos < 4) { this.bad = true; return 0; }
    const v = load<u32>(this.pos);
    this.pos += 4;
    return v;
  }

  // A byte string: returns its address, sets `len`.
  bytes(): usize {
    const n = this.u32();
    if (this.bad || <usize>(this.end - this.pos) < <usize>n) { this.bad = true; this.len = 0; return this.pos; }
    const p = this.pos;
    this.pos += n;
    this.len = n;
    return p;
  }
}

// Writes output into a buffer sized beforehand.
class Writer {
  len: usize = 0;
  constructor(public base: usize) {}

  u8(v: u32): void { store<u8>(this.base + this.len, <u8>v); this.len += 1; }
  u32(v: u32): void { store<u32>(this.base + this.len, v); this.len += 4; }
  bytes(p: usize, n: u32): void { this.u32(n); memory.copy(this.base + this.len, p, n); this.len += n; }
  count(v: i64): void { this.u32(8); store<i64>(this.base + this.len, v); this.len += 8; }
}

function inRange(b: u32, lo: u32, hi: u32): bool { return b >= lo && b <= hi; }

let codePoint: u32 = 0;

// Length of the UTF-8 character at p (n bytes left), its code point in
// `codePoint`; 0 when the bytes are not valid UTF-8.
function utf8Next(p: usize, n: usize): u32 {
  const b = <u32>load<u8>(p);
  if (b < 0x80) { codePoint = b; return 1; }
  let len: u32 = 0, lo: u32 = 0x80, hi: u32 = 0xbf;
  if (inRange(b, 0xc2, 0xdf)) len = 2;
  else if (inRange(b, 0xe0, 0xef)) { len = 3; if (b == 0xe0) lo = 0xa0; if (b == 0xed) hi = 0x9f; }
  else if (inRange(b, 0xf0, 0xf4)) { len = 4; if (b == 0xf0) lo = 0x90; if (b == 0xf4) hi = 0x8f; }
  else return 0;
  if (n < <usize>len || !inRange(load<u8>(p + 1), lo, hi)) return 0;
  let c = b & (0x7f >> len);
  for (let i: u32 = 1; i < len; i++) {
    const x = <u32>load<u8>(p + i);
    if (i > 1 && !inRange(x, 0x80, 0xbf)) return 0;
    c = (c << 6) | (x & 0x3f);
  }
  codePoint = c;
  return len;
}

function utf8Valid(p: usize, n: usize): bool {
  for (let i: usize = 0; i < n;) {
    const len = utf8Next(p + i, n - i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// Unicode White_Space, as Rust's str::split_whitespace uses it.
function isSpace(c: u32): bool {
  return inRange(c, 0x09, 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
    inRange(c, 0x2000, 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
    c == 0x205f || c == 0x3000;
}

function finish(result: usize, status: i32, p: usize, n: usize): i32 {
  store<u32>(result, <u32>p);
  store<u32>(result + 4, <u32>n);
  return status;
}

function fail(result: usize, message: string): i32 {
  const bytes = String.UTF8.encode(message);
  return finish(result, 1, changetype<usize>(bytes), bytes.byteLength);
}

export function map__split(input: usize, len: u32, result: usize): i32 {
  if (len < 16) return fail(result, "input shorter than the call header");
  const r = new Reader(input + 16, input + len);
  const n = r.u32();
  const records = r.pos;
  for (let i: u32 = 0; i < n && !r.bad; i++) {
    r.bytes();
    const v = r.bytes();
    if (!r.bad && !utf8Valid(v, r.len)) return fail(result, "a line is not valid UTF-8");
  }
  if (r.bad) return fail(result, "malformed map input");
  // A word of k bytes takes 16 + k; a line of l bytes has at most (l + 1) / 2 words.
  const w = new Writer(heap.alloc(4 + 9 * <usize>len + 8));
  w.u32(0);
  let words: u32 = 0;
  r.pos = records;
  for (let i: u32 = 0; i < n; i++) {
    r.bytes();
    const line = r.bytes(), end = line + r.len;
    let start: usize = 0, inWord = false;
    for (let p = line; p < end;) {
      const l = utf8Next(p, end - p);
      if (isSpace(codePoint)) {
        if (inWord) { w.bytes(start, <u32>(p - start)); w.count(1); words++; }
        inWord = false;
      } else if (!inWord) { inWord = true; start = p; }
      p += l;
    }
    if (inWord) { w.bytes(start, <u32>(end - start)); w.count(1); words++; }
  }
  store<u32>(w.base, words);
  return finish(result, 0, w.base, w.len);
}

export function reduce__sum(input: usize, len: u32, result: usize): i32 {
  if (len < 16) return fail(result, "input shorter than the call header");
  const r = new Reader(input + 16, input + len);
  const groups = r.u32();
  if (r.bad || groups > len / 8) return fail(result, "malformed reduce input");
  const w = new Writer(heap.alloc(4 + 12 * <usize>groups));
  w.u32(groups);
  for (let g: u32 = 0; g < groups; g++) {
    r.bytes();
    const count = r.u32();
    let total: i64 = 0;
    for (let i: u32 = 0; i < count && !r.bad; i++) {
      const v = r.bytes();
      if (r.bad) break;
      if (r.len != 8) return fail(result, "a count is not 8 bytes (an i64)");
      const x = load<i64>(v);
      const s = total + x;
      if (i > 0 && ((total ^ s) & (x ^ s)) < 0) return fail(result, "count overflow");
      total = s;
    }
    if (r.bad || count == 0) return fail(result, "malformed reduce input");
    w.count(total);
  }
  return finish(result, 0, w.base, w.len);
}

export function update__running_count(input: usize, len: u32, result: usize): i32 {
  if (len < 16) return fail(result, "input shorter than the call header");
  const r = new Reader(input + 16, input + len);
  const n = r.u32();
  if (r.bad || n > len / 9) return fail(result, "malformed update input");
  const size: usize = 8 + 29 * <usize>n + <usize>len;
  const w = new Writer(heap.alloc(size)), e = new Writer(heap.alloc(size));
  w.u32(n);
  let emitted: u32 = 0;
  for (let i: u32 = 0; i < n && !r.bad; i++) {
    const key = r.bytes(), keyLen = r.len;
    const flags = r.u8();
    let hasState = false, total: i64 = 0;
    if (flags & 1) {
      const s = r.bytes();
      if (!r.bad && r.len != 8) return fail(result, "a state is not 8 bytes (an i64)");
      if (!r.bad) { hasState = true; total = load<i64>(s); }
    }
    const count = r.u32();
    if (r.bad) break;
    if (!utf8Valid(key, keyLen)) return fail(result, "a key is not valid UTF-8");
    for (let j: u32 = 0; j < count && !r.bad; j++) {
      const v = r.bytes();
      if (!r.bad && r.len != 8) return fail(result, "a count is not 8 bytes (an i64)");
      if (!r.bad) total += load<i64>(v); // wraps, as the Rust SDK's release build
    }
    if (count == 0 && !hasState) { w.u8(0); continue; } // no state, nothing new: remove
    w.u8(1);
    w.count(total);
    if (count > 0) { e.bytes(key, keyLen); e.count(total); emitted++; }
  }
  if (r.bad) return fail(result, "malformed update input");
  w.u32(emitted);
  memory.copy(w.base + w.len, e.base, e.len);
  return finish(result, 0, w.base, w.len + e.len);
}
