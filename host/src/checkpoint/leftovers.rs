//! Preparing a checkpoint directory for a job that starts on it: creating
//! it durably, and removing the temporary files an interrupted run left.
//!
//! Checkpoint files, the metadata and stored modules are written through
//! [`crate::durable::write_atomic`]: `.<name>.weir-tmp`, synced, renamed to
//! `<name>`. A crash before the rename leaves the temporary behind (one
//! per checkpoint, so a job killed often would pile them up). The logs
//! (`wal/*.log`) are appended in place and have no temporaries; their torn
//! tails are cut off when they are read.
//!
//! **What is removed.** A checkpoint directory belongs to one job (its
//! metadata names the job and the pipeline, and another pipeline is
//! refused before anything is removed). In it, and only in `metadata.json`'s
//! directory, `modules/`, `checkpoints/` and `wal/` (not below them), a
//! file is removed when its name is `.<name>.weir-tmp` (or `.<name>.tmp`,
//! as weir named them before) and `<name>` is one weir writes there:
//! `metadata.json`, `<sha256>.wasm`, `checkpoint-<seq>.bin`,
//! `batches-<seq>.log`, `blocks-<id>.log`. Anything else, a user's file
//! included, stays.

use std::path::Path;

use super::{io, CheckpointError};
use crate::durable::{create_dir_all_synced, remove_leftovers, sync_dir, TEMP_MARKER};

/// The subdirectories of a checkpoint directory.
pub(crate) const SUBDIRS: [&str; 3] = ["modules", "wal", "checkpoints"];

/// Discards an existing checkpoint (`--fresh`): the metadata and every
/// subdirectory.
pub(crate) fn discard(dir: &Path) -> Result<(), CheckpointError> {
    let mut any = false;
    for sub in std::iter::once("metadata.json").chain(SUBDIRS) {
        let p = dir.join(sub);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(io(&p))?;
            any = true;
        } else if p.exists() {
            std::fs::remove_file(&p).map_err(io(&p))?;
            any = true;
        }
    }
    if any {
        sync_dir(dir).map_err(io(dir))?;
    }
    Ok(())
}

/// Creates the directory and its subdirectories (syncing what was new).
pub(crate) fn create(dir: &Path) -> Result<(), CheckpointError> {
    for sub in SUBDIRS {
        let p = dir.join(sub);
        create_dir_all_synced(&p).map_err(io(&p))?;
    }
    Ok(())
}

/// Whether `name` (in checkpoint subdirectory `sub`, `""` for the top) is
/// the temporary name of a file weir writes there.
pub(crate) fn is_leftover(sub: &str, name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| {
        n.strip_suffix(TEMP_MARKER)
            .or_else(|| n.strip_suffix(".tmp"))
    }) else {
        return false;
    };
    let numbered = |prefix: &str, ext: &str| {
        inner
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(ext))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match sub {
        "" => inner == "metadata.json",
        "modules" => inner
            .strip_suffix(".wasm")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        "checkpoints" => numbered("checkpoint-", ".bin"),
        "wal" => numbered("batches-", ".log") || numbered("blocks-", ".log"),
        _ => false,
    }
}

/// Removes the temporaries an interrupted run left (see the module
/// documentation); returns how many went. Each directory that had some is
/// logged with the count.
pub(crate) fn remove(dir: &Path) -> Result<usize, CheckpointError> {
    let mut count = 0;
    for sub in std::iter::once("").chain(SUBDIRS) {
        let at = if sub.is_empty() {
            dir.to_owned()
        } else {
            dir.join(sub)
        };
        let removed = remove_leftovers(&at, |n| is_leftover(sub, n)).map_err(io(&at))?;
        count += removed.paths.len();
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn only_temporaries_of_weirs_own_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path();
        create(ck).unwrap();
        let hash = "ab".repeat(32);
        let ours = [
            ".metadata.json.weir-tmp".to_string(),
            ".metadata.json.tmp".into(),
            format!("modules/.{hash}.wasm.weir-tmp"),
            "checkpoints/.checkpoint-00000000000000000003.bin.weir-tmp".into(),
            "checkpoints/.checkpoint-00000000000000000006.bin.tmp".into(),
            "wal/.batches-00000000000000000001.log.weir-tmp".into(),
        ];
        let theirs = [
            ".pipeline.toml.weir-tmp".to_string(),
            ".notes.tmp".into(),
            "metadata.json".into(),
            "modules/.abc.wasm.weir-tmp".into(),
            "checkpoints/.checkpoint-x.bin.weir-tmp".into(),
            "checkpoints/checkpoint-00000000000000000003.bin".into(),
            "wal/.other.log.weir-tmp".into(),
        ];
        for p in ours.iter().chain(&theirs) {
            fs::write(ck.join(p), "x").unwrap();
        }
        fs::create_dir(ck.join("nested")).unwrap();
        fs::write(ck.join("nested/.metadata.json.weir-tmp"), "x").unwrap();
        assert_eq!(remove(ck).unwrap(), ours.len());
        for p in &ours {
            assert!(!ck.join(p).exists(), "{p} removed");
        }
        for p in &theirs {
            assert!(ck.join(p).exists(), "{p} kept");
        }
        assert!(ck.join("nested/.metadata.json.weir-tmp").exists());
        assert_eq!(remove(ck).unwrap(), 0);
        discard(ck).unwrap();
        assert!(!ck.join("wal").exists() && !ck.join("metadata.json").exists());
        assert!(ck.join(".notes.tmp").exists());
    }
}
