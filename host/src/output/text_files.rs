//! `save_as_text_files(prefix, suffix)`: Spark's layout. Each batch becomes
//! a directory `prefix-<batch time ms>[.suffix]` holding one `part-NNNNN`
//! file per partition (one rendered record per line) and an empty
//! `_SUCCESS`. Writing the same batch again produces the same bytes.
//!
//! **Durability.** A batch is written into the hidden directory
//! `.<batch dir>.weir-tmp-<pid>` next to its final place: every file is
//! synced, then that directory, then it is renamed into place and the
//! parent directory is synced. Readers never see a partial batch, and a
//! batch that was written survives a power loss. A batch written again
//! (replayed after a crash) whose directory already holds exactly the same
//! files is kept as it is; one that differs is swapped out through
//! `.<batch dir>.weir-old-<pid>`.
//!
//! **Leftovers.** A crash in the middle of a write leaves the temporary
//! directory behind. When a job starts ([`TextFiles::open`]), before its
//! first write, it removes the leftovers of *this output only*: entries of
//! the prefix's directory (not below it) named `.<stem>-<digits>[.suffix]`
//! followed by `.weir-tmp-<pid>` or `.weir-old-<pid>` (or `.tmp-<pid>`,
//! `.old-<pid>`, which weir used before), where `<stem>` is the prefix's
//! file name and `[.suffix]` exactly this output's suffix. Another
//! output's temporaries (another prefix or suffix) and any file a user put
//! there are never touched. Two live writers of the same prefix and suffix
//! are not supported (they would overwrite each other's batches anyway).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{render_partition, Output};
use crate::durable::{
    create_dir_all_synced, is_pid, parent_of, remove_leftovers, sync_dir, write_synced,
};
use crate::error::EngineError;
use crate::ops::Partitions;
use crate::ops::ValueKind;

/// The text-files output.
pub struct TextFiles {
    /// Output name, for errors.
    pub name: Arc<str>,
    /// Path prefix (directory part is created if missing).
    pub prefix: PathBuf,
    /// Optional suffix.
    pub suffix: Option<String>,
    /// How values render.
    pub kind: ValueKind,
}

/// The markers of a batch directory's temporary names: being written, being
/// swapped out, and the same two as weir named them before.
const MARKERS: [&str; 4] = [".weir-tmp-", ".weir-old-", ".tmp-", ".old-"];

impl TextFiles {
    /// The output, after removing what an interrupted run of it left in
    /// the prefix's directory (see the module documentation). A leftover
    /// that cannot be removed is reported and does not stop the job: it
    /// is never read.
    pub fn open(name: Arc<str>, prefix: PathBuf, suffix: Option<String>, kind: ValueKind) -> Self {
        let out = TextFiles {
            name,
            prefix,
            suffix,
            kind,
        };
        if let Err(e) = out.remove_leftovers() {
            tracing::warn!(
                output = %out.name,
                dir = %parent_of(&out.prefix).display(),
                error = %e,
                "cannot remove the temporary directories an interrupted run left"
            );
        }
        out
    }

    /// Removes this output's temporaries from the prefix's directory;
    /// returns how many went.
    pub fn remove_leftovers(&self) -> io::Result<usize> {
        let removed = remove_leftovers(parent_of(&self.prefix), |n| self.is_leftover(n))?;
        Ok(removed.paths.len())
    }

