// wordcount in AssemblyScript: the same three functions as the Rust plugin
// (plugins/wordcount), written from docs/abi.md, with byte-identical
// outputs and error messages.
//
//   map__split              line -> (word, i64 1) for every word split on
//                           Unicode White_Space (Rust's char::is_whitespace)
//   reduce__sum             adds i64 counts; an overflow fails the call
//   update__running_count   state = i64 total; a key with new values gets
//                           total + sum(values) (wrapping) and emits
//                           (word, total); a key without values keeps its
//                           state (or has none)
//
// AssemblyScript cannot put ':' in an export name: "__" stands for it
// (the host accepts map__split for map:split). Strings in AssemblyScript
// are UTF-16, so lines are read as UTF-8 bytes where they lie in memory;
// only error messages are strings (String.UTF8 encodes them).
//
// Build: npm ci && npm run build   (asc ... --runtime stub: a bump
// allocator, no garbage collector; the instance lives for one call)

const HEADER: u32 = 16;

// ---- failures ----------------------------------------------------------------

/** The message of the call's failure (status 1), "" while all is well. */
let failure: string = "";

function fail(message: string): bool {
  if (failure.length == 0) failure = message;
  return false;
}

// ---- framing (docs/abi.md §3), with the weir-abi crate's error wording -----

/** A cursor over the body; after the first framing error it records the
 * message and every further read yields zeros. */
class Reader {
  pos: u32 = 0;
  /** Length of the last byte string read. */
  lastLen: u32 = 0;
  failed: bool = false;

  constructor(public start: usize, public len: u32, public context: string) {}

  frameError(at: u32, expected: string): void {
    if (this.failed) return;
    this.failed = true;
    fail(this.context + "malformed framing at byte " + at.toString() + ": expected " + expected);
  }

  take(n: u32, expected: string): usize {
    if (this.failed) return 0;
    if (this.len - this.pos < n) {
      this.frameError(this.pos, expected);
      return 0;
    }
    const p = this.start + this.pos;
    this.pos += n;
    return p;
  }

  byte(expected: string): u8 {
    const p = this.take(1, expected);
    return this.failed ? 0 : load<u8>(p);
  }

  u32(expected: string): u32 {
    const p = this.take(4, expected);
    return this.failed ? 0 : load<u32>(p);
  }

  /** A byte string: its address; its length in lastLen. */
  bytes(expected: string): usize {
    const n = this.u32(expected);
    const p = this.take(n, expected);
    this.lastLen = this.failed ? 0 : n;
    return p;
  }

  /** A count of items that need at least minItem bytes each. */
  count(minItem: u64, expected: string): u32 {
    const at = this.pos;
    const n = this.u32(expected);
    if (!this.failed && <u64>n * minItem > <u64>(this.len - this.pos)) {
      this.frameError(at, expected);
      return 0;
    }
    return n;
  }

  finish(): bool {
    if (!this.failed && this.pos != this.len) this.frameError(this.pos, "end of buffer (trailing bytes)");
    return !this.failed;
  }
}

function body(input: usize, len: u32, context: string): Reader | null {
  if (len < HEADER) {
    fail("bad call input: malformed framing at byte " + len.toString() + ": expected a 16-byte call header");
    return null;
  }
  return new Reader(input + HEADER, len - HEADER, context);
}

// ---- output ------------------------------------------------------------------

/** A growing byte buffer in linear memory. */
class Out {
  ptr: usize;
  len: u32 = 0;
  cap: u32;

  constructor(cap: u32) {
    this.cap = max<u32>(cap, 16);
    this.ptr = heap.alloc(this.cap);
  }

  reserve(n: u32): usize {
    if (this.len + n > this.cap) {
      this.cap = max<u32>(this.cap * 2, this.len + n);
      this.ptr = heap.realloc(this.ptr, this.cap);
    }
    const p = this.ptr + this.len;
    this.len += n;
    return p;
  }

  u8(v: u8): void {
    store<u8>(this.reserve(1), v);
  }

  u32(v: u32): void {
    store<u32>(this.reserve(4), v);
  }

  bytes(p: usize, n: u32): void {
    this.u32(n);
    memory.copy(this.reserve(n), p, n);
  }

  i64(v: i64): void {
    this.u32(8);
    store<i64>(this.reserve(8), v);
  }
}

// ---- text --------------------------------------------------------------------

function isCont(c: u8): bool {
  return c >= 0x80 && c <= 0xbf;
}

/** Checks UTF-8; on an error records Rust's str::from_utf8 message after
 * prefix and returns false. */
