//! Durable writes and the temporary names they go through.
//!
//! weir writes a file or directory that must appear whole (a checkpoint,
//! the metadata, a stored module, a `text_files` batch directory) under a
//! temporary name in the same directory, syncs it, renames it into place
//! and syncs the directory, so a crash leaves either the old or the new
//! version, never a torn one. A crash between the first write and the
//! rename leaves the temporary behind; those are removed when a job starts
//! again on the same directories (see [`remove_leftovers`]).
//!
//! Every temporary name weir makes is hidden (it starts with `.`) and
//! carries [`TEMP_MARKER`]: `.<final name>.weir-tmp[-<pid>]` (and
//! `.<final name>.weir-old-<pid>` for a `text_files` batch directory being
//! replaced). Cleanup only removes names of that shape whose `<final
//! name>` is one the caller owns, so a user's file is never touched.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What marks a temporary name as weir's own.
pub const TEMP_MARKER: &str = ".weir-tmp";

/// The temporary name of `name` in the same directory: `.<name>.weir-tmp`.
pub fn temp_name(name: &str) -> String {
    format!(".{name}{TEMP_MARKER}")
}

/// Syncs a directory, so entries created, renamed or removed in it survive
/// a power loss. File systems that cannot sync a directory (they answer
/// `EINVAL`) are taken as having nothing to sync.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// The directory `path` lies in (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `dir` and any missing parents, syncing the directory each new
/// one was created in, so the chain exists after a power loss.
pub fn create_dir_all_synced(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.exists() {
        missing.push(at.to_owned());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        sync_dir(parent_of(created))?;
    }
    Ok(())
}

/// Creates `path` with `bytes` and syncs it (not its directory).
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes `bytes` to `path` atomically: `.<name>.weir-tmp` in the same
/// directory, synced, renamed over `path`, then the directory synced. One
/// writer per directory: the temporary name is fixed, so a crash leaves at
/// most one per file, which [`remove_leftovers`] removes.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(temp_name(name));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Temporaries removed from one directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// What was removed, files and directories.
    pub paths: Vec<PathBuf>,
}

/// Removes every entry of `dir` (not below it) whose name `ours` accepts,
/// files and directories alike, then syncs `dir` if anything went. A
/// missing `dir` has nothing to remove. Logs what was removed, with the
/// count and the directory.
pub fn remove_leftovers(dir: &Path, ours: impl Fn(&str) -> bool) -> io::Result<Removed> {
    let mut removed = Removed::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !ours(&name) {
            continue;
        }
        let path = entry.path();
        // Not followed: a symlink is removed as the link it is.
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        removed.paths.push(path);
    }
    if !removed.paths.is_empty() {
        sync_dir(dir)?;
        let names: Vec<String> = removed
            .paths
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        tracing::info!(
            dir = %dir.display(),
            count = removed.paths.len(),
            removed = %names.join(", "),
            "removed temporary files left by an interrupted run"
        );
    }
    Ok(removed)
}

/// Whether `rest` is a process id: one or more ASCII digits.
pub fn is_pid(rest: &str) -> bool {
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_and_leftovers_of_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names = |d: &Path| {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(dir.path()), ["a.bin"]);

        // A crash after the temporary was written: it stays until cleanup,
        // which removes only what the caller owns.
        fs::write(dir.path().join(temp_name("a.bin")), b"torn").unwrap();
        fs::write(dir.path().join(temp_name("user.txt")), b"user's").unwrap();
        fs::create_dir(dir.path().join(".a.dir.weir-tmp-12")).unwrap();
        fs::write(dir.path().join(".a.dir.weir-tmp-12/part-00000"), b"x").unwrap();
        let removed = remove_leftovers(dir.path(), |n| {
            n == temp_name("a.bin") || n.starts_with(".a.dir.weir-tmp-")
        })
        .unwrap();
        assert_eq!(removed.paths.len(), 2);
        assert_eq!(names(dir.path()), [".user.txt.weir-tmp", "a.bin"]);
        assert_eq!(
            remove_leftovers(&dir.path().join("missing"), |_| true).unwrap(),
            Removed::default()
        );
    }

    #[test]
    fn directories_are_created_whole() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all_synced(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all_synced(&deep).unwrap();
    }
}
