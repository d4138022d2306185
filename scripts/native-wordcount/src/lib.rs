//! Shared by the two helpers of `scripts/bench-vs-spark.sh`.

use std::path::{Path, PathBuf};

/// The corpus files of a directory (`part-*.txt`), in name order.
pub fn corpus_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-") && n.ends_with(".txt"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Parses `--name value` pairs into a lookup; anything else is an error.
pub fn flags(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a:?}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.push((name.to_owned(), value.clone()));
    }
    Ok(out)
}

/// The value of flag `name` parsed as `T`, else `default`.
pub fn flag<T: std::str::FromStr>(
    flags: &[(String, String)],
    name: &str,
    default: T,
) -> Result<T, String> {
    match flags.iter().rev().find(|(n, _)| n == name) {
        None => Ok(default),
        Some((_, v)) => v.parse().map_err(|_| format!("--{name}: bad value {v:?}")),
    }
}
