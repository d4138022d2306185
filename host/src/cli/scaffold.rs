//! `weir plugin new` (a buildable word-count project per language, from
//! templates embedded in the binary) and `weir plugin build` (detect the
//! language, run its toolchain, load the module it produced).

use std::path::{Path, PathBuf};

use crate::wasm::{Plugin, Runtime, RuntimeConfig};

/// A language `weir plugin new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, through `weir-sdk`.
    Rust,
    /// C, freestanding (clang and lld, no libc).
    C,
    /// Go 1.24+, `//go:wasmexport`, a wasip1 reactor.
    Go,
    /// Zig, wasm32-freestanding.
    Zig,
    /// AssemblyScript (exports spelled `KIND__NAME`).
    #[value(name = "assemblyscript", alias = "as")]
    AssemblyScript,
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lang::Rust => "Rust",
            Lang::C => "C",
            Lang::Go => "Go",
            Lang::Zig => "Zig",
            Lang::AssemblyScript => "AssemblyScript",
        })
    }
}

/// Why `new` or `build` failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The project name cannot be used.
    #[error("`{name}` cannot name a plugin: use lowercase letters, digits, `-` and `_`, starting with a letter")]
    BadName { name: String },
    /// The target directory has files in it.
    #[error("{} already exists and is not empty; choose another name or --dir", dir.display())]
    DirNotEmpty { dir: PathBuf },
    /// `--sdk` does not point at weir-sdk.
    #[error("{} is not the weir-sdk crate (no Cargo.toml naming `weir-sdk` there); give --sdk the `sdk` directory of a weir source tree", path.display())]
    BadSdk { path: PathBuf },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `build` found no project it knows.
    #[error("{} holds no plugin project weir knows: expected Cargo.toml (Rust), go.mod (Go), build.zig or *.zig (Zig), package.json with assemblyscript, or *.c / Makefile (C)", dir.display())]
    UnknownProject { dir: PathBuf },
    /// The language's toolchain is not installed.
    #[error(
        "cannot build the {lang} plugin: `{tool}` is not installed; install it with: {install}"
    )]
    ToolMissing {
        lang: Lang,
        tool: String,
        install: &'static str,
    },
    /// The toolchain failed; its output is included.
    #[error("building the {lang} plugin failed: `{command}` exited with {status}{hint}\n{output}")]
    BuildFailed {
        lang: Lang,
        command: String,
        status: std::process::ExitStatus,
        hint: String,
        output: String,
    },
    /// The toolchain succeeded but no module was found.
    #[error("the {lang} build succeeded but produced no .wasm file under {}", dir.display())]
    NoModule { lang: Lang, dir: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The weir-sdk of the source tree this binary was built from, if it is
/// still there.
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

fn check_sdk(path: &Path) -> Result<PathBuf, ScaffoldError> {
    let bad = || ScaffoldError::BadSdk {
        path: path.to_owned(),
    };
    let manifest = std::fs::read_to_string(path.join("Cargo.toml")).map_err(|_| bad())?;
    if !manifest.contains("name = \"weir-sdk\"") {
        return Err(bad());
    }
    path.canonicalize().map_err(|_| bad())
}

/// Per-language facts the templates are filled with.
struct Facts {
    /// The toolchain command that builds the module.
    build_command: String,
    /// What a person types to build it (differs where a package manager
    /// wraps the toolchain).
    by_hand: String,
    wasm_path: String,
    test_section: String,
}

fn facts(lang: Lang, name: &str) -> Facts {
    let test = |cmd: &str, what: &str| format!("## Test\n\n    {cmd}\n\n{what}\n");
    match lang {
        Lang::Rust => Facts {
            build_command: "cargo build --release --target wasm32-unknown-unknown".into(),
            by_hand: "cargo build --release --target wasm32-unknown-unknown".into(),
            wasm_path: format!("target/wasm32-unknown-unknown/release/{}.wasm", name.replace('-', "_")),
            test_section: test("cargo test", "runs the functions natively (the SDK's attributes leave them plain Rust functions)."),
        },
        Lang::C => Facts {
            build_command: format!("clang --target=wasm32 -nostdlib -O2 -fuse-ld=lld -Wl,--no-entry -o {name}.wasm {name}.c"),
            by_hand: format!("clang --target=wasm32 -nostdlib -O2 -fuse-ld=lld -Wl,--no-entry -o {name}.wasm {name}.c"),
            wasm_path: format!("{name}.wasm"),
            test_section: test("make test", &format!("compiles `test_{name}.c` natively against the plugin's logic and runs it.")),
        },
        Lang::Go => Facts {
            build_command: format!("GOOS=wasip1 GOARCH=wasm go build -buildvcs=false -buildmode=c-shared -o {name}.wasm ."),
            by_hand: format!("GOOS=wasip1 GOARCH=wasm go build -buildvcs=false -buildmode=c-shared -o {name}.wasm ."),
            wasm_path: format!("{name}.wasm"),
            test_section: test("go test", "runs the logic natively (`exports.go`, the wasm glue, is built only for wasip1)."),
        },
        Lang::Zig => Facts {
            build_command: format!("python3 -m ziglang build-exe {name}.zig -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall"),
            by_hand: format!("python3 -m ziglang build-exe {name}.zig -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall"),
            wasm_path: format!("{name}.wasm"),
            test_section: test(&format!("python3 -m ziglang test {name}.zig"), "runs the `test` blocks natively (or `zig test` with a zig on PATH)."),
        },
        Lang::AssemblyScript => Facts {
            build_command: format!("asc assembly/index.ts -o build/{name}.wasm -O3z --runtime stub --use abort="),
            by_hand: "npm install && npm run build".into(),
            wasm_path: format!("build/{name}.wasm"),
            test_section: "## Test\n\nAssemblyScript has no native test runner here: `weir plugin test` runs the conformance suite on the module.\n".into(),
        },
    }
}

/// (file in the project, template text). `{{name}}` in a file name is the
/// project's name.
fn templates(lang: Lang) -> Vec<(&'static str, &'static str)> {
    let common = [
        ("README.md", include_str!("../../templates/README.md")),
        (
            "pipeline.toml",
            include_str!("../../templates/pipeline.toml"),
        ),
    ];
    let own: Vec<(&str, &str)> = match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("../../templates/rust/src/lib.rs"),
            ),
            (".gitignore", include_str!("../../templates/rust/gitignore")),
        ],
        Lang::C => vec![
            ("{{name}}.c", include_str!("../../templates/c/plugin.c")),
            ("test_{{name}}.c", include_str!("../../templates/c/test.c")),
            ("Makefile", include_str!("../../templates/c/Makefile")),
            (".gitignore", include_str!("../../templates/c/gitignore")),
        ],
        Lang::Go => vec![
            ("go.mod", include_str!("../../templates/go/go.mod")),
            (
                "wordcount.go",
                include_str!("../../templates/go/wordcount.go"),
            ),
            ("exports.go", include_str!("../../templates/go/exports.go")),
            (
                "wordcount_test.go",
                include_str!("../../templates/go/wordcount_test.go"),
            ),
            (".gitignore", include_str!("../../templates/go/gitignore")),
        ],
        Lang::Zig => vec![
            (
                "{{name}}.zig",
                include_str!("../../templates/zig/plugin.zig"),
            ),
            (".gitignore", include_str!("../../templates/zig/gitignore")),
        ],
        Lang::AssemblyScript => vec![
            (
                "package.json",
                include_str!("../../templates/assemblyscript/package.json"),
            ),
            (
                "assembly/index.ts",
                include_str!("../../templates/assemblyscript/assembly/index.ts"),
            ),
            (
                ".gitignore",
                include_str!("../../templates/assemblyscript/gitignore"),
            ),
        ],
    };
    own.into_iter().chain(common).collect()
}

