//! The weir plugin ABI, version 1: the one place where the wire format exists.
//!
//! Both sides use this crate: the host (`weir`) to build call inputs and to
//! check what guests return, and the Rust SDK (`weir-sdk`) inside the guest.
//! Authors in other languages implement the same bytes from `docs/abi.md`;
//! the tests in this crate pin the encoding to the examples in that document.
//!
//! **Framing.** Every integer is little-endian. A *byte string* is a `u32`
//! length followed by that many bytes. A *record* is a key byte string
//! followed by a value byte string. A *record batch* is a `u32` count
//! followed by that many records. Nothing is padded or aligned.
//!
//! **Calls.** The input of every plugin function is a 16-byte [`CallHeader`]
//! (batch time, partition) followed by a kind-specific body:
//! [`FunctionKind::Map`] takes and returns a record batch,
//! [`FunctionKind::Reduce`] takes groups of values and returns one value per
//! group, [`FunctionKind::Update`] takes keyed state entries and returns the
//! new state plus emitted records.
//!
//! ```
//! use weir_abi::RecordBatch;
//! let mut batch = RecordBatch::new();
//! batch.push(b"word", &7i64.to_le_bytes());
//! let parsed = RecordBatch::from_bytes(batch.as_bytes().to_vec()).unwrap();
//! let (k, v) = parsed.iter().next().unwrap();
//! assert_eq!((k, v), (&b"word"[..], &7i64.to_le_bytes()[..]));
//! ```

use std::fmt;

#[cfg(feature = "recycle")]
pub mod recycle;

/// A buffer with room for `bytes` bytes (a kept one, with `recycle`).
fn buffer(bytes: usize) -> Vec<u8> {
    #[cfg(feature = "recycle")]
    return recycle::take(bytes);
    #[cfg(not(feature = "recycle"))]
    Vec::with_capacity(bytes)
}

/// The ABI version this crate implements; a module exports it from
/// `weir_abi_version` and the host refuses any other.
pub const ABI_VERSION: i32 = 1;

/// Export that returns the module's ABI version: `() -> i32`.
pub const EXPORT_ABI_VERSION: &str = "weir_abi_version";
/// Optional export: the version of the state encoding the module's update
/// functions use, `() -> i32`; absent means 0. An upgrade to a module with
/// another state version migrates state through `migrate:state`.
pub const EXPORT_STATE_VERSION: &str = "weir_state_version";
/// The migration function the host calls at an upgrade.
pub const MIGRATE_FUNCTION: &str = "state";
/// Export the host calls to get guest memory for the input: `(i32) -> i32`.
pub const EXPORT_ALLOC: &str = "weir_alloc";
/// The exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// Module name of the only imports a plugin may have.
pub const IMPORT_MODULE: &str = "weir";
/// `weir.log(level: i32, ptr: i32, len: i32)`: an optional log call.
pub const IMPORT_LOG: &str = "log";
/// `weir.fail(ptr: i32, len: i32)`: ends the call as failed with the UTF-8
/// message at `ptr` (a panic hook's way out); never returns.
pub const IMPORT_FAIL: &str = "fail";
/// Separator of the alternative export spelling `KIND__NAME`.
pub const ALT_SEPARATOR: &str = "__";

/// Status returned by a function: success, the result area holds output.
pub const STATUS_OK: i32 = 0;
/// Status returned by a function: the user function failed, the result area
/// holds a UTF-8 error message.
pub const STATUS_ERROR: i32 = 1;

/// Size in bytes of the [`CallHeader`] at the start of every input.
pub const HEADER_LEN: usize = 16;
/// Size in bytes of the result area the host passes to every function.
pub const RESULT_AREA_LEN: usize = 8;

/// Flag bit of an update entry: the key has state, a byte string follows.
pub const UPDATE_HAS_STATE: u8 = 1;
/// Flag bit of an update entry: the key's idle timeout expired this batch.
pub const UPDATE_TIMED_OUT: u8 = 2;
/// Update result action: remove the key's state.
pub const ACTION_REMOVE: u8 = 0;
/// Update result action: set the key's state to the byte string that follows.
pub const ACTION_SET: u8 = 1;

/// The three kinds of plugin function. The kind is part of the export name:
/// `map:NAME`, `reduce:NAME`, `update:NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunctionKind {
    /// One record in, zero or more out (map, flat_map, filter, transform).
    Map,
    /// Associative combine of the values of each group, one value per group.
    Reduce,
    /// Keyed state update: key, new values and previous state in; new state
    /// (or removal) and emitted records out.
    Update,
    /// State migration at an upgrade: a record batch of `(key, old state)`
    /// in, `(key, new state)` out (a key left out is removed). Same call
    /// shape as [`FunctionKind::Map`]; the host calls `migrate:state`.
    Migrate,
}

impl FunctionKind {
    /// All kinds, in documentation order.
    pub const ALL: [FunctionKind; 4] = [
        FunctionKind::Map,
        FunctionKind::Reduce,
        FunctionKind::Update,
        FunctionKind::Migrate,
    ];

