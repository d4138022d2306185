package main

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func batch(lines ...string) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(lines)))
	for _, l := range lines {
		out = appendBytes(appendBytes(out, nil), []byte(l))
	}
	return out
}

func TestSplit(t *testing.T) {
	got, err := Split(batch("a b", ""))
	if err != nil {
		t.Fatal(err)
	}
	// docs/abi.md's worked example: "a b" -> (a, 1), (b, 1).
	want := binary.LittleEndian.AppendUint32(nil, 2)
	want = appendCount(appendBytes(want, []byte("a")), 1)
	want = appendCount(appendBytes(want, []byte("b")), 1)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	if _, err := Split(batch("ok \xff")); err == nil {
		t.Fatal("invalid UTF-8 must fail")
	}
}

func TestSumOverflow(t *testing.T) {
	body := binary.LittleEndian.AppendUint32(nil, 1)
	body = appendBytes(body, []byte("w"))
	body = binary.LittleEndian.AppendUint32(body, 2)
	body = appendCount(appendCount(body, 1<<62), 1<<62)
	if _, err := Sum(body); err == nil {
		t.Fatal("overflow must fail")
	}
}
