//! libFuzzer driver of the `serve_api` target (see weir-fuzz).
#![no_main]

#[global_allocator]
static ALLOC: weir_fuzz::LimitedAlloc = weir_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::run("serve_api", data));
