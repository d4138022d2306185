// Package main is the wordcount plugin in Go: the same three functions as the
// Rust plugin (plugins/wordcount), written from docs/abi.md, byte-identical
// outputs and error messages.
//
//	map:split             line -> (word, i64 1) for every word (strings.Fields:
//	                      Unicode White_Space, as Rust's split_whitespace)
//	reduce:sum            adds i64 counts; an overflow fails the call
//	update:running_count  state = i64 total; a key with new values gets
//	                      total + sum(values) (wrapping) and emits (word, total);
//	                      a key without values keeps its state (or none)
//
// This file is plain Go (the logic, tested natively with `go test`);
// exports.go has the wasm glue.
package main

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// Not fmt: it pulls in package os, whose start-up asks WASI for preopened
// directories and file descriptor flags. strconv keeps the module smaller
// and its WASI imports to what the runtime itself needs.

// Split returns the words of a line, split on Unicode White_Space.
// strings.Fields uses unicode.IsSpace, which is exactly that set
// (U+0009..U+000D, U+0020, U+0085, U+00A0 and the White_Space table),
// the set of Rust's char::is_whitespace.
func Split(line string) []string {
	return strings.Fields(line)
}

// ---- framing (docs/abi.md §3), with the weir-abi crate's error wording ----

type frameError struct {
	at       int
	expected string
}

func (e *frameError) Error() string {
	return "malformed framing at byte " + strconv.Itoa(e.at) + ": expected " + e.expected
}

type reader struct {
	buf []byte
	pos int
}

func (r *reader) take(n uint64, what string) ([]byte, error) {
	if uint64(len(r.buf)-r.pos) < n {
		return nil, &frameError{r.pos, what}
	}
	b := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

func (r *reader) u8(what string) (byte, error) {
	b, err := r.take(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) bytes(what string) ([]byte, error) {
	n, err := r.u32(what)
	if err != nil {
		return nil, err
	}
	return r.take(uint64(n), what)
}

// count reads a count of items that need at least minItem bytes each.
func (r *reader) count(minItem uint64, what string) (int, error) {
	at := r.pos
	n, err := r.u32(what)
	if err != nil {
		return 0, err
	}
	if uint64(n)*minItem > uint64(len(r.buf)-r.pos) {
		return 0, &frameError{at, what}
	}
	return int(n), nil
}

func (r *reader) finish() error {
	if r.pos != len(r.buf) {
		return &frameError{r.pos, "end of buffer (trailing bytes)"}
	}
	return nil
}

// body skips the 16-byte call header.
func body(input []byte) ([]byte, error) {
	if len(input) < 16 {
		return nil, prefixed("bad call input: ", &frameError{len(input), "a 16-byte call header"})
	}
	return input[16:], nil
}

// prefixed is err with context in front, as Rust's map_err(format!(..)).
func prefixed(context string, err error) error {
	return errors.New(context + err.Error())
}

func putBytes(out, b []byte) []byte {
	out = binary.LittleEndian.AppendUint32(out, uint32(len(b)))
	return append(out, b...)
}

func putI64(out []byte, v int64) []byte {
	out = binary.LittleEndian.AppendUint32(out, 8)
	return binary.LittleEndian.AppendUint64(out, uint64(v))
}

// ---- values, as the Rust SDK decodes them --------------------------------

// decodeString checks UTF-8 and fails with the message Rust's
// str::from_utf8 gives (utf8.Valid does not say where or how long).
func decodeString(b []byte) (string, error) {
	if at, errLen, ok := utf8Check(b); !ok {
		if errLen == 0 {
			return "", errors.New("cannot decode alloc::string::String: incomplete utf-8 byte sequence from index " + strconv.Itoa(at))
		}
		return "", errors.New("cannot decode alloc::string::String: invalid utf-8 sequence of " + strconv.Itoa(errLen) + " bytes from index " + strconv.Itoa(at))
	}
	return string(b), nil
}

// utf8Check follows Rust's Utf8Error: the offset of the first bad sequence
// and its length (0 when the input ends inside a sequence).
func utf8Check(s []byte) (validUpTo, errorLen int, ok bool) {
	cont := func(c byte) bool { return c >= 0x80 && c <= 0xbf }
	for i := 0; i < len(s); {
		b := s[i]
		if b < 0x80 {
			i++
			continue
		}
		var w int
		switch {
		case b >= 0xc2 && b <= 0xdf:
			w = 2
		case b >= 0xe0 && b <= 0xef:
			w = 3
		case b >= 0xf0 && b <= 0xf4:
			w = 4
		default:
			return i, 1, false
		}
		if i+1 >= len(s) {
			return i, 0, false
		}
		c := s[i+1]
		var second bool
		switch {
		case b == 0xe0:
			second = c >= 0xa0 && c <= 0xbf
		case b == 0xed:
			second = c >= 0x80 && c <= 0x9f
		case b == 0xf0:
			second = c >= 0x90 && c <= 0xbf
		case b == 0xf4:
			second = c >= 0x80 && c <= 0x8f
		default:
			second = cont(c)
		}
		if !second {
			return i, 1, false
		}
		for k := 2; k < w; k++ {
			if i+k >= len(s) {
				return i, 0, false
			}
			if !cont(s[i+k]) {
				return i, k, false
			}
		}
		i += w
	}
	return 0, 0, true
}

func decodeI64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, errors.New("cannot decode i64: expected 8 bytes, found " + strconv.Itoa(len(b)))
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// ---- the three functions, on the body after the call header ---------------

// splitBatch is map:split over a record batch.
func splitBatch(input []byte) ([]byte, error) {
	b, err := body(input)
	if err != nil {
		return nil, err
	}
	r := reader{buf: b}
	var lines [][]byte
	check := func() error {
		n, err := r.count(8, "record count")
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if _, err := r.bytes("record key"); err != nil {
				return err
			}
			v, err := r.bytes("record value")
			if err != nil {
				return err
			}
			lines = append(lines, v)
		}
		return r.finish()
	}
	if err := check(); err != nil {
		return nil, prefixed("bad record batch from host: ", err)
	}
	out := make([]byte, 4, 4+2*len(b))
	var count uint32
	for i, v := range lines {
		line, err := decodeString(v)
		if err != nil {
			return nil, prefixed("record "+strconv.Itoa(i)+": value: ", err)
		}
		for _, w := range Split(line) {
			out = putBytes(out, []byte(w))
			out = putI64(out, 1)
			count++
		}
	}
	binary.LittleEndian.PutUint32(out, count)
	return out, nil
}

// Sum adds two counts, failing on overflow like Rust's checked_add.
func Sum(a, b int64) (int64, error) {
	s := a + b
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		return 0, errors.New("count overflow adding " + strconv.FormatInt(a, 10) + " and " + strconv.FormatInt(b, 10))
	}
	return s, nil
}

