//! What a plugin may import, and the hint a refused import gets.
//!
//! weir offers three sets, all deterministic:
//! - `weir.log` and `weir.fail` (the ABI's own, `docs/abi.md` §1);
//! - the virtual WASI preview 1 of [`super::wasi`];
//! - the runtime imports of languages that need them: AssemblyScript's
//!   `env.abort`, `env.seed` and `env.trace`.
//!
//! Anything else is refused when the module is loaded, naming the import and
//! what to change in the module's toolchain.

use wasmtime::{Caller, ExternType, ImportType, Linker, ValType};

use super::error::Problem;
use super::store::{self, CallState};
use super::wasi;

/// A call ended by the guest through `weir.fail`, an AssemblyScript
/// `abort`, or another runtime's way of giving up with a message.
#[derive(Debug)]
pub(crate) struct GuestFailure {
    pub(crate) message: String,
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GuestFailure {}

/// Messages from a guest are cut at this many bytes.
const MESSAGE_CAP: usize = 64 << 10;

/// The non-WASI imports weir offers: (module, name, params, results), in
/// the letters of [`wasi::FUNCTIONS`] (`F` is f64).
const OFFERED: &[(&str, &str, &str, &str)] = &[
    (weir_abi::IMPORT_MODULE, weir_abi::IMPORT_LOG, "iii", ""),
    (weir_abi::IMPORT_MODULE, weir_abi::IMPORT_FAIL, "ii", ""),
    ("env", "abort", "iiii", ""),
    ("env", "seed", "", "F"),
    ("env", "trace", "iiFFFFF", ""),
];

/// Defines every import weir offers.
pub(crate) fn define(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        weir_abi::IMPORT_MODULE,
        weir_abi::IMPORT_LOG,
        |mut caller: Caller<'_, CallState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<()> {
            store::guest_log(&mut caller, level, ptr as u32, len as u32)
        },
    )?;
    linker.func_wrap(
        weir_abi::IMPORT_MODULE,
        weir_abi::IMPORT_FAIL,
        |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            // The whole range must lie in memory; only the cap is copied.
            store::guest_bytes(&mut caller, "weir.fail", ptr as u32, 0)?;
            store::guest_bytes(
                &mut caller,
                "weir.fail",
                (ptr as u32).saturating_add(len as u32),
                0,
            )?;
            let take = (len as u32).min(MESSAGE_CAP as u32);
            let bytes = store::guest_bytes(&mut caller, "weir.fail", ptr as u32, take)?;
            Err(wasmtime::Error::new(GuestFailure {
                message: String::from_utf8_lossy(&bytes).into_owned(),
            }))
        },
    )?;
    define_assemblyscript(linker)?;
    wasi::define(linker)
}

/// An AssemblyScript string: UTF-16LE at `ptr`, its byte length in the
/// object header's `rtSize` field just before it.
fn as_string(caller: &mut Caller<'_, CallState>, ptr: i32) -> String {
    if ptr == 0 {
        return "null".into();
    }
    let read = |caller: &mut Caller<'_, CallState>| -> Option<String> {
        let start = (ptr as u32 as usize).checked_sub(4)?;
        let header = store::guest_bytes(caller, "abort", start as u32, 4).ok()?;
        let len = (u32::from_le_bytes(header.try_into().ok()?) as usize).min(MESSAGE_CAP);
        let bytes = store::guest_bytes(caller, "abort", ptr as u32, len as u32).ok()?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect();
        Some(String::from_utf16_lossy(&units))
    };
    read(caller).unwrap_or_else(|| format!("<unreadable string at {ptr}>"))
}