    /// The prefix's file name: what every batch directory's name begins with.
    fn stem(&self) -> String {
        self.prefix
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether `name` is a temporary name of one of this output's batch
    /// directories: `.<stem>-<digits>[.suffix]<marker><pid>`.
    pub fn is_leftover(&self, name: &str) -> bool {
        let stem = self.stem();
        let Some(rest) = name
            .strip_prefix('.')
            .and_then(|r| r.strip_prefix(stem.as_str()))
            .and_then(|r| r.strip_prefix('-'))
        else {
            return false;
        };
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        let rest = &rest[digits..];
        let rest = match &self.suffix {
            Some(s) => match rest
                .strip_prefix('.')
                .and_then(|r| r.strip_prefix(s.as_str()))
            {
                Some(r) => r,
                None => return false,
            },
            None => rest,
        };
        MARKERS
            .iter()
            .any(|m| rest.strip_prefix(m).is_some_and(is_pid))
    }

    /// The directory of a batch.
    pub fn batch_dir(&self, batch_time_ms: i64) -> PathBuf {
        let mut name = self.stem();
        name.push_str(&format!("-{batch_time_ms}"));
        if let Some(s) = &self.suffix {
            name.push('.');
            name.push_str(s);
        }
        self.prefix.with_file_name(name)
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> EngineError + '_ {
        let path = path.to_owned();
        move |source| EngineError::Output {
            output: self.name.clone(),
            path,
            source,
        }
    }

    /// The temporary name `.<batch dir>.<marker><pid>` next to `dir`.
    fn temp_of(dir: &Path, marker: &str) -> PathBuf {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        parent_of(dir).join(format!(".{name}{marker}{}", std::process::id()))
    }

    /// Writes the rendered partitions as the batch directory `dir`.
    fn write_dir(&self, dir: &Path, parts: &[String]) -> Result<(), EngineError> {
        let parent = parent_of(dir);
        create_dir_all_synced(parent).map_err(self.io(parent))?;
        let tmp = Self::temp_of(dir, MARKERS[0]);
        if fs::symlink_metadata(&tmp).is_ok() {
            fs::remove_dir_all(&tmp).map_err(self.io(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(self.io(&tmp))?;
        for (i, part) in parts.iter().enumerate() {
            let path = tmp.join(format!("part-{i:05}"));
            write_synced(&path, part.as_bytes()).map_err(self.io(&path))?;
        }
        let success = tmp.join("_SUCCESS");
        write_synced(&success, b"").map_err(self.io(&success))?;
        sync_dir(&tmp).map_err(self.io(&tmp))?;
        if dir.exists() {
            // Same batch written again with other bytes: swap the old
            // copy out.
            let old = Self::temp_of(dir, MARKERS[1]);
            fs::rename(dir, &old).map_err(self.io(dir))?;
            fs::rename(&tmp, dir).map_err(self.io(dir))?;
            fs::remove_dir_all(&old).map_err(self.io(&old))?;
        } else {
            fs::rename(&tmp, dir).map_err(self.io(dir))?;
        }
        sync_dir(parent).map_err(self.io(parent))
    }
}

/// Whether `dir` holds exactly `parts` as `part-NNNNN` files and an empty
/// `_SUCCESS`, and nothing else.
fn holds_exactly(dir: &Path, parts: &[String]) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut count = 0;
    for entry in entries {
        let Ok(entry) = entry else { return false };
        count += 1;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return false;
        };
        let expected: &[u8] = match name {
            "_SUCCESS" => b"",
            _ => match name
                .strip_prefix("part-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|i| format!("part-{i:05}") == name)
                .and_then(|i| parts.get(i))
            {
                Some(p) => p.as_bytes(),
                None => return false,
            },
        };
        match fs::read(entry.path()) {
            Ok(bytes) if bytes == expected => {}
            _ => return false,
        }
    }
    count == parts.len() + 1
}

impl Output for TextFiles {
    fn write(&mut self, batch_time_ms: i64, parts: &Partitions) -> Result<(), EngineError> {
        let rendered: Vec<String> = parts
            .iter()
            .map(|p| render_partition(self.kind, p))
            .collect();
        self.write_dir(&self.batch_dir(batch_time_ms), &rendered)
    }

    /// A replayed batch whose directory already holds the same bytes (it
    /// was written before the crash) is kept, and synced in case the crash
    /// came before that; otherwise it is written again.
    fn write_replayed(
        &mut self,
        batch_time_ms: i64,
        parts: &Partitions,
    ) -> Result<(), EngineError> {
        let rendered: Vec<String> = parts
            .iter()
            .map(|p| render_partition(self.kind, p))
            .collect();
        let dir = self.batch_dir(batch_time_ms);
        if holds_exactly(&dir, &rendered) {
            let parent = parent_of(&dir);
            sync_dir(&dir).map_err(self.io(&dir))?;
            return sync_dir(parent).map_err(self.io(parent));
        }
        self.write_dir(&dir, &rendered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_abi::RecordBatch;

    fn output(prefix: &Path, suffix: Option<&str>) -> TextFiles {
        TextFiles::open(
            "out".into(),
            prefix.to_owned(),
            suffix.map(Into::into),
            ValueKind::Opaque,
        )
    }

    fn parts(lines: &[&str]) -> Partitions {
        lines
            .iter()
            .map(|l| {
                [(&b""[..], l.as_bytes())]
                    .into_iter()
                    .collect::<RecordBatch>()
            })
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn leftovers_are_recognised_by_prefix_and_suffix() {
        let o = output(Path::new("out/win"), None);
        for ours in [
            ".win-1000.weir-tmp-42",
            ".win-1000.weir-old-7",
            ".win--5.weir-tmp-1",
            ".win-1000.tmp-42",
            ".win-1000.old-42",
        ] {
            assert!(o.is_leftover(ours), "{ours}");
        }
        for theirs in [
            "win-1000",
            ".win-1000",
            ".win-1000.weir-tmp-",
            ".win-1000.weir-tmp-4x",
            ".win-1000.txt.weir-tmp-4",
            ".win-5-1000.weir-tmp-4",
            ".window-1000.weir-tmp-4",
            ".totals-1000.weir-tmp-4",
            ".win-.weir-tmp-4",
            ".win-1000.weir-tmp",
            "my-notes.tmp-1",
        ] {
            assert!(!o.is_leftover(theirs), "{theirs}");
        }
        let with_suffix = output(Path::new("out/win"), Some("txt"));
        assert!(with_suffix.is_leftover(".win-1000.txt.weir-tmp-4"));
        assert!(!with_suffix.is_leftover(".win-1000.weir-tmp-4"));
        assert!(!with_suffix.is_leftover(".win-1000.txt2.weir-tmp-4"));
    }

    #[test]
    fn opening_removes_only_this_outputs_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            ".win-1000.weir-tmp-41",
            ".win-2000.weir-old-41",
            ".win-3000.tmp-9",
            ".totals-1000.weir-tmp-41",
            "win-0",
        ] {
            fs::create_dir(root.join(d)).unwrap();
            fs::write(root.join(d).join("part-00000"), "x\n").unwrap();
        }
        fs::write(root.join(".win-notes"), "user's").unwrap();
        let mut o = output(&root.join("win"), None);
        assert_eq!(
            names(root),
            [".totals-1000.weir-tmp-41", ".win-notes", "win-0"]
        );
        assert_eq!(o.remove_leftovers().unwrap(), 0);

        // Writing, and writing the same batch again, leaves no temporary.
        o.write(5000, &parts(&["a", "b"])).unwrap();
        o.write_replayed(5000, &parts(&["a", "b"])).unwrap();
        o.write_replayed(5000, &parts(&["a", "c"])).unwrap();
        assert_eq!(
            names(root),
            [
                ".totals-1000.weir-tmp-41",
                ".win-notes",
                "win-0",
                "win-5000"
            ]
        );
        assert_eq!(
            names(&root.join("win-5000")),
            ["_SUCCESS", "part-00000", "part-00001"]
        );
        assert_eq!(fs::read(root.join("win-5000/part-00001")).unwrap(), b"c\n");
    }

    #[test]
    fn a_replayed_batch_with_other_files_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = output(&dir.path().join("win"), Some("txt"));
        let batch = dir.path().join("win-7.txt");
        o.write(7, &parts(&["a"])).unwrap();
        assert!(holds_exactly(&batch, &["a\n".to_string()]));
        fs::write(batch.join("part-00001"), "stray").unwrap();
        assert!(!holds_exactly(&batch, &["a\n".to_string()]));
        o.write_replayed(7, &parts(&["a"])).unwrap();
        assert_eq!(names(&batch), ["_SUCCESS", "part-00000"]);
        assert!(!holds_exactly(&batch, &["b\n".to_string()]));
        assert!(!holds_exactly(&dir.path().join("missing"), &[]));
    }
}
