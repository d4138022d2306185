/*
 * wordcount in C: the same three functions as the Rust plugin
 * (plugins/wordcount), written from docs/abi.md alone, without libc.
 *
 *   map:split              line -> (word, i64 1) for every whitespace-separated
 *                          word (Unicode White_Space, as Rust's
 *                          str::split_whitespace); the key is ignored.
 *   reduce:sum             adds i64 counts; an overflow fails the call.
 *   update:running_count   state = i64 total; an entry with new values gets
 *                          total + sum(values) (wrapping) and emits
 *                          (word, total); an entry without values keeps its
 *                          state and emits nothing.
 *
 * Outputs and error messages are byte-identical to the Rust plugin's
 * (the conformance tests in tests/tests/it/conformance.rs check both).
 *
 * Build:
 *   clang --target=wasm32 -nostdlib -O2 -Wall -Werror -fuse-ld=lld \
 *         -Wl,--no-entry -o wordcount_c.wasm wordcount.c
 * wasm-ld exports the memory as "memory" by default.
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;
typedef __SIZE_TYPE__ size_t;

#define EXPORT(name) __attribute__((export_name(name)))

/* The compiler may turn copy loops into calls to these; there is no libc. */
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

/* ---- memory ------------------------------------------------------------ */

extern u8 __heap_base; /* provided by wasm-ld: first byte after data and stack */
static u64 heap_top;   /* 0 until the first allocation */

/* Bump allocator: 8-byte aligned blocks, memory grown as needed, never
 * freed (the instance is thrown away after the call). */
static u8 *alloc(u64 size) {
  if (heap_top == 0) heap_top = ((u64)(size_t)&__heap_base + 7) & ~7ull;
  u64 start = heap_top;
  u64 end = (start + size + 7) & ~7ull;
  if (end > 0xffffffffull) __builtin_trap();
  u64 have = (u64)__builtin_wasm_memory_size(0) * 65536;
  if (end > have) {
    u64 pages = (end - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, (size_t)pages) == (size_t)-1) __builtin_trap();
  }
  heap_top = end;
  return (u8 *)(size_t)start;
}

EXPORT("weir_abi_version") int weir_abi_version(void) { return 1; }

EXPORT("weir_alloc") u8 *weir_alloc(u32 size) { return alloc(size); }

/* ---- little-endian access (wasm is little-endian, loads may be unaligned) */

