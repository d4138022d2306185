#!/usr/bin/env bash
# Installs what weir's build and tests need on a fresh Debian machine with
# Rust from rustup. Idempotent and quick when everything is present.
#   scripts/setup.sh          wasm target only (enough to build and run)
#   scripts/setup.sh --tests  also clang + lld for the C plugin the tests use
set -euo pipefail

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding the wasm32-unknown-unknown Rust target" >&2
    rustup target add wasm32-unknown-unknown
fi

if [[ "${1:-}" == "--tests" ]]; then
    if ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "setup: installing clang and lld (C plugin)" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld >/dev/null
        else
            echo "setup: clang and lld are needed for the C plugin: sudo apt-get install clang lld" >&2
            exit 1
        fi
    fi
fi