fn define_assemblyscript(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "abort",
        |mut caller: Caller<'_, CallState>,
         msg: i32,
         file: i32,
         line: i32,
         column: i32|
         -> wasmtime::Result<()> {
            let msg = as_string(&mut caller, msg);
            let file = as_string(&mut caller, file);
            Err(wasmtime::Error::new(GuestFailure {
                message: format!("abort: {msg} at {file}:{line}:{column}"),
            }))
        },
    )?;
    // Seeds Math.random: from the call's deterministic random stream.
    linker.func_wrap("env", "seed", |mut caller: Caller<'_, CallState>| -> f64 {
        let mut bytes = [0u8; 8];
        caller.data_mut().env.fill_random(&mut bytes);
        // A non-zero value in [1, 2): AssemblyScript reinterprets the bits.
        f64::from_bits(0x3ff0_0000_0000_0000 | (u64::from_le_bytes(bytes) >> 12))
    })?;
    linker.func_wrap(
        "env",
        "trace",
        |mut caller: Caller<'_, CallState>,
         msg: i32,
         n: i32,
         a0: f64,
         a1: f64,
         a2: f64,
         a3: f64,
         a4: f64|
         -> wasmtime::Result<()> {
            if caller.data().log_left == 0 {
                return Ok(());
            }
            store::charge(&mut caller, MESSAGE_CAP as u64 / 64)?;
            let msg = as_string(&mut caller, msg);
            let args = [a0, a1, a2, a3, a4];
            let shown: Vec<String> = args
                .iter()
                .take(n.clamp(0, 5) as usize)
                .map(f64::to_string)
                .collect();
            let line = format!("trace: {msg} {}", shown.join(", "));
            store::log_bytes(caller.data_mut(), 1, line.trim_end().as_bytes());
            Ok(())
        },
    )?;
    Ok(())
}

fn letters(types: impl Iterator<Item = ValType>) -> String {
    types
        .map(|t| match t {
            ValType::I32 => 'i',
            ValType::I64 => 'I',
            ValType::F32 => 'f',
            ValType::F64 => 'F',
            _ => '?',
        })
        .collect()
}

fn expected(module: &str, name: &str) -> Option<(&'static str, &'static str)> {
    if module == wasi::MODULE {
        return wasi::signature(name);
    }
    OFFERED
        .iter()
        .find(|(m, n, _, _)| *m == module && *n == name)
        .map(|(_, _, p, r)| (*p, *r))
}

/// Checks one import against what weir offers.
pub(crate) fn check(import: &ImportType<'_>) -> Result<(), Problem> {
    let (module, name) = (import.module(), import.name());
    let refuse = |hint: String| Problem::UnsupportedImport {
        module: module.into(),
        name: name.into(),
        hint,
    };
    let ExternType::Func(ty) = import.ty() else {
        return Err(refuse(non_function_hint(module, name)));
    };
    let Some((params, results)) = expected(module, name) else {
        return Err(refuse(unknown_hint(module, name)));
    };
    let (have_p, have_r) = (letters(ty.params()), letters(ty.results()));
    if have_p != params || have_r != results {
        return Err(refuse(format!(
            "weir offers it with parameters ({}) and results ({}), the module wants ({}) and ({}) \
             (i = i32, I = i64, F = f64)",
            params, results, have_p, have_r
        )));
    }
    Ok(())
}

const OFFER: &str = "weir offers only `weir.log`, `weir.fail`, a virtual `wasi_snapshot_preview1` \
                     and AssemblyScript's `env.abort`/`env.seed`/`env.trace`";

fn non_function_hint(module: &str, name: &str) -> String {
    if name.contains("memory") {
        return format!(
            "the module imports its memory (C/Zig: `-Wl,--import-memory`, Rust: `-C link-arg=--import-memory`); \
             export it instead, as `memory`; {OFFER}"
        );
    }
    if module.starts_with("GOT.") || name.starts_with("__") {
        return format!(
            "a position-independent or shared-library build (`-fPIC`, `-shared`, Emscripten's SIDE_MODULE); \
             build an ordinary module; {OFFER}"
        );
    }
    format!("a non-function import; {OFFER}")
}

