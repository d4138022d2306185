// {{name}}: a weir plugin in Go (word count). The logic is plain Go,
// tested natively with `go test`; exports.go (built only for wasip1) is the
// ABI glue. The ABI is in docs/abi.md of the weir source tree.
//
//	map:split             line -> (word, i64 1) per word (Unicode
//	                      whitespace); a line that is not UTF-8 fails.
//	reduce:sum            adds i64 counts; an overflow fails the call.
//	update:running_count  state = i64 total; with new values: total + sum
//	                      (wrapping), emits (word, total); without: keeps
//	                      the state (or none) and emits nothing.
//
// Build: {{build_command}}
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// A reactor module: the host calls the exports, main never runs.
func main() {}

var errMalformed = errors.New("malformed input from the host")

// reader reads the framing of docs/abi.md, checking every length.
type reader struct {
	buf []byte
	err error
}

func (r *reader) u32() uint32 {
	if r.err != nil || len(r.buf) < 4 {
		r.err = errMalformed
		return 0
	}
	v := binary.LittleEndian.Uint32(r.buf)
	r.buf = r.buf[4:]
	return v
}

func (r *reader) u8() byte {
	if r.err != nil || len(r.buf) < 1 {
		r.err = errMalformed
		return 0
	}
	v := r.buf[0]
	r.buf = r.buf[1:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.u32()
	if r.err != nil || uint64(len(r.buf)) < uint64(n) {
		r.err = errMalformed
		return nil
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b
}

func appendBytes(out, b []byte) []byte {
	out = binary.LittleEndian.AppendUint32(out, uint32(len(b)))
	return append(out, b...)
}

func appendCount(out []byte, n int64) []byte {
	out = binary.LittleEndian.AppendUint32(out, 8)
	return binary.LittleEndian.AppendUint64(out, uint64(n))
}

func count(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("a count must be 8 bytes (an i64), found %d", len(b))
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// Split: a record batch of lines in, (word, 1) records out.
func Split(body []byte) ([]byte, error) {
	r := reader{buf: body}
	n := r.u32()
	out := binary.LittleEndian.AppendUint32(nil, 0)
	words := uint32(0)
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.bytes() // the key is ignored
		line := r.bytes()
		if r.err == nil && !utf8.Valid(line) {
			return nil, fmt.Errorf("record %d: the line is not valid UTF-8", i)
		}
		for _, w := range strings.Fields(string(line)) {
			out = appendCount(appendBytes(out, []byte(w)), 1)
			words++
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	binary.LittleEndian.PutUint32(out, words)
	return out, nil
}

// Sum: groups of counts in, one total per group out.
func Sum(body []byte) ([]byte, error) {
	r := reader{buf: body}
	groups := r.u32()
	out := binary.LittleEndian.AppendUint32(nil, groups)
	for g := uint32(0); g < groups && r.err == nil; g++ {
		r.bytes() // the key
		values := r.u32()
		total := int64(0)
		for i := uint32(0); i < values && r.err == nil; i++ {
			v, err := count(r.bytes())
			if r.err != nil {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("group %d: %w", g, err)
			}
			if i > 0 && (v > 0 && total > math.MaxInt64-v || v < 0 && total < math.MinInt64-v) {
				return nil, fmt.Errorf("count overflow adding %d and %d", total, v)
			}
			total += v
		}
		out = appendCount(out, total)
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// RunningCount: entries (key, state, new values) in, actions and emitted
// records out.
func RunningCount(body []byte) ([]byte, error) {
	r := reader{buf: body}
	n := r.u32()
	actions := binary.LittleEndian.AppendUint32(nil, n)
	var emitted []byte
	emittedCount := uint32(0)
	for i := uint32(0); i < n && r.err == nil; i++ {
		key := r.bytes()
		flags := r.u8()
		var state []byte
		if flags&1 != 0 {
			state = r.bytes()
		}
		values := r.u32()
		if r.err != nil {
			break
		}
		if !utf8.Valid(key) {
			return nil, fmt.Errorf("entry %d: the key is not valid UTF-8", i)
		}
		total := int64(0)
		if state != nil {
			s, err := count(state)
			if err != nil {
				return nil, fmt.Errorf("entry %d: state: %w", i, err)
			}
			total = s
		}
		for j := uint32(0); j < values && r.err == nil; j++ {
			v, err := count(r.bytes())
			if r.err == nil && err != nil {
				return nil, fmt.Errorf("entry %d: %w", i, err)
			}
			total += v // wraps, as the Rust SDK's release build does
		}
		switch {
		case values == 0 && state == nil:
			actions = append(actions, 0) // no state, nothing new: remove
		case values == 0:
			actions = appendCount(append(actions, 1), total) // keep
		default:
			actions = appendCount(append(actions, 1), total)
			emitted = appendCount(appendBytes(emitted, key), total)
			emittedCount++
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	actions = binary.LittleEndian.AppendUint32(actions, emittedCount)
	return append(actions, emitted...), nil
}
