#!/usr/bin/env bash
# Installs what weir's build and tests need on a fresh Debian machine with
# Rust from rustup. Idempotent and quick when everything is present.
#   scripts/setup.sh          wasm target and cmake (enough to build and run;
#                             cmake builds librdkafka, the Kafka client)
#   scripts/setup.sh --tests  also clang + lld for the C plugin, and the
#                             tansu Kafka broker the Kafka tests start
#   scripts/setup.sh --kafka  only the tansu broker
# tansu is built once into ~/.cache/tansu (10-25 minutes on 2 cores; later
# runs find it there). WEIR_TANSU=/path/to/tansu uses another binary.
set -euo pipefail

apt_install() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing $*" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "setup: these Debian packages are needed: sudo apt-get install $*" >&2
        exit 1
    fi
}

install_tansu() {
    local root="${HOME}/.cache/tansu"
    # The tests add an index tansu 0.6 lacks to its SQLite file (see
    # tests/src/kafka.rs): they need the sqlite3 shell.
    if ! command -v sqlite3 >/dev/null; then
        apt_install sqlite3
    fi
    if [[ -n "${WEIR_TANSU:-}" && -x "${WEIR_TANSU}" ]] || [[ -x "${root}/bin/tansu" ]]; then
        return
    fi
    echo "setup: building the tansu Kafka broker into ${root} (once; 10-25 minutes)" >&2
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql \
        --root "${root}" --target-dir "${HOME}/.cache/tansu-build" >&2
    rm -rf "${HOME}/.cache/tansu-build"
}

# With --tests: the JavaScript plugin (plugins/wordcount-js) needs the
# wasm32-wasip1 target, and Debian's clang with wasi-libc to build QuickJS's
# C for it (tests/build.rs).
install_js_toolchain() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        echo "setup: adding the wasm32-wasip1 Rust target" >&2
        rustup target add wasm32-wasip1
    fi
    if [[ ! -e /usr/lib/wasm32-wasi/libc.a ]] || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
        apt_install clang lld wasi-libc libclang-rt-14-dev-wasm32
    fi
}

if [[ "${1:-}" == "--kafka" ]]; then
    install_tansu
    exit 0
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding the wasm32-unknown-unknown Rust target" >&2
    rustup target add wasm32-unknown-unknown
fi

if ! command -v cmake >/dev/null; then
    apt_install cmake
fi

if [[ "${1:-}" == "--tests" ]]; then
    if ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null; then
        apt_install clang lld
    fi
    install_js_toolchain
    install_tansu
fi
