/* Native unit tests of {{name}}.c's logic: make test */
#include <stdio.h>
#include <string.h>

#include "{{name}}.c"

static int failures;

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                \
    }                                                            \
  } while (0)

typedef struct { char words[16][16]; u32 n; } collected;

static void collect(const u8 *w, u32 len, void *ctx) {
  collected *c = ctx;
  if (c->n < 16 && len < 16) {
    memcpy(c->words[c->n], w, len);
    c->words[c->n][len] = 0;
  }
  c->n++;
}

static u32 split_str(const char *s, collected *c) {
  memset(c, 0, sizeof *c);
  return split_words((const u8 *)s, (u32)strlen(s), collect, c);
}

int main(void) {
  collected c;
  CHECK(split_str("  to be\tor\n", &c) == 3);
  CHECK(strcmp(c.words[0], "to") == 0 && strcmp(c.words[2], "or") == 0);
  CHECK(split_str("", &c) == 0);
  CHECK(split_str("a\xe3\x80\x80" "b", &c) == 2); /* U+3000 ideographic space */
  CHECK(utf8_valid((const u8 *)"h\xc3\xa9llo", 6));
  CHECK(!utf8_valid((const u8 *)"\xff", 1));
  CHECK(!utf8_valid((const u8 *)"caf\xc3", 4));
  i64 total;
  CHECK(add_counts(2, 3, &total) && total == 5);
  CHECK(!add_counts(9223372036854775807LL, 1, &total));
  printf(failures ? "FAILED\n" : "ok\n");
  return failures != 0;
}