    /// The prefix used in export names.
    pub fn prefix(self) -> &'static str {
        match self {
            FunctionKind::Map => "map",
            FunctionKind::Reduce => "reduce",
            FunctionKind::Update => "update",
            FunctionKind::Migrate => "migrate",
        }
    }

    /// The export name of function `name` of this kind.
    pub fn export_name(self, name: &str) -> String {
        format!("{}:{}", self.prefix(), name)
    }

    /// Splits an export name such as `map:split` into kind and function name.
    /// The alternative spelling `map__split` (two underscores for the colon,
    /// for languages whose export names are identifiers, like
    /// AssemblyScript) is accepted too. Returns `None` for exports that are
    /// not weir functions.
    pub fn parse_export(export: &str) -> Option<(FunctionKind, &str)> {
        let (prefix, name) = export
            .split_once(':')
            .or_else(|| export.split_once(ALT_SEPARATOR))?;
        let kind = FunctionKind::ALL
            .into_iter()
            .find(|k| k.prefix() == prefix)?;
        (!name.is_empty()).then_some((kind, name))
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// Why a buffer does not follow the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Byte offset in the buffer where parsing failed.
    pub offset: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed framing at byte {}: expected {}",
            self.offset, self.expected
        )
    }
}

impl std::error::Error for FrameError {}

/// The 16 bytes at the start of every function input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallHeader {
    /// The batch time in milliseconds since the Unix epoch (the window end
    /// for window operators).
    pub batch_time_ms: i64,
    /// The partition this call processes.
    pub partition: u32,
    /// How many partitions the operator has.
    pub num_partitions: u32,
}

impl CallHeader {
    /// Encodes the header: `i64 batch_time_ms, u32 partition, u32 num_partitions`.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.batch_time_ms.to_le_bytes());
        out[8..12].copy_from_slice(&self.partition.to_le_bytes());
        out[12..16].copy_from_slice(&self.num_partitions.to_le_bytes());
        out
    }

    /// Splits an input buffer into its header and body.
    pub fn split(input: &[u8]) -> Result<(CallHeader, &[u8]), FrameError> {
        if input.len() < HEADER_LEN {
            return Err(FrameError {
                offset: input.len(),
                expected: "a 16-byte call header",
            });
        }
        let header = CallHeader {
            batch_time_ms: i64::from_le_bytes(input[0..8].try_into().expect("8 bytes")),
            partition: u32::from_le_bytes(input[8..12].try_into().expect("4 bytes")),
            num_partitions: u32::from_le_bytes(input[12..16].try_into().expect("4 bytes")),
        };
        Ok((header, &input[HEADER_LEN..]))
    }
}

/// A cursor over a framed buffer that checks every length before use.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Current byte offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, expected: &'static str) -> Result<&'a [u8], FrameError> {
        if self.remaining() < n {
            return Err(FrameError {
                offset: self.pos,
                expected,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, expected: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, expected)?[0])
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, expected: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(
            self.take(4, expected)?.try_into().expect("4 bytes"),
        ))
    }

    /// Reads a byte string: `u32` length, then the bytes.
    pub fn bytes(&mut self, expected: &'static str) -> Result<&'a [u8], FrameError> {
        let len = self.u32(expected)? as usize;
        self.take(len, expected)
    }

    /// Reads a count and checks it is plausible: every item needs at least
    /// `min_item_len` bytes, so a hostile count cannot make a reader reserve
    /// memory the buffer could never fill.
    pub fn count(
        &mut self,
        min_item_len: usize,
        expected: &'static str,
    ) -> Result<usize, FrameError> {
        let at = self.pos;
        let n = self.u32(expected)? as usize;
        if n.saturating_mul(min_item_len) > self.remaining() {
            return Err(FrameError {
                offset: at,
                expected,
            });
        }
        Ok(n)
    }

    /// Fails unless the whole buffer was consumed.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(FrameError {
                offset: self.pos,
                expected: "end of buffer (trailing bytes)",
            })
        }
    }
}