fn sdk_dependency(sdk: Option<&Path>) -> String {
    match sdk {
        Some(path) => format!(
            "# weir-sdk is not on crates.io yet: this points at the SDK of a weir source\n\
             # tree. Once it is published, use a version instead: weir-sdk = \"0.1\"\n\
             weir-sdk = {{ path = {} }}",
            toml::Value::String(path.display().to_string())
        ),
        None => "# weir-sdk is not on crates.io yet: point this at the `sdk` directory of a weir\n\
                 # source tree, e.g. weir-sdk = { path = \"../weir/sdk\" } (`weir plugin new --sdk`\n\
                 # does), or keep the version once it is published.\n\
                 weir-sdk = \"0.1\""
            .into(),
    }
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `weir plugin new NAME --lang L [--dir D] [--sdk PATH]`: writes the
/// project; returns its directory.
pub fn new(
    name: &str,
    lang: Lang,
    dir: Option<&Path>,
    sdk: Option<&Path>,
) -> Result<PathBuf, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName { name: name.into() });
    }
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_owned);
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ScaffoldError::DirNotEmpty { dir });
    }
    let sdk = match sdk {
        Some(p) => Some(check_sdk(p)?),
        None => default_sdk(),
    };
    let facts = facts(lang, name);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{lang}}", &lang.to_string())
            .replace("{{build_command}}", &facts.build_command)
            .replace("{{by_hand}}", &facts.by_hand)
            .replace("{{wasm_path}}", &facts.wasm_path)
            .replace("{{test_section}}", &facts.test_section)
            .replace("{{sdk_dependency}}", &sdk_dependency(sdk.as_deref()))
    };
    for (file, text) in templates(lang) {
        let path = dir.join(file.replace("{{name}}", name));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, fill(text)).map_err(io(&path))?;
    }
    Ok(dir)
}

