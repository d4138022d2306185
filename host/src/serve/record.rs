//! Durable job records: what a `weir serve` host needs to bring its jobs
//! back after a restart (graceful or not), and how it removes a job for
//! good.
//!
//! - Each job's directory holds its record, [`RECORD_FILE`] (JSON, hidden
//!   from a files source reading the directory): tenant, id, name, the
//!   sha256 of its pipeline and modules, its limits and the state it should
//!   be in (running, stopped, failed with its error, deleted). A record is
//!   replaced whole: written to a temporary file, synced, renamed over the
//!   old one and the directory synced, so a crash leaves the old record or
//!   the new one, never a torn one.
//! - Job ids are numbered from a counter kept in [`ID_COUNTER_FILE`] in the
//!   data directory, advanced durably before an id is handed out: an id is
//!   never given twice, not even after its job was deleted.
//! - Deleting a job marks its record `deleted`, renames its directory to a
//!   hidden `.deleted-ID` (one atomic step: after it the job is gone for
//!   any restart) and then removes it; a restart finishes what a crash
//!   interrupted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::api::{JobError, JobLimits};

/// The record's file name in the job directory.
pub const RECORD_FILE: &str = ".job.json";

/// The record format this host writes and reads.
pub const FORMAT: u32 = 1;

/// The id counter's file name in the data directory.
pub const ID_COUNTER_FILE: &str = "job-ids";

/// Prefix of a job directory being deleted.
pub const DELETED_PREFIX: &str = ".deleted-";

/// The state a job should be in: what a restart brings back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Running: a restart starts it again from its checkpoint.
    Running,
    /// Stopped on request: listed, not started.
    Stopped,
    /// Failed: listed with its error, not started.
    Failed,
    /// Being deleted: a restart finishes the deletion.
    Deleted,
    /// Paused by a quota (`paused` says which): resumed from its checkpoint
    /// once its tenant is back under.
    Paused,
}

/// A job's durable record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRecord {
    /// [`FORMAT`].
    pub format: u32,
    /// Job id (the directory's name).
    pub id: String,
    /// Owner (the directory's tenant).
    pub tenant: String,
    /// `[job] name`.
    pub name: String,
    /// When it was submitted, ms since the epoch.
    pub submitted_ms: i64,
    /// Batch interval, ms.
    pub batch_interval_ms: u64,
    /// sha256 of the pipeline file as submitted.
    pub pipeline_sha256: String,
    /// Module file name → sha256, as submitted.
    pub modules: BTreeMap<String, String>,
    /// Data file name → sha256, as submitted.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Plugin name → sha256 of its module at submission.
    #[serde(default)]
    pub plugins: BTreeMap<String, String>,
    /// The limits it was submitted under.
    pub limits: JobLimits,
    /// The state it should be in.
    pub state: Desired,
    /// Why it failed (state `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Why it is paused (state `paused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Batches it completed in the host process that ran it last.
    #[serde(default)]
    pub batches: u64,
    /// Its last completed batch.
    #[serde(default)]
    pub last_batch_ms: Option<i64>,
}

