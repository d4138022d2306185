//go:build wasip1

// The wasm glue: the weir ABI exports over the functions of wordcount.go.
// Built as a WASI reactor (-buildmode=c-shared); the host calls
// _initialize (the Go runtime's start-up) before the exports.

package main

import (
	"encoding/binary"
	"unsafe"
)

// keep holds every buffer handed to the host, so the garbage collector
// never frees memory the host writes or reads; the instance is thrown
// away after the call.
var keep [][]byte

//go:wasmexport weir_abi_version
func weirAbiVersion() int32 { return 1 }

//go:wasmexport weir_alloc
func weirAlloc(size int32) uint32 {
	// A []uint64 is 8-byte aligned.
	words := make([]uint64, (int(size)+7)/8+1)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	keep = append(keep, buf)
	return uint32(uintptr(unsafe.Pointer(&buf[0])))
}

// guestBytes is the memory at ptr..ptr+n: a wasm address, memory the host
// wrote (go vet warns about the uintptr conversion; in wasm it is exact).
func guestBytes(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
}

// run calls f on the input and stores its output or error at result.
func run(input, n, result uint32, f func([]byte) ([]byte, error)) int32 {
	out, err := f(guestBytes(input, n))
	status := int32(0)
	if err != nil {
		out, status = []byte(err.Error()), 1
	}
	if len(out) == 0 {
		out = make([]byte, 1)[:0:1]
	}
	keep = append(keep, out)
	area := guestBytes(result, 8)
	binary.LittleEndian.PutUint32(area, uint32(uintptr(unsafe.Pointer(unsafe.SliceData(out)))))
	binary.LittleEndian.PutUint32(area[4:], uint32(len(out)))
	return status
}

//go:wasmexport map:split
func split(input, n, result uint32) int32 { return run(input, n, result, splitBatch) }

//go:wasmexport reduce:sum
func sum(input, n, result uint32) int32 { return run(input, n, result, sumGroups) }

//go:wasmexport update:running_count
func runningCountExport(input, n, result uint32) int32 {
	return run(input, n, result, runningCount)
}

// main is not called in a reactor; the package must still have one.
func main() {}
