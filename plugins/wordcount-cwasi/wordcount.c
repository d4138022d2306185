/*
 * wordcount in C with wasi-libc: the same three functions as the Rust plugin
 * (plugins/wordcount), byte-identical outputs and error messages. Unlike
 * plugins/wordcount-c (freestanding, no libc), this one uses the C library:
 * malloc/realloc for buffers, string.h, snprintf for messages. That makes
 * it a WASI module: a reactor whose _initialize the host calls first.
 *
 *   map:split              line -> (word, i64 1) for every word split on
 *                          Unicode White_Space (Rust's char::is_whitespace)
 *   reduce:sum             adds i64 counts; an overflow fails the call
 *   update:running_count   state = i64 total; a key with new values gets
 *                          total + sum(values) (wrapping) and emits
 *                          (word, total); a key without values keeps its
 *                          state (or has none)
 *
 * Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *   clang --target=wasm32-wasi -O2 -Wall -Werror -mexec-model=reactor \
 *         -o wordcount_cwasi.wasm wordcount.c
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))

/* ---- output buffers ------------------------------------------------------ */

typedef struct {
  uint8_t *data;
  size_t len, cap;
} Buf;

static uint8_t *buf_reserve(Buf *b, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
    b->data = realloc(b->data, b->cap);
    if (!b->data) abort();
  }
  uint8_t *p = b->data + b->len;
  b->len += n;
  return p;
}

static void put_u8(Buf *b, uint8_t v) { *buf_reserve(b, 1) = v; }
static void put_u32(Buf *b, uint32_t v) { memcpy(buf_reserve(b, 4), &v, 4); } /* wasm is little-endian */
static void put_bytes(Buf *b, const uint8_t *p, uint32_t n) {
  put_u32(b, n);
  memcpy(buf_reserve(b, n), p, n);
}
static void put_i64(Buf *b, int64_t v) {
  put_u32(b, 8);
  memcpy(buf_reserve(b, 8), &v, 8);
}

/* ---- failures ------------------------------------------------------------ */

/* The message of the call's failure (status 1), or NULL. */
static char *failure;

__attribute__((format(printf, 1, 2))) static bool fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  failure = malloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(failure, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return false;
}

/* ---- framing (docs/abi.md §3), with the weir-abi crate's error wording ---- */

typedef struct {
  const uint8_t *buf;
  size_t len, pos;
  const char *context; /* "bad record batch from host: " ... */
} Reader;

static bool frame_error(Reader *r, size_t at, const char *expected) {
  return fail("%smalformed framing at byte %zu: expected %s", r->context, at, expected);
}

static bool take(Reader *r, size_t n, const char *expected, const uint8_t **out) {
  if (r->len - r->pos < n) return frame_error(r, r->pos, expected);
  *out = r->buf + r->pos;
  r->pos += n;
  return true;
}

static bool read_u8(Reader *r, const char *expected, uint8_t *v) {
  const uint8_t *p;
  if (!take(r, 1, expected, &p)) return false;
  *v = *p;
  return true;
}

static bool read_u32(Reader *r, const char *expected, uint32_t *v) {
  const uint8_t *p;
  if (!take(r, 4, expected, &p)) return false;
  memcpy(v, p, 4);
  return true;
}

typedef struct {
  const uint8_t *ptr;
  uint32_t len;
} Bytes;

static bool read_bytes(Reader *r, const char *expected, Bytes *b) {
  return read_u32(r, expected, &b->len) && take(r, b->len, expected, &b->ptr);
}

/* A count of items that need at least min_item bytes each. */
static bool read_count(Reader *r, uint64_t min_item, const char *expected, uint32_t *n) {
  size_t at = r->pos;
  if (!read_u32(r, expected, n)) return false;
  if (*n * min_item > r->len - r->pos) return frame_error(r, at, expected);
  return true;
}

static bool finish(Reader *r) {
  return r->pos == r->len || frame_error(r, r->pos, "end of buffer (trailing bytes)");
}

/* The body after the 16-byte call header. */
static bool body(const uint8_t *input, uint32_t len, const char *context, Reader *r) {
  if (len < 16)
    return fail("bad call input: malformed framing at byte %" PRIu32 ": expected a 16-byte call header", len);
  *r = (Reader){input + 16, len - 16, 0, context};
  return true;
}

/* ---- values, as the Rust SDK decodes them -------------------------------- */

static bool is_cont(uint8_t c) { return c >= 0x80 && c <= 0xbf; }

/* Checks UTF-8, failing with Rust's str::from_utf8 message after
 * "WHAT INDEX: FIELD: " ("record 3: value: "). */
