//! libFuzzer driver of the `abi_output` target (see weir-fuzz).
#![no_main]

#[global_allocator]
static ALLOC: weir_fuzz::LimitedAlloc = weir_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::run("abi_output", data));
