#!/usr/bin/env bash
# Long, coverage-guided fuzzing of one weir-fuzz target with libFuzzer.
#   scripts/fuzz.sh TARGET [libFuzzer options...]
#   scripts/fuzz.sh checkpoint -runs=1000000
#   scripts/fuzz.sh pipeline -max_total_time=600 -jobs=2
# Targets: pipeline, abi_output, checkpoint, serve_api (fuzz/src/lib.rs).
# Needs a nightly toolchain (`rustup toolchain install nightly`); builds
# fuzz/libfuzzer in release with coverage instrumentation, overflow checks
# and debug assertions, as `cargo fuzz` does (cargo-fuzz works too:
# `cargo +nightly fuzz run --fuzz-dir fuzz/libfuzzer TARGET`). New inputs
# go to target/fuzz-corpus/TARGET (the committed corpus fuzz/corpus/TARGET
# is read, not written); crashes to target/fuzz-artifacts/TARGET/.
# Minimise a crash with `-minimize_crash=1 -runs=10000 CRASH_FILE`, then
# commit it under fuzz/corpus/TARGET/ as a regression input.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh TARGET [libFuzzer options]}"
shift
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/libfuzzer}"
# Instrument only target code (with --target, RUSTFLAGS skip build
# scripts and proc macros).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing ${RUSTFLAGS:-}"
cargo +nightly build --release --manifest-path fuzz/libfuzzer/Cargo.toml \
    --target "${triple}" --bin "${target}"
corpus="target/fuzz-corpus/${target}"
artifacts="target/fuzz-artifacts/${target}"
mkdir -p "${corpus}" "${artifacts}"
exec "${CARGO_TARGET_DIR}/${triple}/release/${target}" \
    -artifact_prefix="${artifacts}/" "$@" "${corpus}" "fuzz/corpus/${target}"
