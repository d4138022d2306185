/*
 * {{name}}: a weir plugin in C (word count), freestanding: no libc, no
 * imports. The ABI is in docs/abi.md of the weir source tree.
 *
 *   map:split             line -> (word, i64 1) per word; words are separated
 *                         by Unicode White_Space; a line that is not UTF-8
 *                         fails the call.
 *   reduce:sum            adds i64 counts; an overflow fails the call.
 *   update:running_count  state = i64 total; with new values: total + sum
 *                         (wrapping), emits (word, total); without: keeps
 *                         the state (or none) and emits nothing.
 *
 * Build: {{build_command}}
 * Test natively: make test
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

/* ---- the logic: plain C, tested natively by test_{{name}}.c ----------- */

static int in(u32 b, u32 lo, u32 hi) { return b >= lo && b <= hi; }

/* Length of the UTF-8 character at s[0..n) with its code point in *cp, or
 * 0 when the bytes there are not valid UTF-8. */
static u32 utf8_next(const u8 *s, u32 n, u32 *cp) {
  u32 b = s[0];
  if (b < 0x80) { *cp = b; return 1; }
  u32 len, lo = 0x80, hi = 0xbf;
  if (in(b, 0xc2, 0xdf)) len = 2;
  else if (in(b, 0xe0, 0xef)) { len = 3; if (b == 0xe0) lo = 0xa0; if (b == 0xed) hi = 0x9f; }
  else if (in(b, 0xf0, 0xf4)) { len = 4; if (b == 0xf0) lo = 0x90; if (b == 0xf4) hi = 0x8f; }
  else return 0;
  if (n < len || !in(s[1], lo, hi)) return 0;
  u32 c = b & (0x7f >> len);
  for (u32 i = 1; i < len; i++) {
    if (i > 1 && !in(s[i], 0x80, 0xbf)) return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  *cp = c;
  return len;
}

static int utf8_valid(const u8 *s, u32 n) {
  u32 cp;
  for (u32 i = 0; i < n;) {
    u32 len = utf8_next(s + i, n - i, &cp);
    if (len == 0) return 0;
    i += len;
  }
  return 1;
}

/* Unicode White_Space, as Rust's str::split_whitespace uses it. */
static int is_space(u32 c) {
  return in(c, 0x09, 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         in(c, 0x2000, 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

typedef void (*word_fn)(const u8 *word, u32 len, void *ctx);

/* Calls emit for every word of a valid UTF-8 line; returns the count. */
static u32 split_words(const u8 *s, u32 n, word_fn emit, void *ctx) {
  u32 words = 0, start = 0, in_word = 0, cp;
  for (u32 i = 0; i < n;) {
    u32 len = utf8_next(s + i, n - i, &cp);
    if (is_space(cp)) {
      if (in_word) { emit(s + start, i - start, ctx); words++; }
      in_word = 0;
    } else if (!in_word) {
      in_word = 1;
      start = i;
    }
    i += len;
  }
  if (in_word) { emit(s + start, n - start, ctx); words++; }
  return words;
}

/* a + b into *out; 0 on overflow. */
static int add_counts(i64 a, i64 b, i64 *out) { return !__builtin_add_overflow(a, b, out); }

#ifdef __wasm__
/* ---- the ABI glue ------------------------------------------------------ */

typedef __SIZE_TYPE__ size_t;
#define EXPORT(name) __attribute__((export_name(name)))

/* The compiler may call these for copy loops; there is no libc. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
  u8 *d = dst;
  const u8 *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  u8 *d = dst;
  while (n--) *d++ = (u8)c;
  return dst;
}

extern u8 __heap_base;
static u64 heap_top;

/* Bump allocator: 8-byte aligned, never freed (one instance per call). */
static u8 *alloc(u64 size) {
  if (heap_top == 0) heap_top = ((u64)(size_t)&__heap_base + 7) & ~7ull;
  u64 start = heap_top, end = (start + size + 7) & ~7ull;
  if (end > 0xffffffffull) __builtin_trap();
  u64 have = (u64)__builtin_wasm_memory_size(0) * 65536;
  if (end > have && __builtin_wasm_memory_grow(0, (size_t)((end - have + 65535) / 65536)) == (size_t)-1)
    __builtin_trap();
  heap_top = end;
  return (u8 *)(size_t)start;
}

EXPORT("weir_abi_version") int weir_abi_version(void) { return 1; }
EXPORT("weir_alloc") u8 *weir_alloc(u32 size) { return alloc(size); }

static u32 get_u32(const u8 *p) { u32 v; __builtin_memcpy(&v, p, 4); return v; }
static i64 get_i64(const u8 *p) { i64 v; __builtin_memcpy(&v, p, 8); return v; }
static u8 *put_u32(u8 *p, u32 v) { __builtin_memcpy(p, &v, 4); return p + 4; }
static u8 *put_bytes(u8 *p, const u8 *b, u32 n) { p = put_u32(p, n); __builtin_memcpy(p, b, n); return p + n; }
static u8 *put_i64(u8 *p, i64 v) { p = put_u32(p, 8); __builtin_memcpy(p, &v, 8); return p + 8; }

static int finish(u32 *result, int status, const u8 *out, u32 len) {
  result[0] = (u32)(size_t)out;
  result[1] = len;
  return status;
}

static int fail(u32 *result, const char *msg) {
  u32 n = 0;
  while (msg[n]) n++;
  return finish(result, 1, (const u8 *)msg, n);
}

/* A bounds-checked reader over the input body. */
typedef struct { const u8 *p, *end; int bad; } reader;

static u32 rd_u32(reader *r) {
  if (r->bad || r->end - r->p < 4) { r->bad = 1; return 0; }
  u32 v = get_u32(r->p);
  r->p += 4;
  return v;
}

static const u8 *rd_bytes(reader *r, u32 *len) {
  *len = rd_u32(r);
  if (r->bad || (u64)(r->end - r->p) < *len) { r->bad = 1; *len = 0; return r->p; }
  const u8 *b = r->p;
  r->p += *len;
  return b;
}

static reader body(const u8 *input, u32 len) {
  reader r = {input + 16, input + len, len < 16};
  return r;
}

typedef struct { u8 *out; } words_out;

static void put_word(const u8 *w, u32 len, void *ctx) {
  words_out *o = ctx;
  o->out = put_bytes(o->out, w, len);
  o->out = put_i64(o->out, 1);
}

EXPORT("map:split") int split(const u8 *input, u32 len, u32 *result) {
  reader r = body(input, len);
  u32 n = rd_u32(&r);
  /* First pass: check the framing and the UTF-8, bound the output. */
  const u8 *records = r.p;
  u64 bound = 4;
  for (u32 i = 0; i < n && !r.bad; i++) {
    u32 klen, vlen;
    rd_bytes(&r, &klen);
    const u8 *v = rd_bytes(&r, &vlen);
    if (!r.bad && !utf8_valid(v, vlen)) return fail(result, "a line is not valid UTF-8");
    bound += 9 * (u64)vlen + 8; /* a word of k bytes takes 16 + k, at most (vlen + 1) / 2 words */
  }
  if (r.bad) return fail(result, "malformed map input");
  u8 *out = alloc(bound);
  words_out o = {out + 4};
  u32 words = 0;
  r.p = records;
  for (u32 i = 0; i < n; i++) {
    u32 klen, vlen;
    rd_bytes(&r, &klen);
    const u8 *v = rd_bytes(&r, &vlen);
    words += split_words(v, vlen, put_word, &o);
  }
  put_u32(out, words);
  return finish(result, 0, out, (u32)(o.out - out));
}

EXPORT("reduce:sum") int sum(const u8 *input, u32 len, u32 *result) {
  reader r = body(input, len);
  u32 groups = rd_u32(&r);
  if (r.bad || groups > len / 8) return fail(result, "malformed reduce input");
  u8 *out = alloc(4 + 12 * (u64)groups), *p = put_u32(out, groups);
  for (u32 g = 0; g < groups; g++) {
    u32 klen, vlen, count;
    rd_bytes(&r, &klen);
    count = rd_u32(&r);
    i64 total = 0;
    for (u32 i = 0; i < count && !r.bad; i++) {
      const u8 *v = rd_bytes(&r, &vlen);
      if (r.bad) break;
      if (vlen != 8) return fail(result, "a count is not 8 bytes (an i64)");
      if (i == 0) total = get_i64(v);
      else if (!add_counts(total, get_i64(v), &total)) return fail(result, "count overflow");
    }
    if (r.bad || count == 0) return fail(result, "malformed reduce input");
    p = put_i64(p, total);
  }
  return finish(result, 0, out, (u32)(p - out));
}

EXPORT("update:running_count") int running_count(const u8 *input, u32 len, u32 *result) {
  reader r = body(input, len);
  u32 n = rd_u32(&r);
  if (r.bad || n > len / 9) return fail(result, "malformed update input");
  u8 *actions = alloc(4 + 13 * (u64)n + 4 + 16 * (u64)n + len), *a = put_u32(actions, n);
  u8 *emitted = alloc(4 + 16 * (u64)n + len), *e = emitted + 4;
  u32 emitted_count = 0;
  for (u32 i = 0; i < n && !r.bad; i++) {
    u32 klen, slen = 0, vlen;
    const u8 *key = rd_bytes(&r, &klen);
    if (r.bad || r.p >= r.end) { r.bad = 1; break; }
    u8 flags = *r.p++;
    const u8 *state = (flags & 1) ? rd_bytes(&r, &slen) : 0;
    u32 count = rd_u32(&r);
    if (r.bad) break;
    if (!utf8_valid(key, klen)) return fail(result, "a key is not valid UTF-8");
    if (state && slen != 8) return fail(result, "a state is not 8 bytes (an i64)");
    u64 total = state ? (u64)get_i64(state) : 0;
    for (u32 j = 0; j < count && !r.bad; j++) {
      const u8 *v = rd_bytes(&r, &vlen);
      if (!r.bad && vlen != 8) return fail(result, "a count is not 8 bytes (an i64)");
      if (!r.bad) total += (u64)get_i64(v); /* wraps, as the Rust SDK's release build */
    }
    if (count == 0 && !state) { *a++ = 0; continue; } /* no state, nothing new: remove */
    *a++ = 1;
    a = put_i64(a, (i64)total);
    if (count > 0) {
      e = put_bytes(e, key, klen);
      e = put_i64(e, (i64)total);
      emitted_count++;
    }
  }
  if (r.bad) return fail(result, "malformed update input");
  put_u32(emitted, emitted_count);
  __builtin_memcpy(a, emitted, (size_t)(e - emitted));
  a += e - emitted;
  return finish(result, 0, actions, (u32)(a - actions));
}
#endif
