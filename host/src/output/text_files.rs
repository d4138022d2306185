//! `save_as_text_files(prefix, suffix)`: Spark's layout. Each batch becomes
//! a directory `prefix-<batch time ms>[.suffix]` holding one `part-NNNNN`
//! file per partition (one rendered record per line) and an empty
//! `_SUCCESS`. The directory is written under a temporary name, synced and
//! renamed into place, so readers never see a partial batch; writing the
//! same batch again produces the same bytes and replaces the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{render_partition, Output};
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

impl TextFiles {
    /// The directory of a batch.
    pub fn batch_dir(&self, batch_time_ms: i64) -> PathBuf {
        let mut name = self
            .prefix
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.push_str(&format!("-{batch_time_ms}"));
        if let Some(s) = &self.suffix {
            name.push('.');
            name.push_str(s);
        }
        self.prefix.with_file_name(name)
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
        let path = path.to_owned();
        move |source| EngineError::Output {
            output: self.name.clone(),
            path,
            source,
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Output for TextFiles {
    fn write(&mut self, batch_time_ms: i64, parts: &Partitions) -> Result<(), EngineError> {
        let dir = self.batch_dir(batch_time_ms);
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(self.io(parent))?;
        let name = dir
            .file_name()
            .expect("batch dir has a name")
            .to_string_lossy()
            .into_owned();
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(self.io(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(self.io(&tmp))?;
        for (i, part) in parts.iter().enumerate() {
            let path = tmp.join(format!("part-{i:05}"));
            write_synced(&path, render_partition(self.kind, part).as_bytes())
                .map_err(self.io(&path))?;
        }
        let success = tmp.join("_SUCCESS");
        write_synced(&success, b"").map_err(self.io(&success))?;
        if dir.exists() {
            // Same batch written again (replay): swap the old copy out.
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            fs::rename(&dir, &old).map_err(self.io(&dir))?;
            fs::rename(&tmp, &dir).map_err(self.io(&dir))?;
            fs::remove_dir_all(&old).map_err(self.io(&old))?;
        } else {
            fs::rename(&tmp, &dir).map_err(self.io(&dir))?;
        }
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