/// The language of the project in `dir`.
pub fn detect(dir: &Path) -> Result<Lang, ScaffoldError> {
    let has = |f: &str| dir.join(f).is_file();
    let files = source_files(dir, &["zig", "c"])?;
    let package_is_as = std::fs::read_to_string(dir.join("package.json"))
        .is_ok_and(|p| p.contains("assemblyscript"));
    if has("Cargo.toml") {
        Ok(Lang::Rust)
    } else if has("go.mod") {
        Ok(Lang::Go)
    } else if has("build.zig")
        || files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "zig"))
    {
        Ok(Lang::Zig)
    } else if package_is_as {
        Ok(Lang::AssemblyScript)
    } else if has("Makefile")
        || files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "c"))
    {
        Ok(Lang::C)
    } else {
        Err(ScaffoldError::UnknownProject {
            dir: dir.to_owned(),
        })
    }
}

/// Files directly in `dir` with one of these extensions, sorted.
pub(crate) fn source_files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, ScaffoldError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| exts.iter().any(|x| e == *x)))
        .collect();
    out.sort();
    Ok(out)
}

/// `weir plugin build [DIR]`: builds the project, loads the module, and
/// prints its path, size and functions.
pub fn build(dir: &Path) -> Result<(), super::CliError> {
    let lang = detect(dir)?;
    let wasm = super::toolchain::build(lang, dir)?;
    let runtime = Runtime::new(&RuntimeConfig::default()).map_err(super::CliError::Runtime)?;
    let plugin: Plugin = runtime.load_file(&wasm)?;
    println!("built:       {}", wasm.display());
    println!("language:    {lang}");
    println!("size:        {} bytes", plugin.size());
    println!("functions:");
    for f in plugin.functions() {
        println!("  {:<7} {}", f.kind.to_string(), f.name);
    }
    Ok(())
}

/// The project's name for outputs: its directory's name.
pub(crate) fn project_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "plugin".into())
}
