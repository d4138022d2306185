package main

import (
	"reflect"
	"testing"
)

func TestSplitIsRustSplitWhitespace(t *testing.T) {
	for line, want := range map[string][]string{
		"":                       nil,
		"  the cat  the\tend ":   {"the", "cat", "the", "end"},
		"a\u0085b\u00a0c\u3000d": {"a", "b", "c", "d"},
		"a\u1680b\u2000c\u200ad\u2028e\u2029f\u202fg\u205fh": {"a", "b", "c", "d", "e", "f", "g", "h"},
		"x\u200by\u180ez\ufeffw":                             {"x\u200by\u180ez\ufeffw"}, // not whitespace
		"\x1c\x1f":                                           {"\x1c\x1f"},
	} {
		if got := Split(line); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("Split(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestUTF8ErrorsAreRusts(t *testing.T) {
	for _, c := range []struct {
		in         string
		at, errLen int
	}{
		{"ab\xff", 2, 1}, {"\xe2\x82", 0, 0}, {"\xe2\x82x", 0, 2}, {"\xed\xa0\x80", 0, 1},
		{"\xf0\x9f\x98", 0, 0}, {"\xf0\x9f\x98x", 0, 3}, {"\xc0\x80", 0, 1}, {"é\xc3", 2, 0},
	} {
		at, errLen, ok := utf8Check([]byte(c.in))
		if ok || at != c.at || errLen != c.errLen {
			t.Errorf("utf8Check(%q) = %d, %d, %v; want %d, %d", c.in, at, errLen, ok, c.at, c.errLen)
		}
	}
}

func TestSumOverflows(t *testing.T) {
	if s, err := Sum(2, 3); s != 5 || err != nil {
		t.Errorf("Sum(2, 3) = %d, %v", s, err)
	}
	const max = int64(^uint64(0) >> 1)
	if _, err := Sum(max, 1); err == nil || err.Error() != "count overflow adding 9223372036854775807 and 1" {
		t.Errorf("Sum(max, 1): %v", err)
	}
	if _, err := Sum(-max-1, -1); err == nil {
		t.Error("Sum(min, -1) did not overflow")
	}
}