function decodeString(p: usize, n: u32, prefix: string): bool {
  let i: u32 = 0;
  while (i < n) {
    const b = load<u8>(p + i);
    if (b < 0x80) {
      i++;
      continue;
    }
    const w: u32 = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (w == 0) return utf8Error(prefix, i, 1);
    if (i + 1 >= n) return utf8Error(prefix, i, 0);
    const c = load<u8>(p + i + 1);
    let secondOk: bool;
    if (b == 0xe0) secondOk = c >= 0xa0 && c <= 0xbf;
    else if (b == 0xed) secondOk = c >= 0x80 && c <= 0x9f;
    else if (b == 0xf0) secondOk = c >= 0x90 && c <= 0xbf;
    else if (b == 0xf4) secondOk = c >= 0x80 && c <= 0x8f;
    else secondOk = isCont(c);
    if (!secondOk) return utf8Error(prefix, i, 1);
    for (let k: u32 = 2; k < w; k++) {
      if (i + k >= n) return utf8Error(prefix, i, 0);
      if (!isCont(load<u8>(p + i + k))) return utf8Error(prefix, i, k);
    }
    i += w;
  }
  return true;
}

function utf8Error(prefix: string, validUpTo: u32, errorLen: u32): bool {
  const what =
    errorLen == 0
      ? "incomplete utf-8 byte sequence from index " + validUpTo.toString()
      : "invalid utf-8 sequence of " + errorLen.toString() + " bytes from index " + validUpTo.toString();
  return fail(prefix + "cannot decode alloc::string::String: " + what);
}

/** Byte length of the whitespace character at p in valid UTF-8, or 0.
 * Whitespace is Unicode White_Space, the set of Rust's char::is_whitespace:
 * U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000. */
function spaceLen(p: usize, end: usize): u32 {
  const b = load<u8>(p);
  if (b == 0x20 || (b >= 0x09 && b <= 0x0d)) return 1;
  if (b == 0xc2 && end - p >= 2) {
    const c = load<u8>(p + 1);
    return c == 0x85 || c == 0xa0 ? 2 : 0;
  }
  if (end - p < 3) return 0;
  const c = load<u8>(p + 1);
  const d = load<u8>(p + 2);
  if (b == 0xe1) return c == 0x9a && d == 0x80 ? 3 : 0;
  if (b == 0xe2 && c == 0x80) return d <= 0x8a || d == 0xa8 || d == 0xa9 || d == 0xaf ? 3 : 0;
  if (b == 0xe2 && c == 0x81) return d == 0x9f ? 3 : 0;
  if (b == 0xe3) return c == 0x80 && d == 0x80 ? 3 : 0;
  return 0;
}

/** Appends (word, i64 1) for every word of a line; returns how many. */
function splitLine(p: usize, n: u32, out: Out): u32 {
  const end = p + n;
  let word: usize = 0;
  let count: u32 = 0;
  while (p < end) {
    const sp = spaceLen(p, end);
    if (sp == 0) {
      if (word == 0) word = p;
      p++;
      continue;
    }
    if (word != 0) {
      out.bytes(word, <u32>(p - word));
      out.i64(1);
      count++;
      word = 0;
    }
    p += sp;
  }
  if (word != 0) {
    out.bytes(word, <u32>(p - word));
    out.i64(1);
    count++;
  }
  return count;
}

function decodeI64(p: usize, n: u32, prefix: string): bool {
  return n == 8 || fail(prefix + "cannot decode i64: expected 8 bytes, found " + n.toString());
}

// ---- the three functions -----------------------------------------------------

function split(input: usize, len: u32): Out | null {
  const r = body(input, len, "bad record batch from host: ");
  if (r == null) return null;
  const n = r.count(8, "record count");
  for (let i: u32 = 0; i < n; i++) {
    r.bytes("record key");
    r.bytes("record value");
  }
  if (!r.finish()) return null;

  const out = new Out(len * 2);
  out.u32(0);
  let words: u32 = 0;
  r.pos = 4;
  for (let i: u32 = 0; i < n; i++) {
    r.bytes("");
    const line = r.bytes("");
    if (!decodeString(line, r.lastLen, "record " + i.toString() + ": value: ")) return null;
    words += splitLine(line, r.lastLen, out);
  }
  store<u32>(out.ptr, words);
  return out;
}