fn unknown_hint(module: &str, name: &str) -> String {
    let why = match module {
        wasi::MODULE => "not a WASI preview 1 function".to_owned(),
        "wasi_unstable" => "the old WASI snapshot 0: rebuild with a current toolchain (wasm32-wasip1)".to_owned(),
        m if m.starts_with("wasi:") => {
            "a WASI 0.2 component-model import: weir plugins are core modules; build for wasm32-wasip1 \
             (Rust: `--target wasm32-wasip1` or `wasm32-unknown-unknown`), not wasip2 or a component"
                .to_owned()
        }
        "wbg" | "__wbindgen_placeholder__" | "__wbindgen_externref_xform__" => {
            "Rust wasm-bindgen glue: weir plugins do not use wasm-bindgen; write functions with weir-sdk's \
             macros and build with `cargo build --target wasm32-unknown-unknown` (no wasm-pack)"
                .to_owned()
        }
        "go" | "gojs" => {
            "Go built for the browser (GOOS=js): build with `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`"
                .to_owned()
        }
        "env" if name.starts_with("emscripten") || name.starts_with("__syscall") || name.starts_with("_emscripten") => {
            "Emscripten's JavaScript runtime: build with `clang --target=wasm32-wasi` (wasi-libc) or \
             `--target=wasm32` instead of emcc"
                .to_owned()
        }
        "env" => format!(
            "an undefined symbol `{name}` left as an import: C/C++/Zig: define it or link what defines it \
             (and drop `--allow-undefined`); Rust: an `extern` block nothing defines; \
             AssemblyScript: a `declare function` with no host counterpart"
        ),
        _ => "weir does not know this module".to_owned(),
    };
    format!("{why}; {OFFER}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(wat: &str) -> Vec<String> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wat).unwrap();
        module
            .imports()
            .filter_map(|i| check(&i).err())
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn offered_imports_pass_and_others_are_named_with_a_hint() {
        assert!(problems(
            r#"(module
                (import "weir" "log" (func (param i32 i32 i32)))
                (import "weir" "fail" (func (param i32 i32)))
                (import "env" "abort" (func (param i32 i32 i32 i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32))))"#
        )
        .is_empty());
        let p = problems(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32)))
                (import "wbg" "__wbg_log" (func))
                (import "env" "memory" (memory 1))
                (import "env" "strlen" (func (param i32) (result i32))))"#,
        );
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(
            p[0].contains("fd_write") && p[0].contains("(iiii)"),
            "{}",
            p[0]
        );
        assert!(p[1].contains("not a WASI preview 1 function"), "{}", p[1]);
        assert!(p[2].contains("wasm-bindgen"), "{}", p[2]);
        assert!(p[3].contains("export it instead"), "{}", p[3]);
        assert!(p[4].contains("undefined symbol `strlen`"), "{}", p[4]);
    }
}

#[cfg(test)]
mod linked {
    use super::super::engine::{RuntimeConfig, SharedEngine};
    use super::*;

    fn wat_type(letters: &str) -> String {
        letters
            .chars()
            .map(|c| match c {
                'I' => " i64",
                'F' => " f64",
                _ => " i32",
            })
            .collect()
    }

    /// Every import the policy accepts is linked with exactly that type: a
    /// module importing all of them instantiates.
    #[test]
    fn the_linker_defines_every_accepted_import_with_its_type() {
        let engine = SharedEngine::new(&RuntimeConfig {
            max_instances: 2,
            max_memory_bytes: 1 << 20,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let wasi = wasi::FUNCTIONS
            .iter()
            .map(|(n, _)| (wasi::MODULE, *n, wasi::signature(n).unwrap()));
        let others = OFFERED.iter().map(|(m, n, p, r)| (*m, *n, (*p, *r)));
        let imports: String = wasi
            .chain(others)
            .map(|(m, n, (p, r))| {
                format!(
                    "(import \"{m}\" \"{n}\" (func (param{}) (result{})))\n",
                    wat_type(p),
                    wat_type(r)
                )
            })
            .collect();
        let module = wasmtime::Module::new(engine.engine(), format!("(module {imports})")).unwrap();
        for import in module.imports() {
            check(&import).unwrap_or_else(|p| panic!("{p}"));
        }
        engine
            .linker()
            .instantiate_pre(&module)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}