static u32 get_u32(const u8 *p) {
  u32 v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

static i64 get_i64(const u8 *p) {
  i64 v;
  __builtin_memcpy(&v, p, 8);
  return v;
}

static u8 *put_u32(u8 *o, u32 v) {
  __builtin_memcpy(o, &v, 4);
  return o + 4;
}

static u8 *put_i64(u8 *o, i64 v) {
  __builtin_memcpy(o, &v, 8);
  return o + 8;
}

static u8 *put_mem(u8 *o, const u8 *s, u32 n) {
  for (u32 i = 0; i < n; i++) o[i] = s[i];
  return o + n;
}

/* ---- results ----------------------------------------------------------- */

static int ok(u32 result, const u8 *out, u32 len) {
  put_u32((u8 *)(size_t)result, (u32)(size_t)out);
  put_u32((u8 *)(size_t)result + 4, len);
  return 0;
}

/* Error messages are short; 512 bytes hold the longest with room to spare. */
#define MSG_CAP 512

typedef struct {
  u8 *start;
  u8 *p;
} Msg;

static Msg msg_new(void) {
  u8 *m = alloc(MSG_CAP);
  return (Msg){m, m};
}

static void msg_str(Msg *m, const char *s) {
  while (*s) *m->p++ = (u8)*s++;
}

static void msg_u64(Msg *m, u64 v) {
  u8 tmp[20];
  int n = 0;
  do {
    tmp[n++] = (u8)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *m->p++ = tmp[--n];
}

static void msg_i64(Msg *m, i64 v) {
  if (v < 0) {
    *m->p++ = '-';
    msg_u64(m, 0 - (u64)v);
  } else {
    msg_u64(m, (u64)v);
  }
}

static int fail(u32 result, Msg *m) {
  put_u32((u8 *)(size_t)result, (u32)(size_t)m->start);
  put_u32((u8 *)(size_t)result + 4, (u32)(m->p - m->start));
  return 1;
}

/* ---- reading the host's framing --------------------------------------- */

/* A cursor over the body that remembers the first framing error: byte
 * offset and what was expected there (the wording of the weir-abi crate). */
typedef struct {
  const u8 *buf;
  u32 len;
  u32 pos;
  u32 err_at;
  const char *err_expected;
} Reader;

static int frame_error(Reader *r, u32 at, const char *expected) {
  r->err_at = at;
  r->err_expected = expected;
  return 0;
}

static int rd_take(Reader *r, u32 n, const char *expected, const u8 **out) {
  if (r->len - r->pos < n) return frame_error(r, r->pos, expected);
  *out = r->buf + r->pos;
  r->pos += n;
  return 1;
}

static int rd_u8(Reader *r, const char *expected, u8 *v) {
  const u8 *p;
  if (!rd_take(r, 1, expected, &p)) return 0;
  *v = *p;
  return 1;
}

static int rd_u32(Reader *r, const char *expected, u32 *v) {
  const u8 *p;
  if (!rd_take(r, 4, expected, &p)) return 0;
  *v = get_u32(p);
  return 1;
}

static int rd_bytes(Reader *r, const char *expected, const u8 **p, u32 *len) {
  return rd_u32(r, expected, len) && rd_take(r, *len, expected, p);
}

/* A count whose items need at least min_item bytes each must fit in what is
 * left of the buffer. */
static int rd_count(Reader *r, u32 min_item, const char *expected, u32 *n) {
  u32 at = r->pos;
  if (!rd_u32(r, expected, n)) return 0;
  if ((u64)*n * min_item > r->len - r->pos) return frame_error(r, at, expected);
  return 1;
}

static int rd_finish(Reader *r) {
  if (r->pos != r->len) return frame_error(r, r->pos, "end of buffer (trailing bytes)");
  return 1;
}

static int bad_frame(u32 result, const char *what, Reader *r) {
  Msg m = msg_new();
  msg_str(&m, what);
  msg_str(&m, "malformed framing at byte ");
  msg_u64(&m, r->err_at);
  msg_str(&m, ": expected ");
  msg_str(&m, r->err_expected);
  return fail(result, &m);
}

/* Splits the input into header and body; 0 if it is shorter than a header. */
static int body(u32 input, u32 len, Reader *r) {
  if (len < 16) return 0;
  *r = (Reader){(const u8 *)(size_t)input + 16, len - 16, 0, 0, 0};
  return 1;
}

static int bad_header(u32 result, u32 len) {
  Msg m = msg_new();
  msg_str(&m, "bad call input: malformed framing at byte ");
  msg_u64(&m, len);
  msg_str(&m, ": expected a 16-byte call header");
  return fail(result, &m);
}

/* ---- text -------------------------------------------------------------- */

static int is_cont(u8 c) { return c >= 0x80 && c <= 0xbf; }

/* UTF-8 validation with the error Rust reports: 1 if valid; else 0 with the
 * offset of the bad sequence and its length (0: cut off by the end). */
static int utf8_check(const u8 *s, u32 n, u32 *valid_up_to, u32 *error_len) {
  u32 i = 0;
  while (i < n) {
    u8 b = s[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    u32 w = (b >= 0xc2 && b <= 0xdf) ? 2 : (b >= 0xe0 && b <= 0xef) ? 3 : (b >= 0xf0 && b <= 0xf4) ? 4 : 0;
    *valid_up_to = i;
    if (w == 0) {
      *error_len = 1;
      return 0;
    }
    if (i + 1 >= n) {
      *error_len = 0;
      return 0;
    }
    u8 c = s[i + 1];
    int second_ok;
    if (w == 2)
      second_ok = is_cont(c);
    else if (w == 3)
      second_ok = b == 0xe0 ? (c >= 0xa0 && c <= 0xbf) : b == 0xed ? (c >= 0x80 && c <= 0x9f) : is_cont(c);
    else
      second_ok = b == 0xf0 ? (c >= 0x90 && c <= 0xbf) : b == 0xf4 ? (c >= 0x80 && c <= 0x8f) : is_cont(c);
    if (!second_ok) {
      *error_len = 1;
      return 0;
    }
    for (u32 k = 2; k < w; k++) {
      if (i + k >= n) {
        *error_len = 0;
        return 0;
      }
      if (!is_cont(s[i + k])) {
        *error_len = k;
        return 0;
      }
    }
    i += w;
  }
  return 1;
}

static void msg_utf8_error(Msg *m, u32 valid_up_to, u32 error_len) {
  msg_str(m, "cannot decode alloc::string::String: ");
  if (error_len) {
    msg_str(m, "invalid utf-8 sequence of ");
    msg_u64(m, error_len);
    msg_str(m, " bytes from index ");
  } else {
    msg_str(m, "incomplete utf-8 byte sequence from index ");
  }
  msg_u64(m, valid_up_to);
}

/* Length of the whitespace character at p (valid UTF-8), or 0 if the
 * character there is not whitespace. Whitespace is Unicode White_Space:
 * U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000. Never matches at a continuation byte, so
 * callers may step byte by byte over other characters. */
static u32 space_len(const u8 *p, const u8 *end) {
  u8 b = p[0];
  if (b == ' ' || (b >= 0x09 && b <= 0x0d)) return 1;
  if (b == 0xc2 && end - p >= 2) return (p[1] == 0x85 || p[1] == 0xa0) ? 2 : 0;
  if (end - p < 3) return 0;
  if (b == 0xe1) return (p[1] == 0x9a && p[2] == 0x80) ? 3 : 0;
  if (b == 0xe2) {
    if (p[1] == 0x80) return (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf) ? 3 : 0;
    return (p[1] == 0x81 && p[2] == 0x9f) ? 3 : 0;
  }
  if (b == 0xe3) return (p[1] == 0x80 && p[2] == 0x80) ? 3 : 0;
  return 0;
}

/* Calls emit(word, len, ctx) for every word of s. */
static void words(const u8 *s, u32 n, void (*emit)(const u8 *, u32, void *), void *ctx) {
  const u8 *end = s + n, *p = s, *word = 0;
  while (p < end) {
    u32 sp = space_len(p, end);
    if (sp) {
      if (word) emit(word, (u32)(p - word), ctx);
      word = 0;
      p += sp;
    } else {
      if (!word) word = p;
      p++;
    }
  }
  if (word) emit(word, (u32)(p - word), ctx);
}

/* ---- map:split --------------------------------------------------------- */

typedef struct {
  u32 count;
  u64 bytes;
} Tally;

static void tally_word(const u8 *w, u32 len, void *ctx) {
  (void)w;
  Tally *t = ctx;
  t->count++;
  t->bytes += 16 + (u64)len; /* key prefix, key, value prefix, i64 */
}

static void write_word(const u8 *w, u32 len, void *ctx) {
  u8 **o = ctx;
  *o = put_u32(*o, len);
  *o = put_mem(*o, w, len);
  *o = put_u32(*o, 8);
  *o = put_i64(*o, 1);
}

EXPORT("map:split") int split(u32 input, u32 input_len, u32 result) {
  Reader r;
  if (!body(input, input_len, &r)) return bad_header(result, input_len);

  /* 1. the framing of the whole batch */
  u32 n;
  const u8 *key, *value;
  u32 key_len, value_len;
  if (!rd_count(&r, 8, "record count", &n)) return bad_frame(result, "bad record batch from host: ", &r);
  for (u32 i = 0; i < n; i++) {
    if (!rd_bytes(&r, "record key", &key, &key_len) || !rd_bytes(&r, "record value", &value, &value_len))
      return bad_frame(result, "bad record batch from host: ", &r);
  }
  if (!rd_finish(&r)) return bad_frame(result, "bad record batch from host: ", &r);

  /* 2. decode every value as UTF-8 and size the output */
  Tally t = {0, 4};
  r.pos = 4;
  for (u32 i = 0; i < n; i++) {
    rd_bytes(&r, "", &key, &key_len);
    rd_bytes(&r, "", &value, &value_len);
    u32 valid_up_to, error_len;
    if (!utf8_check(value, value_len, &valid_up_to, &error_len)) {
      Msg m = msg_new();
      msg_str(&m, "record ");
      msg_u64(&m, i);
      msg_str(&m, ": value: ");
      msg_utf8_error(&m, valid_up_to, error_len);
      return fail(result, &m);
    }
    words(value, value_len, tally_word, &t);
  }

  /* 3. write (word, 1) records */
  u8 *out = alloc(t.bytes), *o = out;
  o = put_u32(o, t.count);
  r.pos = 4;
  for (u32 i = 0; i < n; i++) {
    rd_bytes(&r, "", &key, &key_len);
    rd_bytes(&r, "", &value, &value_len);
    words(value, value_len, write_word, &o);
  }
  return ok(result, out, (u32)(o - out));
}

/* ---- reduce:sum -------------------------------------------------------- */

static int bad_i64(u32 result, const char *what, u32 index, const char *field, u32 found) {
  Msg m = msg_new();
  msg_str(&m, what);
  msg_u64(&m, index);
  msg_str(&m, field);
  msg_str(&m, "cannot decode i64: expected 8 bytes, found ");
  msg_u64(&m, found);
  return fail(result, &m);
}

EXPORT("reduce:sum") int sum(u32 input, u32 input_len, u32 result) {
  Reader r;
  if (!body(input, input_len, &r)) return bad_header(result, input_len);
  const char *bad = "bad reduce input from host: ";

  /* 1. framing: groups of (key, values), at least one value each */
  u32 n, m, at, len;
  const u8 *p;
  if (!rd_count(&r, 8, "group count", &n)) return bad_frame(result, bad, &r);
  for (u32 g = 0; g < n; g++) {
    if (!rd_bytes(&r, "group key", &p, &len)) return bad_frame(result, bad, &r);
    at = r.pos;
    if (!rd_count(&r, 4, "value count", &m)) return bad_frame(result, bad, &r);
    if (m == 0) {
      frame_error(&r, at, "a value count of at least 1");
      return bad_frame(result, bad, &r);
    }
    for (u32 v = 0; v < m; v++)
      if (!rd_bytes(&r, "group value", &p, &len)) return bad_frame(result, bad, &r);
  }
  if (!rd_finish(&r)) return bad_frame(result, bad, &r);

  /* 2. fold each group left to right */
  u8 *out = alloc(4 + (u64)n * 12), *o = out;
  o = put_u32(o, n);
  r.pos = 4;
  for (u32 g = 0; g < n; g++) {
    rd_bytes(&r, "", &p, &len);
    rd_u32(&r, "", &m);
    i64 acc = 0;
    for (u32 v = 0; v < m; v++) {
      rd_bytes(&r, "", &p, &len);
      if (len != 8) return bad_i64(result, "group ", g, ": value: ", len);
      i64 x = get_i64(p), sum;
      if (v == 0) {
        acc = x;
        continue;
      }
      if (__builtin_add_overflow(acc, x, &sum)) {
        Msg msg = msg_new();
        msg_str(&msg, "count overflow adding ");
        msg_i64(&msg, acc);
        msg_str(&msg, " and ");
        msg_i64(&msg, x);
        return fail(result, &msg);
      }
      acc = sum;
    }
    o = put_u32(o, 8);
    o = put_i64(o, acc);
  }
  return ok(result, out, (u32)(o - out));
}

/* ---- update:running_count ---------------------------------------------- */

EXPORT("update:running_count") int running_count(u32 input, u32 input_len, u32 result) {
  Reader r;
  if (!body(input, input_len, &r)) return bad_header(result, input_len);
  const char *bad = "bad update input from host: ";

  /* 1. framing, and the size of the two output sections */
  u32 n, m, at, key_len, state_len, len;
  const u8 *key, *state, *p;
  u8 flags;
  u64 actions_len = 4, emitted_len = 4;
  if (!rd_count(&r, 9, "update entry count", &n)) return bad_frame(result, bad, &r);
  for (u32 e = 0; e < n; e++) {
    if (!rd_bytes(&r, "update key", &key, &key_len)) return bad_frame(result, bad, &r);
    at = r.pos;
    if (!rd_u8(&r, "update flags", &flags)) return bad_frame(result, bad, &r);
    if (flags & ~3u) {
      frame_error(&r, at, "update flags with only bits 0 and 1");
      return bad_frame(result, bad, &r);
    }
    state_len = 0;
    if ((flags & 1) && !rd_bytes(&r, "update state", &state, &state_len)) return bad_frame(result, bad, &r);
    if (!rd_count(&r, 4, "update value count", &m)) return bad_frame(result, bad, &r);
    for (u32 v = 0; v < m; v++)
      if (!rd_bytes(&r, "update value", &p, &len)) return bad_frame(result, bad, &r);
    actions_len += (m || (flags & 1)) ? 13 : 1;
    if (m) emitted_len += 16 + (u64)key_len;
  }
  if (!rd_finish(&r)) return bad_frame(result, bad, &r);

  /* 2. per entry: decode key, values, state; then the new state */
  u8 *out = alloc(actions_len + emitted_len);
  u8 *actions = put_u32(out, n);
  u8 *emitted = out + actions_len, *records = emitted + 4;
  u32 emitted_count = 0;
  r.pos = 4;
  for (u32 e = 0; e < n; e++) {
    rd_bytes(&r, "", &key, &key_len);
    rd_u8(&r, "", &flags);
    int has_state = flags & 1;
    if (has_state) rd_bytes(&r, "", &state, &state_len);
    rd_u32(&r, "", &m);

    u32 valid_up_to, error_len;
    if (!utf8_check(key, key_len, &valid_up_to, &error_len)) {
      Msg msg = msg_new();
      msg_str(&msg, "entry ");
      msg_u64(&msg, e);
      msg_str(&msg, ": key: ");
      msg_utf8_error(&msg, valid_up_to, error_len);
      return fail(result, &msg);
    }
    u64 added = 0; /* wrapping, like the Rust plugin's release build */
    for (u32 v = 0; v < m; v++) {
      rd_bytes(&r, "", &p, &len);
      if (len != 8) return bad_i64(result, "entry ", e, ": value: ", len);
      added += (u64)get_i64(p);
    }
    if (has_state && state_len != 8) return bad_i64(result, "entry ", e, ": state: ", state_len);

    if (m == 0) {
      if (has_state) {
        *actions++ = 1;
        actions = put_u32(actions, 8);
        actions = put_mem(actions, state, 8);
      } else {
        *actions++ = 0;
      }
      continue;
    }
    i64 total = (i64)((has_state ? (u64)get_i64(state) : 0) + added);
    *actions++ = 1;
    actions = put_u32(actions, 8);
    actions = put_i64(actions, total);
    records = put_u32(records, key_len);
    records = put_mem(records, key, key_len);
    records = put_u32(records, 8);
    records = put_i64(records, total);
    emitted_count++;
  }
  put_u32(emitted, emitted_count);
  return ok(result, out, (u32)(records - out));
}