/// Appends a byte string (`u32` length + bytes) to `out`.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("byte string longer than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Appends a byte string produced by `write`: reserves the length prefix,
/// lets `write` append, then fills the prefix in.
pub fn write_prefixed(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = u32::try_from(out.len() - at - 4).expect("byte string longer than 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends a little-endian `u32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A record batch kept in its wire form: `u32 count`, then `count` records
/// of `(key byte string, value byte string)`.
///
/// Because the host keeps partitions in this form, a batch goes into guest
/// memory with one copy, and a guest's output is checked once and then used
/// without re-encoding.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecordBatch {
    buf: Vec<u8>,
    len: usize,
}

impl Default for RecordBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBatch {
    /// An empty batch.
    pub fn new() -> Self {
        RecordBatch {
            buf: vec![0; 4],
            len: 0,
        }
    }

    /// An empty batch with room for `bytes` bytes of records.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = buffer(bytes + 4);
        buf.extend_from_slice(&[0; 4]);
        RecordBatch { buf, len: 0 }
    }

    /// Checks that `buf` is exactly one well-formed record batch.
    pub fn from_bytes(buf: Vec<u8>) -> Result<Self, FrameError> {
        let n = Self::check(&buf)?;
        Ok(RecordBatch { buf, len: n })
    }

    /// Checks that `bytes` is exactly one well-formed record batch and
    /// copies it (checking before copying: nothing is allocated for a
    /// malformed buffer).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, FrameError> {
        let n = Self::check(bytes)?;
        let mut buf = buffer(bytes.len());
        buf.extend_from_slice(bytes);
        Ok(RecordBatch { buf, len: n })
    }

    /// Checks that `bytes` is exactly one well-formed record batch and
    /// iterates over its records where they lie (no copy).
    pub fn view(bytes: &[u8]) -> Result<RecordIter<'_>, FrameError> {
        let n = Self::check(bytes)?;
        Ok(RecordIter {
            buf: bytes,
            pos: 4,
            left: n,
        })
    }

    /// The records in runs of consecutive records of at most `max_bytes`
    /// framed bytes each (a larger record makes a run alone), as
    /// `(records, framed bytes)`: a run's bytes after a `u32` count of
    /// `records` are a record batch.
    pub fn runs(&self, max_bytes: usize) -> Runs<'_> {
        Runs {
            records: self.iter(),
            max_bytes,
        }
    }

    /// Validates the framing of a whole batch; returns the record count.
    fn check(buf: &[u8]) -> Result<usize, FrameError> {
        let mut r = Reader::new(buf);
        let n = r.count(8, "record count")?;
        for _ in 0..n {
            r.bytes("record key")?;
            r.bytes("record value")?;
        }
        r.finish()?;
        Ok(n)
    }

    /// Reads a record batch from the front of a reader (used where a batch
    /// is followed or preceded by other sections).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let start = r.position();
        let n = r.count(8, "record count")?;
        let mut batch = RecordBatch::with_capacity(r.remaining().min(1 << 20));
        for _ in 0..n {
            let k = r.bytes("record key")?;
            let v = r.bytes("record value")?;
            batch.push(k, v);
        }
        debug_assert!(r.position() >= start);
        Ok(batch)
    }

    /// Appends a record.
    #[inline]
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        put_bytes(&mut self.buf, key);
        put_bytes(&mut self.buf, value);
        self.len += 1;
        let n = u32::try_from(self.len).expect("more than u32::MAX records");
        self.buf[0..4].copy_from_slice(&n.to_le_bytes());
    }

    /// Appends a record whose key and value are written straight into the
    /// buffer by `key` and `value` (no temporary allocation).
    pub fn push_encoded(
        &mut self,
        key: impl FnOnce(&mut Vec<u8>),
        value: impl FnOnce(&mut Vec<u8>),
    ) {
        write_prefixed(&mut self.buf, key);
        write_prefixed(&mut self.buf, value);
        self.len += 1;
        let n = u32::try_from(self.len).expect("more than u32::MAX records");
        self.buf[0..4].copy_from_slice(&n.to_le_bytes());
    }

    /// Appends every record of `other`.
    pub fn extend(&mut self, other: &RecordBatch) {
        self.buf.extend_from_slice(&other.buf[4..]);
        self.len += other.len;
        let n = u32::try_from(self.len).expect("more than u32::MAX records");
        self.buf[0..4].copy_from_slice(&n.to_le_bytes());
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The wire form, count included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The wire form, count included, without copying.
    pub fn into_bytes(mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Bytes used by the wire form.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Iterates over `(key, value)` pairs in order.
    #[inline]
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            buf: &self.buf,
            pos: 4,
            left: self.len,
        }
    }
}

/// With `recycle`, a large batch's buffer is kept for the next batches.
#[cfg(feature = "recycle")]
impl Drop for RecordBatch {
    fn drop(&mut self) {
        if self.buf.capacity() >= recycle::MIN_BYTES {
            recycle::give(std::mem::take(&mut self.buf));
        }
    }
}

/// A record batch serializes as its wire form (a byte string) and is
/// checked when deserialized.
#[cfg(feature = "serde")]
impl serde::Serialize for RecordBatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.buf)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for RecordBatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RecordBatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a framed record batch")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RecordBatch, E> {
                RecordBatch::from_bytes(v.to_vec()).map_err(E::custom)
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RecordBatch, E> {
                RecordBatch::from_bytes(v).map_err(E::custom)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

impl fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(K, V)> for RecordBatch {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut batch = RecordBatch::new();
        for (k, v) in iter {
            batch.push(k.as_ref(), v.as_ref());
        }
        batch
    }
}

impl<'a> IntoIterator for &'a RecordBatch {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = RecordIter<'a>;
    fn into_iter(self) -> RecordIter<'a> {
        self.iter()
    }
}

/// The records of a record batch in its wire form, read where they lie:
/// the whole batch is checked first (as [`RecordBatch::from_bytes`] does,
/// with the same errors), then iterated without copying or allocating.
pub fn records(batch: &[u8]) -> Result<RecordIter<'_>, FrameError> {
    let n = RecordBatch::check(batch)?;
    Ok(RecordIter {
        buf: batch,
        pos: 4,
        left: n,
    })
}

/// Iterator over the records of a [`RecordBatch`].
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The batch was validated (or built) on construction, so the lengths
        // are known to be in range.
        let mut field = || {
            let len = u32::from_le_bytes(
                self.buf[self.pos..self.pos + 4]
                    .try_into()
                    .expect("4 bytes"),
            ) as usize;
            let s = &self.buf[self.pos + 4..self.pos + 4 + len];
            self.pos += 4 + len;
            s
        };
        let k = field();
        let v = field();
        Some((k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for RecordIter<'_> {}

/// Runs of consecutive records of a [`RecordBatch`], from
/// [`RecordBatch::runs`].
#[derive(Debug, Clone)]
pub struct Runs<'a> {
    records: RecordIter<'a>,
    max_bytes: usize,
}

impl<'a> Iterator for Runs<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.records.pos;
        let mut n = 0;
        while self.records.left > 0 {
            let mut probe = self.records.clone();
            probe.next();
            if n > 0 && probe.pos - start > self.max_bytes {
                break;
            }
            self.records = probe;
            n += 1;
        }
        (n > 0).then(|| (n, &self.records.buf[start..self.records.pos]))
    }
}

/// Body of a reduce call: `u32 group_count`, then per group a key byte
/// string, a `u32 value_count` (at least 1) and that many value byte strings.
#[derive(Debug, Default, Clone)]
pub struct GroupsWriter {
    buf: Vec<u8>,
    groups: u32,
}

