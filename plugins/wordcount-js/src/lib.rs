//! The word count plugin written in JavaScript (`wordcount.js`), embedded in
//! a `wasm32-wasip1` module with QuickJS by `weir-js`. Byte-identical to the
//! Rust reference (`plugins/wordcount`) on the cases of `docs/abi.md` §6.
//!
//! Build (see README.md):
//! `RQUICKJS_SYS_NO_WASI_SDK=1 CC_wasm32_wasip1=clang CFLAGS_wasm32_wasip1=--target=wasm32-wasi
//! cargo build --release --target wasm32-wasip1`

weir_js::plugin! {
    // wordcount.js, compiled by build.rs.
    bytecode = include_bytes!(concat!(env!("OUT_DIR"), "/wordcount.js.qjsbc"));
    map split(String) -> (String, i64);
    reduce sum(i64);
    update running_count(String, i64, i64) -> (String, i64);
}
