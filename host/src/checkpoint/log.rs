//! Append-only, checksummed record logs in segments: the write-ahead log of
//! received blocks and the log of batch contents.
//!
//! A segment is a sequence of frames `u32 length | u32 crc32 | payload`
//! (little-endian; the payload is bincode). A frame cut short or failing its
//! checksum ends the segment: everything before it is used, the damaged tail
//! is reported and cut off before anything new is appended.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::CheckpointError;

fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::NoLimit,
> {
    bincode::config::legacy()
}

/// Encodes a value as one frame.
pub fn frame<T: Serialize>(value: &T) -> Vec<u8> {
    let payload = bincode::serde::encode_to_vec(value, bincode_config())
        .expect("in-memory encoding cannot fail");
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Reads the frames of `bytes`: the decoded values and the length of the
/// valid prefix (shorter than `bytes` when the tail is damaged).
pub fn read_frames<T: DeserializeOwned>(bytes: &[u8]) -> (Vec<T>, usize) {
    read_frames_with(bytes, |payload| decode(payload))
}

/// A whole frame payload decoded as `T`, if it is exactly one `T`.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Option<T> {
    match decode_bounded::<T>(payload) {
        Ok((v, used)) if used == payload.len() => Some(v),
        _ => None,
    }
}

/// Decodes a `T` from the front of `bytes` (bincode, legacy configuration)
/// with a size limit near the length of `bytes`, and returns it with the
/// bytes it used.
///
/// Without a limit, bincode allocates a string's or a byte buffer's
/// length before it reads the bytes, so a damaged or hostile length field
/// (in a frame whose checksum matches) could ask for gigabytes or panic
/// with a capacity overflow. Every byte a valid encoding claims is a byte
/// it reads, so a limit at least `bytes.len()` refuses nothing valid; it
/// is rounded up to a power of 16 (one decoder per step, not per length),
/// so an allocation is at most 16 times the input, or 64 KiB.
pub fn decode_bounded<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    fn with_limit<T: DeserializeOwned, const N: usize>(
        bytes: &[u8],
    ) -> Result<(T, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(bytes, bincode_config().with_limit::<N>())
    }
    match bytes.len() {
        0..=0xFFFF => with_limit::<T, 0x1_0000>(bytes),
        0x1_0000..=0xF_FFFF => with_limit::<T, 0x10_0000>(bytes),
        0x10_0000..=0xFF_FFFF => with_limit::<T, 0x100_0000>(bytes),
        0x100_0000..=0xFFF_FFFF => with_limit::<T, 0x1000_0000>(bytes),
        #[cfg(target_pointer_width = "64")]
        0x1000_0000..=0xFFFF_FFFF => with_limit::<T, 0x1_0000_0000>(bytes),
        // Frames are at most 4 GiB (a `u32` length).
        _ => with_limit::<T, { usize::MAX }>(bytes),
    }
}

/// As [`read_frames`], with the payload decoder given (to read several
/// versions of a record).
pub fn read_frames_with<T>(bytes: &[u8], decode: impl Fn(&[u8]) -> Option<T>) -> (Vec<T>, usize) {
    let mut values = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode(payload) {
            Some(v) => values.push(v),
            None => break,
        }
        pos += 8 + len;
    }
    (values, pos)
}

/// Writes `bytes` to `path` atomically (kept here for callers of this
/// module; see [`crate::durable::write_atomic`]).
pub use crate::durable::write_atomic;

/// Segments with a damaged tail: `(segment, damaged bytes)`.
pub type Damaged = Vec<(PathBuf, usize)>;

/// A log of records in numbered segments `PREFIX-<first key>.log`.
pub struct SegmentLog {
    dir: PathBuf,
    prefix: &'static str,
    current: Option<File>,
    sync: bool,
}

impl SegmentLog {
    /// A log in `dir`; `sync` fsyncs every append.
    pub fn new(dir: PathBuf, prefix: &'static str, sync: bool) -> Self {
        SegmentLog {
            dir,
            prefix,
            current: None,
            sync,
        }
    }