impl GroupsWriter {
    /// An empty body.
    pub fn new() -> Self {
        GroupsWriter {
            buf: vec![0; 4],
            groups: 0,
        }
    }

    /// Appends a group.
    pub fn push<'v>(&mut self, key: &[u8], values: impl ExactSizeIterator<Item = &'v [u8]>) {
        put_bytes(&mut self.buf, key);
        put_u32(
            &mut self.buf,
            u32::try_from(values.len()).expect("group too large"),
        );
        for v in values {
            put_bytes(&mut self.buf, v);
        }
        self.groups += 1;
        self.buf[0..4].copy_from_slice(&self.groups.to_le_bytes());
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups as usize
    }

    /// True when no group was added.
    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    /// The encoded body.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A reduce body written in place — into a buffer of exactly
/// [`GroupsBody::len_of`] bytes, such as guest memory — when every group's
/// key, value count and value bytes are known before the values are:
/// values can then arrive in any order across groups (in record order, say)
/// and the bytes equal those of a [`GroupsWriter`] given the same groups.
#[derive(Debug)]
pub struct GroupsBody<'a> {
    buf: &'a mut [u8],
    /// Per group: where its next value goes.
    cursors: Vec<usize>,
}

impl<'a> GroupsBody<'a> {
    /// Length of a body of groups given as `(key length, value count,
    /// value bytes without length prefixes)`.
    pub fn len_of(groups: impl Iterator<Item = (usize, usize, usize)>) -> usize {
        4 + groups
            .map(|(key_len, values, value_bytes)| 4 + key_len + 4 + 4 * values + value_bytes)
            .sum::<usize>()
    }

    /// Starts the body in `buf`, which must be exactly
    /// [`len_of`](Self::len_of) the same groups long: writes the group
    /// count and every group's key and value count, and leaves room for
    /// the values.
    pub fn new<'k>(
        buf: &'a mut [u8],
        groups: impl ExactSizeIterator<Item = (&'k [u8], usize, usize)>,
    ) -> Self {
        let n = u32::try_from(groups.len()).expect("too many groups");
        buf[0..4].copy_from_slice(&n.to_le_bytes());
        let mut at = 4;
        let mut cursors = Vec::with_capacity(groups.len());
        for (key, values, value_bytes) in groups {
            let key_len = u32::try_from(key.len()).expect("byte string longer than 4 GiB");
            buf[at..at + 4].copy_from_slice(&key_len.to_le_bytes());
            buf[at + 4..at + 4 + key.len()].copy_from_slice(key);
            at += 4 + key.len();
            let m = u32::try_from(values).expect("group too large");
            buf[at..at + 4].copy_from_slice(&m.to_le_bytes());
            at += 4;
            cursors.push(at);
            at += 4 * values + value_bytes;
        }
        assert_eq!(
            at,
            buf.len(),
            "buffer length differs from GroupsBody::len_of"
        );
        GroupsBody { buf, cursors }
    }

    /// Appends `value` to group `group` (groups are numbered in the order
    /// given to [`new`](Self::new)). Panics if the group has no room left.
    #[inline]
    pub fn push(&mut self, group: usize, value: &[u8]) {
        let at = self.cursors[group];
        let len = u32::try_from(value.len()).expect("byte string longer than 4 GiB");
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        copy_small(&mut self.buf[at + 4..at + 4 + value.len()], value);
        self.cursors[group] = at + 4 + value.len();
    }
}

/// `dst.copy_from_slice(src)` without a `memcpy` call for up to 16 bytes
/// (values such as counts are usually 8): two overlapping fixed-size
/// copies, which compile to plain loads and stores.
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    assert_eq!(dst.len(), n, "copy_small: lengths differ");
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            let (a, b): ([u8; 4], [u8; 4]) = (
                src[..4].try_into().expect("4 bytes"),
                src[n - 4..].try_into().expect("4 bytes"),
            );
            dst[..4].copy_from_slice(&a);
            dst[n - 4..].copy_from_slice(&b);
        }
        8..=16 => {
            let (a, b): ([u8; 8], [u8; 8]) = (
                src[..8].try_into().expect("8 bytes"),
                src[n - 8..].try_into().expect("8 bytes"),
            );
            dst[..8].copy_from_slice(&a);
            dst[n - 8..].copy_from_slice(&b);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// One group of a reduce call, as read by a guest.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// The group's key.
    pub key: &'a [u8],
    /// The values, at least one.
    pub values: Vec<&'a [u8]>,
}

/// Parses a reduce body into a list of groups (see [`groups`] to read it
/// in place instead).
pub fn read_groups(body: &[u8]) -> Result<Vec<Group<'_>>, FrameError> {
    Ok(groups(body)?
        .map(|(key, values)| Group {
            key,
            values: values.collect(),
        })
        .collect())
}

/// The groups of a reduce body, `(key, values)`, read where they lie: the
/// whole body is checked first (the checks and errors of [`read_groups`]),
/// then iterated without allocating.
pub fn groups(body: &[u8]) -> Result<Groups<'_>, FrameError> {
    let mut r = Reader::new(body);
    let n = r.count(8, "group count")?;
    for _ in 0..n {
        r.bytes("group key")?;
        let at = r.position();
        let m = r.count(4, "value count")?;
        if m == 0 {
            return Err(FrameError {
                offset: at,
                expected: "a value count of at least 1",
            });
        }
        for _ in 0..m {
            r.bytes("group value")?;
        }
    }
    r.finish()?;
    Ok(Groups {
        rest: &body[4..],
        left: n,
    })
}