static bool decode_string(Bytes s, const char *what, uint32_t index, const char *field) {
  size_t i = 0;
  size_t error_len = 0;
  while (i < s.len) {
    uint8_t b = s.ptr[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t w = (b >= 0xc2 && b <= 0xdf) ? 2 : (b >= 0xe0 && b <= 0xef) ? 3 : (b >= 0xf0 && b <= 0xf4) ? 4 : 0;
    if (w == 0) {
      error_len = 1;
      goto bad;
    }
    if (i + 1 >= s.len) goto incomplete;
    uint8_t c = s.ptr[i + 1];
    bool second_ok = b == 0xe0   ? (c >= 0xa0 && c <= 0xbf)
                     : b == 0xed ? (c >= 0x80 && c <= 0x9f)
                     : b == 0xf0 ? (c >= 0x90 && c <= 0xbf)
                     : b == 0xf4 ? (c >= 0x80 && c <= 0x8f)
                                 : is_cont(c);
    if (!second_ok) {
      error_len = 1;
      goto bad;
    }
    for (size_t k = 2; k < w; k++) {
      if (i + k >= s.len) goto incomplete;
      if (!is_cont(s.ptr[i + k])) {
        error_len = k;
        goto bad;
      }
    }
    i += w;
  }
  return true;
bad:
  return fail("%s %" PRIu32 ": %s: cannot decode alloc::string::String: invalid utf-8 sequence of %zu bytes from index %zu",
              what, index, field, error_len, i);
incomplete:
  return fail("%s %" PRIu32 ": %s: cannot decode alloc::string::String: incomplete utf-8 byte sequence from index %zu",
              what, index, field, i);
}

static bool decode_i64(Bytes b, const char *what, uint32_t index, const char *field, int64_t *v) {
  if (b.len != 8)
    return fail("%s %" PRIu32 ": %s: cannot decode i64: expected 8 bytes, found %" PRIu32, what, index, field, b.len);
  memcpy(v, b.ptr, 8);
  return true;
}

/* Byte length of the whitespace character at p (valid UTF-8), or 0.
 * Unicode White_Space, the set of Rust's char::is_whitespace: U+0009..U+000D,
 * U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F,
 * U+205F, U+3000. (isspace() is ASCII only; iswspace() depends on the
 * locale, so neither is Rust's set.) */
static size_t space_len(const uint8_t *p, const uint8_t *end) {
  uint8_t b = p[0];
  if (b == ' ' || (b >= 0x09 && b <= 0x0d)) return 1;
  if (b == 0xc2 && end - p >= 2) return (p[1] == 0x85 || p[1] == 0xa0) ? 2 : 0;
  if (end - p < 3) return 0;
  if (b == 0xe1) return (p[1] == 0x9a && p[2] == 0x80) ? 3 : 0;
  if (b == 0xe2 && p[1] == 0x80) return (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf) ? 3 : 0;
  if (b == 0xe2 && p[1] == 0x81) return p[2] == 0x9f ? 3 : 0;
  if (b == 0xe3) return (p[1] == 0x80 && p[2] == 0x80) ? 3 : 0;
  return 0;
}

/* ---- the three functions -------------------------------------------------- */

static bool split(Reader *r, Buf *out) {
  uint32_t n;
  Bytes key, value;
  if (!read_count(r, 8, "record count", &n)) return false;
  for (uint32_t i = 0; i < n; i++)
    if (!read_bytes(r, "record key", &key) || !read_bytes(r, "record value", &value)) return false;
  if (!finish(r)) return false;

  uint32_t words = 0;
  put_u32(out, 0);
  r->pos = 4;
  for (uint32_t i = 0; i < n; i++) {
    read_bytes(r, "", &key);
    read_bytes(r, "", &value);
    if (!decode_string(value, "record", i, "value")) return false;
    const uint8_t *p = value.ptr, *end = value.ptr + value.len, *word = NULL;
    while (p < end) {
      size_t sp = space_len(p, end);
      if (!sp) {
        if (!word) word = p;
        p++;
        continue;
      }
      if (word) {
        put_bytes(out, word, (uint32_t)(p - word));
        put_i64(out, 1);
        words++;
        word = NULL;
      }
      p += sp;
    }
    if (word) {
      put_bytes(out, word, (uint32_t)(p - word));
      put_i64(out, 1);
      words++;
    }
  }
  memcpy(out->data, &words, 4);
  return true;
}

static bool sum(Reader *r, Buf *out) {
  uint32_t n, m;
  Bytes b;
  if (!read_count(r, 8, "group count", &n)) return false;
  for (uint32_t g = 0; g < n; g++) {
    if (!read_bytes(r, "group key", &b)) return false;
    size_t at = r->pos;
    if (!read_count(r, 4, "value count", &m)) return false;
    if (m == 0) return frame_error(r, at, "a value count of at least 1");
    for (uint32_t v = 0; v < m; v++)
      if (!read_bytes(r, "group value", &b)) return false;
  }
  if (!finish(r)) return false;

  put_u32(out, n);
  r->pos = 4;
  for (uint32_t g = 0; g < n; g++) {
    read_bytes(r, "", &b);
    read_u32(r, "", &m);
    int64_t acc = 0, x, next;
    for (uint32_t v = 0; v < m; v++) {
      read_bytes(r, "", &b);
      if (!decode_i64(b, "group", g, "value", &x)) return false;
      if (v == 0) {
        acc = x;
        continue;
      }
      if (__builtin_add_overflow(acc, x, &next))
        return fail("count overflow adding %" PRId64 " and %" PRId64, acc, x);
      acc = next;
    }
    put_i64(out, acc);
  }
  return true;
}

static bool running_count(Reader *r, Buf *out) {
  uint32_t n, m;
  uint8_t flags;
  Bytes key, state, b;
  if (!read_count(r, 9, "update entry count", &n)) return false;
  for (uint32_t e = 0; e < n; e++) {
    if (!read_bytes(r, "update key", &key)) return false;
    size_t at = r->pos;
    if (!read_u8(r, "update flags", &flags)) return false;
    if (flags & ~3u) return frame_error(r, at, "update flags with only bits 0 and 1");
    if ((flags & 1) && !read_bytes(r, "update state", &state)) return false;
    if (!read_count(r, 4, "update value count", &m)) return false;
    for (uint32_t v = 0; v < m; v++)
      if (!read_bytes(r, "update value", &b)) return false;
  }
  if (!finish(r)) return false;

  Buf emitted = {0};
  uint32_t emitted_count = 0;
  put_u32(out, n);
  put_u32(&emitted, 0);
  r->pos = 4;
  for (uint32_t e = 0; e < n; e++) {
    read_bytes(r, "", &key);
    read_u8(r, "", &flags);
    bool has_state = flags & 1;
    if (has_state) read_bytes(r, "", &state);
    read_u32(r, "", &m);
    if (!decode_string(key, "entry", e, "key")) return false;
    uint64_t added = 0; /* wrapping, like the Rust plugin's release build */
    int64_t x, total = 0;
    for (uint32_t v = 0; v < m; v++) {
      read_bytes(r, "", &b);
      if (!decode_i64(b, "entry", e, "value", &x)) return false;
      added += (uint64_t)x;
    }
    if (has_state && !decode_i64(state, "entry", e, "state", &total)) return false;
    if (m > 0) {
      total = (int64_t)((uint64_t)total + added);
      put_u8(out, 1);
      put_i64(out, total);
      put_bytes(&emitted, key.ptr, key.len);
      put_i64(&emitted, total);
      emitted_count++;
    } else if (has_state) { /* no new values: the state stays */
      put_u8(out, 1);
      put_i64(out, total);
    } else { /* no values, no state: nothing to keep */
      put_u8(out, 0);
    }
  }
  memcpy(emitted.data, &emitted_count, 4);
  memcpy(buf_reserve(out, emitted.len), emitted.data, emitted.len);
  free(emitted.data);
  return true;
}

/* ---- the weir ABI exports ------------------------------------------------- */

EXPORT("weir_abi_version") int weir_abi_version(void) { return 1; }

/* malloc's blocks are aligned for max_align_t (16 bytes); never freed: the
 * instance is discarded after the call. */
EXPORT("weir_alloc") void *weir_alloc(uint32_t size) { return malloc(size ? size : 1); }

typedef bool (*Function)(Reader *, Buf *);

static int run(Function f, const char *context, uint32_t input, uint32_t len, uint32_t result) {
  Reader r;
  Buf out = {0};
  bool ok = body((const uint8_t *)input, len, context, &r) && f(&r, &out);
  uint32_t area[2] = {(uint32_t)out.data, (uint32_t)out.len};
  if (!ok) {
    area[0] = (uint32_t)failure;
    area[1] = (uint32_t)strlen(failure);
  }
  memcpy((void *)result, area, 8);
  return ok ? 0 : 1;
}

EXPORT("map:split") int map_split(uint32_t input, uint32_t len, uint32_t result) {
  return run(split, "bad record batch from host: ", input, len, result);
}

EXPORT("reduce:sum") int reduce_sum(uint32_t input, uint32_t len, uint32_t result) {
  return run(sum, "bad reduce input from host: ", input, len, result);
}

EXPORT("update:running_count") int update_running_count(uint32_t input, uint32_t len, uint32_t result) {
  return run(running_count, "bad update input from host: ", input, len, result);
}