/// A record or job file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file system refused.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The record is not valid JSON of the right shape (torn, damaged or
    /// edited).
    #[error("the job record {} is damaged ({source}); restore it, or delete the job", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// Another format.
    #[error("the job record {} has format {found}; this weir reads format {FORMAT}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
    },
    /// The record names another job or tenant than its directory.
    #[error("the job record {} is for job `{id}` of tenant `{tenant}`, not for the directory it is in", path.display())]
    Misplaced {
        /// The file.
        path: PathBuf,
        /// The id it holds.
        id: String,
        /// The tenant it holds.
        tenant: String,
    },
    /// A job file no longer has the bytes it was submitted with.
    #[error("{} changed since the job was submitted (sha256 {found}, recorded {recorded})", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// Its hash now.
        found: String,
        /// The hash recorded.
        recorded: String,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RecordError {
    let path = path.to_owned();
    move |source| RecordError::Io {
        action,
        path,
        source,
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Syncs a directory, so the names created, renamed or removed in it are
/// durable.
pub fn sync_dir(dir: &Path) -> Result<(), RecordError> {
    crate::durable::sync_dir(dir).map_err(io("cannot sync the directory", dir))
}

/// Writes a new file and syncs it (its directory is synced by the caller,
/// once for all its files).
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    crate::durable::write_synced(path, bytes).map_err(io("cannot write", path))
}

/// Replaces `dir/name` atomically and durably ([`crate::durable::write_atomic`]).
pub fn replace_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RecordError> {
    let path = dir.join(name);
    crate::durable::write_atomic(&path, bytes).map_err(io("cannot replace", &path))
}

impl JobRecord {
    /// Writes the record into the job directory `dir`, replacing the old
    /// one atomically.
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        let json = serde_json::to_vec_pretty(self).expect("a record serialises");
        replace_durably(dir, RECORD_FILE, &json)
    }

    /// Reads the record of the job directory `dir`, which must be
    /// `<tenant>/jobs/<id>` for the record's tenant and id.
    pub fn load(dir: &Path, tenant: &str, id: &str) -> Result<JobRecord, RecordError> {
        let path = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(io("cannot read the job record", &path))?;
        // The format first, so a newer record says so rather than failing
        // on a field this version does not know.
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = serde_json::from_slice(&bytes).map_err(|source| RecordError::Damaged {
            path: path.clone(),
            source,
        })?;
        if head.format != FORMAT {
            return Err(RecordError::Format {
                path,
                found: head.format,
            });
        }
        let record: JobRecord =
            serde_json::from_slice(&bytes).map_err(|source| RecordError::Damaged {
                path: path.clone(),
                source,
            })?;
        if record.id != id || record.tenant != tenant {
            return Err(RecordError::Misplaced {
                path,
                id: record.id,
                tenant: record.tenant,
            });
        }
        Ok(record)
    }

    /// Checks that the pipeline and modules in `dir` are the bytes the job
    /// was submitted with.
    pub fn verify_files(&self, dir: &Path, pipeline_file: &str) -> Result<(), RecordError> {
        let expected = std::iter::once((pipeline_file, &self.pipeline_sha256))
            .chain(self.modules.iter().map(|(n, h)| (n.as_str(), h)));
        for (name, recorded) in expected {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(io("cannot read", &path))?;
            let found = sha256_hex(&bytes);
            if found != *recorded {
                return Err(RecordError::Changed {
                    path,
                    found,
                    recorded: recorded.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Removes a job directory for good: renames it to a hidden
/// `.deleted-ID` next to it (atomic: from here on a restart does not see
/// the job), syncs the parent, then removes it.
pub fn remove_job_dir(dir: &Path) -> Result<(), RecordError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    let doomed = parent.join(format!("{DELETED_PREFIX}{}", name.to_string_lossy()));
    match std::fs::rename(dir, &doomed) {
        Ok(()) => sync_dir(parent)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot move the job directory aside", dir)(e)),
    }
    match std::fs::remove_dir_all(&doomed) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("cannot remove", &doomed)(e)),
    }
}

/// The id counter: the next number to hand out, advanced durably before
/// an id is used.
pub struct IdCounter {
    data_dir: PathBuf,
    next: Mutex<u64>,
}

impl IdCounter {
    /// Opens the counter of `data_dir`, starting no lower than
    /// `at_least` (one past the highest number among the jobs there, in
    /// case the counter file was lost). A damaged counter file is logged
    /// and replaced.
    pub fn open(data_dir: &Path, at_least: u64) -> IdCounter {
        let path = data_dir.join(ID_COUNTER_FILE);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "the job id counter is damaged; continuing after the highest job id found");
                    0
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the job id counter; continuing after the highest job id found");
                0
            }
        };
        IdCounter {
            data_dir: data_dir.to_owned(),
            next: Mutex::new(stored.max(at_least).max(1)),
        }
    }

    /// The next number, written durably before it is returned.
    pub fn take(&self) -> Result<u64, RecordError> {
        let mut next = self.next.lock().expect("id counter poisoned");
        let n = *next;
        replace_durably(
            &self.data_dir,
            ID_COUNTER_FILE,
            format!("{}\n", n + 1).as_bytes(),
        )?;
        *next = n + 1;
        Ok(n)
    }
}