/// Iterator over the groups of a checked reduce body (from [`groups`]).
#[derive(Debug, Clone)]
pub struct Groups<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Groups<'a> {
    type Item = (&'a [u8], ByteStrings<'a>);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = take_checked(&mut self.rest);
        let m = take_u32_checked(&mut self.rest) as usize;
        let values = ByteStrings::take(&mut self.rest, m);
        Some((key, values))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Groups<'_> {}

/// Byte strings laid end to end (`u32` length + bytes each) in checked
/// framing, read in place: the values of a group or of an update entry.
#[derive(Debug, Clone, Copy)]
pub struct ByteStrings<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> ByteStrings<'a> {
    /// Takes `count` byte strings from the front of `rest`.
    #[inline(always)]
    fn take(rest: &mut &'a [u8], count: usize) -> Self {
        let all = *rest;
        for _ in 0..count {
            take_checked(rest);
        }
        ByteStrings {
            rest: &all[..all.len() - rest.len()],
            left: count,
        }
    }
}

impl<'a> Iterator for ByteStrings<'a> {
    type Item = &'a [u8];

    #[inline(always)]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(take_checked(&mut self.rest))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ByteStrings<'_> {}

/// A `u32` from the front of framing that was checked before (a slip
/// panics; it never reads out of bounds).
#[inline(always)]
fn take_u32_checked(rest: &mut &[u8]) -> u32 {
    let (n, tail) = rest.split_at(4);
    *rest = tail;
    u32::from_le_bytes(n.try_into().expect("4 bytes"))
}

/// A byte string from the front of checked framing.
#[inline(always)]
fn take_checked<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let len = take_u32_checked(rest) as usize;
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    bytes
}

/// Parses the output of a reduce call: `u32 count` then one value byte
/// string per group, and checks the count equals `expected_groups`.
pub fn read_reduced(out: &[u8], expected_groups: usize) -> Result<Vec<&[u8]>, FrameError> {
    let mut r = Reader::new(out);
    let n = r.count(4, "reduced value count")?;
    if n != expected_groups {
        return Err(FrameError {
            offset: 0,
            expected: "one reduced value per input group",
        });
    }
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(r.bytes("reduced value")?);
    }
    r.finish()?;
    Ok(values)
}

/// Builds the output of a reduce call.
pub fn write_reduced<'v>(values: impl ExactSizeIterator<Item = &'v [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(
        &mut out,
        u32::try_from(values.len()).expect("too many groups"),
    );
    for v in values {
        put_bytes(&mut out, v);
    }
    out
}

/// One entry of an update call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateEntry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The key's state before this batch, if any.
    pub state: Option<&'a [u8]>,
    /// True when the key's idle timeout expired (map_with_state).
    pub timed_out: bool,
    /// The key's new values in this batch, in arrival order (may be empty).
    pub values: Vec<&'a [u8]>,
}

/// Encodes an update body: `u32 entry_count`, then per entry a key byte
/// string, a flags byte ([`UPDATE_HAS_STATE`], [`UPDATE_TIMED_OUT`]), the
/// state byte string if present, a `u32 value_count` and the values.
pub fn write_update_entries<'a>(entries: impl IntoIterator<Item = &'a UpdateEntry<'a>>) -> Vec<u8> {
    let mut out = vec![0; 4];
    let mut n: u32 = 0;
    for e in entries {
        put_bytes(&mut out, e.key);
        let mut flags = 0;
        if e.state.is_some() {
            flags |= UPDATE_HAS_STATE;
        }
        if e.timed_out {
            flags |= UPDATE_TIMED_OUT;
        }
        out.push(flags);
        if let Some(s) = e.state {
            put_bytes(&mut out, s);
        }
        put_u32(
            &mut out,
            u32::try_from(e.values.len()).expect("too many values"),
        );
        for v in &e.values {
            put_bytes(&mut out, v);
        }
        n += 1;
    }
    out[0..4].copy_from_slice(&n.to_le_bytes());
    out
}

/// Parses an update body into a list of entries (see [`update_entries`]
/// to read it in place instead).
pub fn read_update_entries(body: &[u8]) -> Result<Vec<UpdateEntry<'_>>, FrameError> {
    Ok(update_entries(body)?
        .map(|e| UpdateEntry {
            key: e.key,
            state: e.state,
            timed_out: e.timed_out,
            values: e.values.collect(),
        })
        .collect())
}

/// One entry of an update call, read in place (from [`update_entries`]).
#[derive(Debug, Clone, Copy)]
pub struct UpdateEntryRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The key's state before this batch, if any.
    pub state: Option<&'a [u8]>,
    /// True when the key's idle timeout expired (map_with_state).
    pub timed_out: bool,
    /// The key's new values in this batch, in arrival order (may be empty).
    pub values: ByteStrings<'a>,
}

/// The entries of an update body, read where they lie: the whole body is
/// checked first (the checks and errors of [`read_update_entries`]), then
/// iterated without allocating.
pub fn update_entries(body: &[u8]) -> Result<UpdateEntries<'_>, FrameError> {
    let mut r = Reader::new(body);
    let n = r.count(9, "update entry count")?;
    for _ in 0..n {
        r.bytes("update key")?;
        let at = r.position();
        let flags = r.u8("update flags")?;
        if flags & !(UPDATE_HAS_STATE | UPDATE_TIMED_OUT) != 0 {
            return Err(FrameError {
                offset: at,
                expected: "update flags with only bits 0 and 1",
            });
        }
        if flags & UPDATE_HAS_STATE != 0 {
            r.bytes("update state")?;
        }
        let m = r.count(4, "update value count")?;
        for _ in 0..m {
            r.bytes("update value")?;
        }
    }
    r.finish()?;
    Ok(UpdateEntries {
        rest: &body[4..],
        left: n,
    })
}

