//! Path confinement: a submitted pipeline may only name files inside its
//! job's directory (which lies inside its tenant's), and may only connect
//! to loopback sockets. Checked on the raw TOML before anything is written,
//! parsed or started, so a refused pipeline touches nothing (the pipeline
//! parser itself reads `initial_state` files).

use std::net::IpAddr;
use std::path::{Component, Path};

/// The file the pipeline is written to in the job directory.
pub const PIPELINE_FILE: &str = "pipeline.toml";

/// Every path key of a pipeline file: `(table or array of tables, key)`.
/// `plugins` holds paths in all its values.
const PATH_KEYS: &[(&str, &str)] = &[
    ("job", "stats_file"),
    ("job", "checkpoint"),
    ("source", "dir"),
    ("stream", "initial_state"),
    ("output", "prefix"),
];

/// Checks every path and socket host of a pipeline file. Returns every
/// problem (`key = "value": why`), or nothing when the text is not TOML at
/// all (the pipeline parser then reports that, before touching any file).
pub fn check_pipeline(src: &str) -> Vec<String> {
    let Ok(doc) = src.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut check = |what: String, v: &toml::Value| {
        if let Some(s) = v.as_str() {
            if let Err(why) = relative_inside(s) {
                problems.push(format!("{what} = {s:?}: {why}"));
            }
        }
    };
    if let Some(plugins) = doc.get("plugins").and_then(toml::Value::as_table) {
        for (alias, v) in plugins {
            check(format!("plugins.{alias}"), v);
        }
    }
    for (table, key) in PATH_KEYS {
        for (i, t) in tables(&doc, table).into_iter().enumerate() {
            if let Some(v) = t.get(*key) {
                let at = if *table == "job" {
                    format!("[job] {key}")
                } else {
                    format!("[[{table}]] #{} {key}", i + 1)
                };
                check(at, v);
            }
        }
    }
    for (i, o) in tables(&doc, "output").into_iter().enumerate() {
        // The suffix is appended to a directory name.
        if let Some(suffix) = o.get("suffix").and_then(toml::Value::as_str) {
            if suffix.contains(['/', '\\']) || suffix.contains("..") {
                problems.push(format!(
                    "[[output]] #{} suffix = {suffix:?}: a suffix may not contain `/`, `\\` or `..`",
                    i + 1
                ));
            }
        }
    }
    for (i, s) in tables(&doc, "source").into_iter().enumerate() {
        if let Some(host) = s.get("host").and_then(toml::Value::as_str) {
            if !is_loopback(host) {
                problems.push(format!(
                    "[[source]] #{} host = {host:?}: socket sources may only connect to this machine (localhost, 127.0.0.1, ::1)",
                    i + 1
                ));
            }
        }
    }
    problems
}

/// `[job]` as one table, `[[source]]` etc. as their tables.
fn tables<'a>(doc: &'a toml::Table, name: &str) -> Vec<&'a toml::Table> {
    match doc.get(name) {
        Some(toml::Value::Table(t)) => vec![t],
        Some(toml::Value::Array(a)) => a.iter().filter_map(toml::Value::as_table).collect(),
        _ => Vec::new(),
    }
}

/// A path that stays inside the directory it is resolved in: relative,
/// without `..`.
pub fn relative_inside(s: &str) -> Result<(), &'static str> {
    if s.contains('\0') {
        return Err("paths may not contain NUL");
    }
    let p = Path::new(s);
    if p.is_absolute() || s.starts_with('~') {
        return Err("absolute paths are refused: give a path relative to the job's directory");
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err("`..` is refused: paths must stay inside the job's directory")
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "absolute paths are refused: give a path relative to the job's directory",
                )
            }
        }
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A file name a submission may write into the job directory: 1 to 100 of
/// `A-Z a-z 0-9 . _ -`, not starting with `.`, not the pipeline file.
pub fn file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(format!(
            "file name {name:?}: use 1 to 100 of A-Z, a-z, 0-9, `.`, `_` and `-`, not starting with `.` (files go straight into the job's directory)"
        ));
    }
    if name == PIPELINE_FILE {
        return Err(format!("file name {name:?} is reserved for the pipeline"));
    }
    Ok(())
}

/// A module's file name: a [`file_name`] ending in `.wasm` or `.wat`.
pub fn module_name(name: &str) -> Result<(), String> {
    file_name(name)?;
    if !(name.ends_with(".wasm") || name.ends_with(".wat")) {
        return Err(format!(
            "module {name:?}: module file names end in `.wasm` or `.wat`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_inside_pass() {
        for ok in [
            "wc.wasm",
            "out/counts",
            "./ck",
            "a/b/./c",
            "x..y",
            ".hidden",
        ] {
            assert_eq!(relative_inside(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn traversal_and_absolute_paths_fail() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/..",
            "..",
            "~/x",
            "//x",
            "a\0b",
        ] {
            assert!(relative_inside(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_path_key_is_checked() {
        let src = r#"
            [job]
            checkpoint = "../../other/ck"
            stats_file = "/tmp/stats"
            [plugins]
            wc = "../wc.wasm"
            ok = "fine.wasm"
            [[source]]
            name = "a"
            type = "files"
            dir = "/var/log"
            [[source]]
            name = "b"
            type = "socket"
            host = "example.org"
            port = 1
            [[source]]
            name = "c"
            type = "socket"
            host = "127.0.0.1"
            port = 1
            [[stream]]
            name = "s"
            op = "update_state_by_key"
            input = "a"
            initial_state = "../../../etc/shadow"
            [[output]]
            stream = "s"
            type = "text_files"
            prefix = "../../bob/jobs/x/out"
            [[output]]
            stream = "s"
            type = "text_files"
            prefix = "out/x"
            suffix = "/../../../../escape"
        "#;
        let p = check_pipeline(src);
        assert_eq!(p.len(), 8, "{p:#?}");
        for needle in [
            "plugins.wc",
            "[job] checkpoint",
            "[job] stats_file",
            "[[source]] #1 dir",
            "[[source]] #2 host",
            "[[stream]] #1 initial_state",
            "[[output]] #1 prefix",
            "[[output]] #2 suffix",
        ] {
            assert!(p.iter().any(|x| x.starts_with(needle)), "{needle}: {p:#?}");
        }
    }

    #[test]
    fn names() {
        assert!(module_name("wordcount.wat").is_ok());
        assert!(module_name("a.wasm").is_ok());
        for bad in [
            "../x.wasm",
            "x/y.wasm",
            ".x.wasm",
            "x.txt",
            "pipeline.toml",
            "",
        ] {
            assert!(module_name(bad).is_err(), "{bad}");
        }
        assert!(file_name("state.tsv").is_ok());
        assert!(file_name("pipeline.toml").is_err());
    }
}