/// The number in a job id `NAME-HEX`, if it has one.
pub fn id_number(id: &str) -> Option<u64> {
    let (_, hex_part) = id.rsplit_once('-')?;
    u64::from_str_radix(hex_part, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> JobRecord {
        JobRecord {
            format: FORMAT,
            id: "wc-00000001".into(),
            tenant: "alice".into(),
            name: "wc".into(),
            submitted_ms: 1,
            batch_interval_ms: 500,
            pipeline_sha256: sha256_hex(b"p"),
            modules: BTreeMap::from([("m.wat".into(), sha256_hex(b"m"))]),
            files: BTreeMap::new(),
            plugins: BTreeMap::new(),
            limits: crate::serve::config::JobLimitsConfig::default().to_api(2),
            state: Desired::Running,
            error: None,
            paused: None,
            batches: 0,
            last_batch_ms: None,
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = record();
        r.save(dir.path()).unwrap();
        assert_eq!(
            JobRecord::load(dir.path(), "alice", "wc-00000001").unwrap(),
            r
        );
        assert!(!dir.path().join(".job.json.tmp").exists());
        let e = JobRecord::load(dir.path(), "bob", "wc-00000001").unwrap_err();
        assert!(e.to_string().contains("not for the directory"), "{e}");
        // Torn.
        let path = dir.path().join(RECORD_FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = JobRecord::load(dir.path(), "alice", "wc-00000001").unwrap_err();
        assert!(matches!(e, RecordError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains(".job.json"), "{e}");
        // Another format.
        std::fs::write(&path, br#"{"format": 9}"#).unwrap();
        let e = JobRecord::load(dir.path(), "alice", "wc-00000001").unwrap_err();
        assert!(e.to_string().contains("format 9"), "{e}");
    }

    #[test]
    fn changed_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), b"p").unwrap();
        std::fs::write(dir.path().join("m.wat"), b"m").unwrap();
        record().verify_files(dir.path(), "pipeline.toml").unwrap();
        std::fs::write(dir.path().join("m.wat"), b"x").unwrap();
        let e = record()
            .verify_files(dir.path(), "pipeline.toml")
            .unwrap_err();
        assert!(e.to_string().contains("m.wat changed"), "{e}");
    }

    #[test]
    fn ids_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let c = IdCounter::open(dir.path(), 0);
        assert_eq!((c.take().unwrap(), c.take().unwrap()), (1, 2));
        // Reopened: goes on after the last one handed out.
        assert_eq!(IdCounter::open(dir.path(), 0).take().unwrap(), 3);
        // A lost counter file: after the highest id found.
        std::fs::remove_file(dir.path().join(ID_COUNTER_FILE)).unwrap();
        assert_eq!(IdCounter::open(dir.path(), 7).take().unwrap(), 7);
        std::fs::write(dir.path().join(ID_COUNTER_FILE), "garbage").unwrap();
        assert_eq!(IdCounter::open(dir.path(), 9).take().unwrap(), 9);
        assert_eq!(id_number("wc-0000000a"), Some(10));
        assert_eq!(id_number("nohex"), None);
    }

    #[test]
    fn removed_directories_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("wc-00000001");
        std::fs::create_dir_all(job.join("out/x")).unwrap();
        std::fs::write(job.join("out/x/part"), b"1").unwrap();
        remove_job_dir(&job).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Again (a restart finishing an interrupted deletion): nothing to do.
        remove_job_dir(&job).unwrap();
    }
}