/// Iterator over the entries of a checked update body (from
/// [`update_entries`]).
#[derive(Debug, Clone)]
pub struct UpdateEntries<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for UpdateEntries<'a> {
    type Item = UpdateEntryRef<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<UpdateEntryRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = take_checked(&mut self.rest);
        let (&flags, tail) = self.rest.split_first().expect("checked framing");
        self.rest = tail;
        let state = (flags & UPDATE_HAS_STATE != 0).then(|| take_checked(&mut self.rest));
        let m = take_u32_checked(&mut self.rest) as usize;
        Some(UpdateEntryRef {
            key,
            state,
            timed_out: flags & UPDATE_TIMED_OUT != 0,
            values: ByteStrings::take(&mut self.rest, m),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for UpdateEntries<'_> {}

/// The output of an update call: one state action per input entry, in input
/// order, followed by a record batch of emitted records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutput {
    /// `None` removes the key's state, `Some(bytes)` sets it.
    pub states: Vec<Option<Vec<u8>>>,
    /// Records emitted by the function.
    pub emitted: RecordBatch,
}

impl UpdateOutput {
    /// Encodes: `u32 count`, per entry an action byte ([`ACTION_REMOVE`] or
    /// [`ACTION_SET`] + state byte string), then the emitted record batch.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(
            &mut out,
            u32::try_from(self.states.len()).expect("too many entries"),
        );
        for s in &self.states {
            match s {
                None => out.push(ACTION_REMOVE),
                Some(s) => {
                    out.push(ACTION_SET);
                    put_bytes(&mut out, s);
                }
            }
        }
        out.extend_from_slice(self.emitted.as_bytes());
        out
    }

    /// Parses and checks an update output for `expected_entries` entries.
    pub fn decode(out: &[u8], expected_entries: usize) -> Result<Self, FrameError> {
        let mut r = Reader::new(out);
        let n = r.count(1, "update result count")?;
        if n != expected_entries {
            return Err(FrameError {
                offset: 0,
                expected: "one update result per input entry",
            });
        }
        let mut states = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.position();
            match r.u8("update action")? {
                ACTION_REMOVE => states.push(None),
                ACTION_SET => states.push(Some(r.bytes("new state")?.to_vec())),
                _ => {
                    return Err(FrameError {
                        offset: at,
                        expected: "update action 0 (remove) or 1 (set)",
                    })
                }
            }
        }
        let emitted = RecordBatch::read(&mut r)?;
        r.finish()?;
        Ok(UpdateOutput { states, emitted })
    }
}

/// Canonical encoding of values the host produces itself.
pub mod canonical {
    use super::{put_bytes, put_u32, FrameError, Reader};

    /// A count (`count`, `count_by_value`, ...): `i64`, 8 bytes little-endian.
    pub fn encode_count(n: i64) -> [u8; 8] {
        n.to_le_bytes()
    }