// sumGroups is reduce:sum: each group's values folded left to right.
func sumGroups(input []byte) ([]byte, error) {
	b, err := body(input)
	if err != nil {
		return nil, err
	}
	r := reader{buf: b}
	var groups [][][]byte
	check := func() error {
		n, err := r.count(8, "group count")
		if err != nil {
			return err
		}
		for g := 0; g < n; g++ {
			if _, err := r.bytes("group key"); err != nil {
				return err
			}
			at := r.pos
			m, err := r.count(4, "value count")
			if err != nil {
				return err
			}
			if m == 0 {
				return &frameError{at, "a value count of at least 1"}
			}
			values := make([][]byte, m)
			for v := range values {
				if values[v], err = r.bytes("group value"); err != nil {
					return err
				}
			}
			groups = append(groups, values)
		}
		return r.finish()
	}
	if err := check(); err != nil {
		return nil, prefixed("bad reduce input from host: ", err)
	}
	out := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+12*len(groups)), uint32(len(groups)))
	for g, values := range groups {
		var acc int64
		for v, raw := range values {
			x, err := decodeI64(raw)
			if err != nil {
				return nil, prefixed("group "+strconv.Itoa(g)+": value: ", err)
			}
			if v == 0 {
				acc = x
			} else if acc, err = Sum(acc, x); err != nil {
				return nil, err
			}
		}
		out = putI64(out, acc)
	}
	return out, nil
}

type entry struct {
	key    []byte
	state  []byte // nil: no state
	values [][]byte
}

// runningCount is update:running_count.
func runningCount(input []byte) ([]byte, error) {
	b, err := body(input)
	if err != nil {
		return nil, err
	}
	r := reader{buf: b}
	var entries []entry
	check := func() error {
		n, err := r.count(9, "update entry count")
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			var e entry
			if e.key, err = r.bytes("update key"); err != nil {
				return err
			}
			at := r.pos
			flags, err := r.u8("update flags")
			if err != nil {
				return err
			}
			if flags&^3 != 0 {
				return &frameError{at, "update flags with only bits 0 and 1"}
			}
			if flags&1 != 0 {
				if e.state, err = r.bytes("update state"); err != nil {
					return err
				}
				if e.state == nil {
					e.state = []byte{}
				}
			}
			m, err := r.count(4, "update value count")
			if err != nil {
				return err
			}
			e.values = make([][]byte, m)
			for v := range e.values {
				if e.values[v], err = r.bytes("update value"); err != nil {
					return err
				}
			}
			entries = append(entries, e)
		}
		return r.finish()
	}
	if err := check(); err != nil {
		return nil, prefixed("bad update input from host: ", err)
	}
	actions := binary.LittleEndian.AppendUint32(nil, uint32(len(entries)))
	emitted := make([]byte, 4)
	var emittedCount uint32
	for i, e := range entries {
		word, err := decodeString(e.key)
		if err != nil {
			return nil, prefixed("entry "+strconv.Itoa(i)+": key: ", err)
		}
		var added int64 // wrapping, like the Rust plugin's release build
		for _, raw := range e.values {
			x, err := decodeI64(raw)
			if err != nil {
				return nil, prefixed("entry "+strconv.Itoa(i)+": value: ", err)
			}
			added += x
		}
		var total int64
		if e.state != nil {
			if total, err = decodeI64(e.state); err != nil {
				return nil, prefixed("entry "+strconv.Itoa(i)+": state: ", err)
			}
		}
		switch {
		case len(e.values) > 0:
			total += added
			actions = append(actions, 1)
			actions = putI64(actions, total)
			emitted = putBytes(emitted, []byte(word))
			emitted = putI64(emitted, total)
			emittedCount++
		case e.state != nil: // no new values: the state stays as it is
			actions = append(actions, 1)
			actions = putI64(actions, total)
		default: // no values, no state: nothing to keep
			actions = append(actions, 0)
		}
	}
	binary.LittleEndian.PutUint32(emitted, emittedCount)
	return append(actions, emitted...), nil
}
