//go:build wasip1

// The ABI glue: the exports the weir host calls. Built only for wasip1
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared).
package main

import (
	"encoding/binary"
	"unsafe"
)

// Every buffer handed to the host stays referenced here so the garbage
// collector keeps it; the instance is thrown away after one call.
var keep [][]byte

//go:wasmexport weir_abi_version
func weirABIVersion() int32 { return 1 }

//go:wasmexport weir_alloc
func weirAlloc(size uint32) uint32 {
	buf := make([]byte, uint64(size)+8)
	keep = append(keep, buf)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return uint32((p + 7) &^ 7) // 8-byte aligned, as the ABI requires
}

func guestBytes(ptr, n uint32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
}

// call runs f on the body after the 16-byte call header and fills the
// result area: status 0 and the output, or status 1 and the message.
func call(input, n, result uint32, f func([]byte) ([]byte, error)) int32 {
	in := guestBytes(input, n)
	var out []byte
	status := int32(0)
	if len(in) < 16 {
		out, status = []byte("input shorter than the 16-byte call header"), 1
	} else if o, err := f(in[16:]); err != nil {
		out, status = []byte(err.Error()), 1
	} else {
		out = o
	}
	keep = append(keep, out)
	ptr := uint32(0)
	if len(out) > 0 {
		ptr = uint32(uintptr(unsafe.Pointer(unsafe.SliceData(out))))
	}
	res := guestBytes(result, 8)
	binary.LittleEndian.PutUint32(res[0:], ptr)
	binary.LittleEndian.PutUint32(res[4:], uint32(len(out)))
	return status
}

//go:wasmexport map:split
func split(input, n, result uint32) int32 { return call(input, n, result, Split) }

//go:wasmexport reduce:sum
func sum(input, n, result uint32) int32 { return call(input, n, result, Sum) }

//go:wasmexport update:running_count
func runningCount(input, n, result uint32) int32 { return call(input, n, result, RunningCount) }