    /// Reads a count; fails unless `bytes` is exactly 8 bytes.
    pub fn decode_count(bytes: &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// A list of values (`group_by_key`): `u32 count`, then byte strings.
    pub fn encode_list<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, u32::try_from(items.len()).expect("list too long"));
        for i in items {
            put_bytes(&mut out, i);
        }
        out
    }

    /// Reads a list of values.
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<&[u8]>, FrameError> {
        let mut r = Reader::new(bytes);
        let n = r.count(4, "list length")?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(r.bytes("list item")?);
        }
        r.finish()?;
        Ok(out)
    }

    /// An optional value: byte `0` (absent) or byte `1` then a byte string.
    pub fn put_option(out: &mut Vec<u8>, v: Option<&[u8]>) {
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_bytes(out, v);
            }
        }
    }

    /// Reads an optional value.
    pub fn read_option<'a>(r: &mut Reader<'a>) -> Result<Option<&'a [u8]>, FrameError> {
        let at = r.position();
        match r.u8("option tag")? {
            0 => Ok(None),
            1 => Ok(Some(r.bytes("option value")?)),
            _ => Err(FrameError {
                offset: at,
                expected: "option tag 0 or 1",
            }),
        }
    }

    /// A join result (`join` and the outer joins): the left value then the
    /// right value, each as an optional value. Inner joins always have both.
    pub fn encode_pair(left: Option<&[u8]>, right: Option<&[u8]>) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(left.map_or(1, |l| 5 + l.len()) + right.map_or(1, |r| 5 + r.len()));
        put_option(&mut out, left);
        put_option(&mut out, right);
        out
    }

    /// Reads a join result.
    pub fn decode_pair(bytes: &[u8]) -> Result<(Option<&[u8]>, Option<&[u8]>), FrameError> {
        let mut r = Reader::new(bytes);
        let left = read_option(&mut r)?;
        let right = read_option(&mut r)?;
        r.finish()?;
        Ok((left, right))
    }

    /// A cogroup result: two lists (left values, right values).
    pub fn encode_cogroup<'a>(
        left: impl ExactSizeIterator<Item = &'a [u8]>,
        right: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Vec<u8> {
        let mut out = encode_list(left);
        out.extend_from_slice(&encode_list(right));
        out
    }

    /// Reads a cogroup result.
    pub fn decode_cogroup(bytes: &[u8]) -> Result<(Vec<&[u8]>, Vec<&[u8]>), FrameError> {
        let mut r = Reader::new(bytes);
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.count(4, "cogroup list length")?;
            for _ in 0..n {
                list.push(r.bytes("cogroup item")?);
            }
        }
        r.finish()?;
        let [l, rr] = lists;
        Ok((l, rr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in docs/abi.md, byte for byte.
    #[test]
    fn record_batch_matches_document() {
        let batch: RecordBatch = [(&b"a"[..], &1i64.to_le_bytes()[..]), (b"", b"hi")]
            .into_iter()
            .collect();
        let expected: Vec<u8> = vec![
            2, 0, 0, 0, // two records
            1, 0, 0, 0, b'a', // key "a"
            8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, // value i64 1
            0, 0, 0, 0, // empty key
            2, 0, 0, 0, b'h', b'i', // value "hi"
        ];
        assert_eq!(batch.as_bytes(), &expected[..]);
        assert_eq!(RecordBatch::from_bytes(expected).unwrap(), batch);
    }

    #[test]
    fn header_round_trip() {
        let h = CallHeader {
            batch_time_ms: 1_700_000_000_123,
            partition: 3,
            num_partitions: 4,
        };
        let mut input = h.encode().to_vec();
        input.extend_from_slice(b"body");
        let (back, body) = CallHeader::split(&input).unwrap();
        assert_eq!(back, h);
        assert_eq!(body, b"body");
        assert!(CallHeader::split(&input[..10]).is_err());
    }

    #[test]
    fn malformed_batches_are_rejected() {
        // count says 1, no record follows
        assert_eq!(
            RecordBatch::from_bytes(vec![1, 0, 0, 0])
                .unwrap_err()
                .offset,
            0
        );
        // key length past the end
        assert!(RecordBatch::from_bytes(vec![1, 0, 0, 0, 9, 0, 0, 0, 1]).is_err());
        // trailing bytes
        let mut ok = RecordBatch::new().as_bytes().to_vec();
        ok.push(7);
        assert_eq!(
            RecordBatch::from_bytes(ok).unwrap_err().expected,
            "end of buffer (trailing bytes)"
        );
        // a huge count is refused without allocating
        assert!(RecordBatch::from_bytes(vec![0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn groups_and_reduced_round_trip() {
        let mut w = GroupsWriter::new();
        w.push(b"k1", [&b"1"[..], b"2"].into_iter());
        w.push(b"k2", [&b"3"[..]].into_iter());
        let body = w.into_bytes();
        let groups = read_groups(&body).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].values, vec![&b"1"[..], b"2"]);
        let out = write_reduced([&b"x"[..], b"y"].into_iter());
        assert_eq!(read_reduced(&out, 2).unwrap(), vec![&b"x"[..], b"y"]);
        assert!(read_reduced(&out, 3).is_err());
        // an empty group is malformed
        let mut bad = vec![1, 0, 0, 0];
        put_bytes(&mut bad, b"k");
        put_u32(&mut bad, 0);
        assert!(read_groups(&bad).is_err());
        assert!(super::groups(&bad).is_err());
    }

    #[test]
    fn in_place_readers_equal_the_list_readers() {
        let mut w = GroupsWriter::new();
        w.push(b"k1", [&b"1"[..], b"", b"333"].into_iter());
        w.push(b"", [&b"x"[..]].into_iter());
        let body = w.into_bytes();
        let lazy: Vec<(&[u8], Vec<&[u8]>)> = groups(&body)
            .unwrap()
            .map(|(k, vs)| (k, vs.collect()))
            .collect();
        let listed: Vec<(&[u8], Vec<&[u8]>)> = read_groups(&body)
            .unwrap()
            .into_iter()
            .map(|g| (g.key, g.values))
            .collect();
        assert_eq!(lazy, listed);
        assert_eq!(groups(&body).unwrap().len(), 2);
        for cut in 0..body.len() {
            assert_eq!(
                groups(&body[..cut]).unwrap_err(),
                read_groups(&body[..cut]).unwrap_err()
            );
        }

        let entries = [
            UpdateEntry {
                key: b"a",
                state: Some(b"s"),
                timed_out: true,
                values: vec![],
            },
            UpdateEntry {
                key: b"bb",
                state: None,
                timed_out: false,
                values: vec![b"1", b"22"],
            },
        ];
        let body = write_update_entries(&entries);
        let lazy: Vec<UpdateEntry> = update_entries(&body)
            .unwrap()
            .map(|e| UpdateEntry {
                key: e.key,
                state: e.state,
                timed_out: e.timed_out,
                values: e.values.collect(),
            })
            .collect();
        assert_eq!(lazy, entries);
        for cut in 0..body.len() {
            assert_eq!(
                update_entries(&body[..cut]).unwrap_err(),
                read_update_entries(&body[..cut]).unwrap_err()
            );
        }

        let batch: RecordBatch = [(&b"k"[..], &b"v"[..]), (b"", b"")].into_iter().collect();
        assert!(records(batch.as_bytes()).unwrap().eq(batch.iter()));
        let mut bad = batch.as_bytes().to_vec();
        bad.pop();
        assert_eq!(
            records(&bad).unwrap_err(),
            RecordBatch::from_bytes(bad).unwrap_err()
        );
    }

    #[test]
    fn groups_body_in_place_equals_groups_writer() {
        let groups: [(&[u8], &[&[u8]]); 3] = [
            (b"k1", &[b"1", b"22", b""]),
            (b"", &[b"x"]),
            (b"long key", &[b"333", b"4444"]),
        ];
        let mut w = GroupsWriter::new();
        for (k, vs) in groups {
            w.push(k, vs.iter().copied());
        }
        let shape = || {
            groups
                .iter()
                .map(|(k, vs)| (*k, vs.len(), vs.iter().map(|v| v.len()).sum::<usize>()))
        };
        let len = GroupsBody::len_of(shape().map(|(k, n, b)| (k.len(), n, b)));
        let mut buf = vec![0xAA; len];
        let mut body = GroupsBody::new(&mut buf, shape());
        // Values interleaved across groups, each group's in order.
        body.push(2, b"333");
        body.push(0, b"1");
        body.push(1, b"x");
        body.push(0, b"22");
        body.push(2, b"4444");
        body.push(0, b"");
        assert_eq!(buf, w.into_bytes());
        assert_eq!(
            GroupsBody::len_of(std::iter::empty()),
            GroupsWriter::new().into_bytes().len()
        );
    }

    #[test]
    fn copy_small_copies_every_length() {
        for n in 0..40usize {
            let src: Vec<u8> = (1..=n as u8).collect();
            let mut dst = vec![0u8; n];
            copy_small(&mut dst, &src);
            assert_eq!(dst, src, "length {n}");
        }
    }

    #[test]
    fn record_batch_from_slice_checks_and_copies() {
        let batch: RecordBatch = [(&b"a"[..], &b"1"[..]), (b"", b"hi")].into_iter().collect();
        assert_eq!(RecordBatch::from_slice(batch.as_bytes()).unwrap(), batch);
        assert!(RecordBatch::from_slice(&[1, 0, 0, 0]).is_err());
        let mut trailing = batch.as_bytes().to_vec();
        trailing.push(0);
        assert_eq!(
            RecordBatch::from_slice(&trailing).unwrap_err(),
            RecordBatch::from_bytes(trailing).unwrap_err()
        );
    }

    #[test]
    fn update_round_trip() {
        let entries = vec![
            UpdateEntry {
                key: b"a",
                state: Some(b"s"),
                timed_out: false,
                values: vec![b"1"],
            },
            UpdateEntry {
                key: b"b",
                state: None,
                timed_out: true,
                values: vec![],
            },
        ];
        let body = write_update_entries(&entries);
        assert_eq!(read_update_entries(&body).unwrap(), entries);
        let out = UpdateOutput {
            states: vec![Some(b"new".to_vec()), None],
            emitted: [(b"a", b"x")].into_iter().collect(),
        };
        let bytes = out.encode();
        assert_eq!(UpdateOutput::decode(&bytes, 2).unwrap(), out);
        assert!(UpdateOutput::decode(&bytes, 1).is_err());
    }

    #[test]
    fn canonical_values() {
        assert_eq!(canonical::encode_count(5), [5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(canonical::decode_count(&[5, 0, 0, 0, 0, 0, 0, 0]), Some(5));
        assert_eq!(canonical::decode_count(&[5]), None);
        let pair = canonical::encode_pair(Some(b"l"), None);
        assert_eq!(pair, vec![1, 1, 0, 0, 0, b'l', 0]);
        assert_eq!(
            canonical::decode_pair(&pair).unwrap(),
            (Some(&b"l"[..]), None)
        );
        let cg = canonical::encode_cogroup([&b"a"[..]].into_iter(), [].into_iter());
        assert_eq!(
            canonical::decode_cogroup(&cg).unwrap(),
            (vec![&b"a"[..]], vec![])
        );
    }

    #[test]
    fn export_names() {
        assert_eq!(
            FunctionKind::parse_export("map:split"),
            Some((FunctionKind::Map, "split"))
        );
        assert_eq!(
            FunctionKind::parse_export("reduce:sum"),
            Some((FunctionKind::Reduce, "sum"))
        );
        assert_eq!(FunctionKind::parse_export("map:"), None);
        assert_eq!(
            FunctionKind::parse_export("map__split"),
            Some((FunctionKind::Map, "split"))
        );
        assert_eq!(
            FunctionKind::parse_export("update__running_count"),
            Some((FunctionKind::Update, "running_count"))
        );
        assert_eq!(FunctionKind::parse_export("map__"), None);
        assert_eq!(FunctionKind::parse_export("__heap_base"), None);
        assert_eq!(FunctionKind::parse_export("weir_alloc"), None);
        assert_eq!(FunctionKind::Update.export_name("count"), "update:count");
    }

    #[test]
    fn runs_cover_the_batch_in_order_within_the_limit() {
        let batch: RecordBatch = (0..50u32)
            .map(|i| (vec![b'k'; (i % 7) as usize], vec![b'v'; (i % 5) as usize]))
            .collect::<Vec<_>>()
            .iter()
            .map(|(k, v)| (&k[..], &v[..]))
            .collect();
        for max in [0, 1, 9, 20, 64, 1 << 20] {
            let mut rebuilt = RecordBatch::new();
            let mut records = 0;
            for (n, bytes) in batch.runs(max) {
                assert!(n >= 1);
                assert!(
                    n == 1 || bytes.len() <= max,
                    "max {max}: {n} records in {} bytes",
                    bytes.len()
                );
                let mut framed = (n as u32).to_le_bytes().to_vec();
                framed.extend_from_slice(bytes);
                let run: Vec<_> = RecordBatch::view(&framed).unwrap().collect();
                assert_eq!(run.len(), n);
                for (k, v) in run {
                    rebuilt.push(k, v);
                }
                records += n;
            }
            assert_eq!(records, batch.len());
            assert_eq!(rebuilt, batch, "max {max}");
        }
        assert_eq!(RecordBatch::new().runs(10).count(), 0);
        assert!(RecordBatch::view(&[1, 0, 0, 0]).is_err());
    }
}