/** Adds two counts like Rust's checked_add; an overflow fails. */
function add(a: i64, b: i64): i64 {
  const s = a + b;
  if (((a ^ s) & (b ^ s)) < 0) fail("count overflow adding " + a.toString() + " and " + b.toString());
  return s;
}

function sum(input: usize, len: u32): Out | null {
  const r = body(input, len, "bad reduce input from host: ");
  if (r == null) return null;
  const n = r.count(8, "group count");
  for (let g: u32 = 0; g < n && !r.failed; g++) {
    r.bytes("group key");
    const at = r.pos;
    const m = r.count(4, "value count");
    if (m == 0) r.frameError(at, "a value count of at least 1");
    for (let v: u32 = 0; v < m; v++) r.bytes("group value");
  }
  if (!r.finish()) return null;

  const out = new Out(4 + n * 12);
  out.u32(n);
  r.pos = 4;
  for (let g: u32 = 0; g < n; g++) {
    r.bytes("");
    const m = r.u32("");
    const prefix = "group " + g.toString() + ": value: ";
    let acc: i64 = 0;
    for (let v: u32 = 0; v < m; v++) {
      const p = r.bytes("");
      if (!decodeI64(p, r.lastLen, prefix)) return null;
      acc = v == 0 ? load<i64>(p) : add(acc, load<i64>(p));
      if (failure.length != 0) return null;
    }
    out.i64(acc);
  }
  return out;
}

function runningCount(input: usize, len: u32): Out | null {
  const r = body(input, len, "bad update input from host: ");
  if (r == null) return null;
  const n = r.count(9, "update entry count");
  for (let e: u32 = 0; e < n && !r.failed; e++) {
    r.bytes("update key");
    const at = r.pos;
    const flags = r.byte("update flags");
    if (flags & ~3) r.frameError(at, "update flags with only bits 0 and 1");
    if (flags & 1) r.bytes("update state");
    const m = r.count(4, "update value count");
    for (let v: u32 = 0; v < m; v++) r.bytes("update value");
  }
  if (!r.finish()) return null;

  const actions = new Out(4 + n * 13);
  const emitted = new Out(len);
  actions.u32(n);
  emitted.u32(0);
  let emittedCount: u32 = 0;
  r.pos = 4;
  for (let e: u32 = 0; e < n; e++) {
    const entry = "entry " + e.toString();
    const key = r.bytes("");
    const keyLen = r.lastLen;
    if (!decodeString(key, keyLen, entry + ": key: ")) return null;
    const hasState = (r.byte("") & 1) != 0;
    const state = hasState ? r.bytes("") : 0;
    const stateLen = r.lastLen;
    const m = r.u32("");
    let added: i64 = 0; // wrapping, like the Rust plugin's release build
    for (let v: u32 = 0; v < m; v++) {
      const p = r.bytes("");
      if (!decodeI64(p, r.lastLen, entry + ": value: ")) return null;
      added += load<i64>(p);
    }
    if (hasState && !decodeI64(state, stateLen, entry + ": state: ")) return null;
    const total: i64 = hasState ? load<i64>(state) : 0;
    if (m > 0) {
      actions.u8(1);
      actions.i64(total + added);
      emitted.bytes(key, keyLen);
      emitted.i64(total + added);
      emittedCount++;
    } else if (hasState) {
      // no new values: the state stays
      actions.u8(1);
      actions.i64(total);
    } else {
      // no values, no state: nothing to keep
      actions.u8(0);
    }
  }
  store<u32>(emitted.ptr, emittedCount);
  memory.copy(actions.reserve(emitted.len), emitted.ptr, emitted.len);
  return actions;
}

// ---- the weir ABI exports ------------------------------------------------------

export function weir_abi_version(): i32 {
  return 1;
}

/** The stub runtime's allocator: 16-byte aligned blocks, never freed. */
export function weir_alloc(size: u32): usize {
  return heap.alloc(size);
}

function finish(out: Out | null, result: usize): i32 {
  if (out != null) {
    store<u32>(result, <u32>out.ptr);
    store<u32>(result, out.len, 4);
    return 0;
  }
  const message = String.UTF8.encode(failure);
  store<u32>(result, <u32>changetype<usize>(message));
  store<u32>(result, <u32>message.byteLength, 4);
  return 1;
}

export function map__split(input: usize, len: u32, result: usize): i32 {
  return finish(split(input, len), result);
}

export function reduce__sum(input: usize, len: u32, result: usize): i32 {
  return finish(sum(input, len), result);
}

export function update__running_count(input: usize, len: u32, result: usize): i32 {
  return finish(runningCount(input, len), result);
}