    fn err(&self, path: &Path, e: io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: path.to_owned(),
            source: e,
        }
    }

    /// Segments as `(first key, path)`, in key order.
    pub fn segments(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.err(&self.dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| self.err(&self.dir, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some(key) = name
                .strip_prefix(self.prefix)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.strip_suffix(".log"))
            {
                if let Ok(k) = key.parse::<u64>() {
                    out.push((k, path));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads every record of every segment in order. A damaged tail is cut
    /// off the segment (and reported) so later appends follow valid data.
    pub fn read_all<T: DeserializeOwned>(&self) -> Result<Vec<T>, CheckpointError> {
        self.read_all_with(|payload| decode(payload))
    }

    /// As [`SegmentLog::read_all`], with the payload decoder given.
    pub fn read_all_with<T>(
        &self,
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, CheckpointError> {
        self.read_segments(decode, true).map(|(all, _)| all)
    }

    /// As [`SegmentLog::read_all_with`], but changes nothing on disk: a
    /// damaged tail is skipped, not cut off, and returned as `(segment,
    /// damaged bytes)` (what `weir replay` reads, which must leave the
    /// directory as it found it).
    pub fn read_only_with<T>(
        &self,
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<(Vec<T>, Damaged), CheckpointError> {
        self.read_segments(decode, false)
    }

    fn read_segments<T>(
        &self,
        decode: impl Fn(&[u8]) -> Option<T>,
        repair: bool,
    ) -> Result<(Vec<T>, Damaged), CheckpointError> {
        let mut all = Vec::new();
        let mut damaged = Vec::new();
        for (_, path) in self.segments()? {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| self.err(&path, e))?;
            let (values, valid) = read_frames_with(&bytes, &decode);
            if valid < bytes.len() {
                damaged.push((path.clone(), bytes.len() - valid));
            }
            if valid < bytes.len() && repair {
                tracing::warn!(
                    path = %path.display(),
                    valid_bytes = valid,
                    damaged_bytes = bytes.len() - valid,
                    "log segment has a damaged tail (an interrupted write); it is cut off"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| self.err(&path, e))?;
                f.set_len(valid as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| self.err(&path, e))?;
            }
            all.extend(values);
        }
        Ok((all, damaged))
    }

    /// Starts a new segment whose first record has key `first`.
    pub fn rotate(&mut self, first: u64) -> Result<(), CheckpointError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.err(&self.dir, e))?;
        let path = self.dir.join(format!("{}-{first:020}.log", self.prefix));
        let new = !path.exists();
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| self.err(&path, e))?;
        if new && self.sync {
            // The segment's name must survive as its synced appends do.
            crate::durable::sync_dir(&self.dir).map_err(|e| self.err(&self.dir, e))?;
        }
        self.current = Some(f);
        Ok(())
    }

    /// Appends a record (durably when `sync`); the caller must have rotated
    /// at least once.
    pub fn append<T: Serialize>(&mut self, value: &T) -> Result<(), CheckpointError> {
        let bytes = frame(value);
        let sync = self.sync;
        let dir = self.dir.clone();
        let f = self.current.as_mut().expect("rotate before append");
        f.write_all(&bytes)
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| CheckpointError::Io {
                path: dir,
                source: e,
            })
    }

    /// Deletes segments all of whose keys are at most `upto`: a segment
    /// ends where the next begins.
    pub fn delete_through(&self, upto: u64) -> Result<usize, CheckpointError> {
        let segs = self.segments()?;
        let mut deleted = 0;
        for pair in segs.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            if next_first > 0 && next_first - 1 <= upto {
                fs::remove_file(path).map_err(|e| self.err(path, e))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let mut bytes = frame(&(1u64, "a".to_string()));
        bytes.extend(frame(&(2u64, "b".to_string())));
        let (v, n) = read_frames::<(u64, String)>(&bytes);
        assert_eq!(v, vec![(1, "a".into()), (2, "b".into())]);
        assert_eq!(n, bytes.len());
        // Truncated tail: the first record survives.
        let cut = &bytes[..bytes.len() - 3];
        let (v, n) = read_frames::<(u64, String)>(cut);
        assert_eq!(v.len(), 1);
        assert!(n < cut.len());
        // A flipped byte in the second payload.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert_eq!(read_frames::<(u64, String)>(&flipped).0.len(), 1);
    }

    #[test]
    fn segments_rotate_repair_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SegmentLog::new(dir.path().to_owned(), "blocks", true);
        log.rotate(1).unwrap();
        log.append(&1u64).unwrap();
        log.append(&2u64).unwrap();
        log.rotate(3).unwrap();
        log.append(&3u64).unwrap();
        // Damage the tail of the last segment: it is cut off on read.
        let last = log.segments().unwrap().pop().unwrap().1;
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&[9, 0, 0]).unwrap();
        assert_eq!(log.read_all::<u64>().unwrap(), vec![1, 2, 3]);
        assert_eq!(
            fs::metadata(&last).unwrap().len() as usize,
            frame(&3u64).len()
        );
        assert_eq!(log.delete_through(2).unwrap(), 1);
        // Read-only: a damaged tail is reported and left where it is.
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&[9, 0]).unwrap();
        let before = fs::read(&last).unwrap();
        let (values, damaged) = log.read_only_with(decode::<u64>).unwrap();
        assert_eq!(values, vec![3]);
        assert_eq!(damaged, vec![(last.clone(), 2)]);
        assert_eq!(fs::read(&last).unwrap(), before, "nothing cut off");
        assert_eq!(log.read_all::<u64>().unwrap(), vec![3]);
    }
}
