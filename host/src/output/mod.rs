//! Outputs: where a stream's batches go. Every output is a function of the
//! batch time and the batch's partitions, so rewriting a batch (after a
//! recovery) writes the same thing.

use std::fmt::Write as _;
use std::sync::Arc;

use weir_abi::{canonical, RecordBatch};

use crate::error::EngineError;
use crate::ops::Partitions;
use crate::ops::ValueKind;

pub mod kafka;
pub mod print;
pub mod stats;
pub mod text_files;

/// A user callback run on every batch of a stream (Spark's `foreachRDD`).
pub type BatchFn = Arc<dyn Fn(i64, &Partitions) -> Result<(), EngineError> + Send + Sync>;

/// Writes one batch of one stream.
pub trait Output: Send {
    /// Handles the batch at `batch_time_ms`.
    fn write(&mut self, batch_time_ms: i64, parts: &Partitions) -> Result<(), EngineError>;

    /// Handles a batch recomputed during recovery, which may have been
    /// written before the crash. Outputs that are idempotent by batch time
    /// (files named by it) just write it again; others check.
    fn write_replayed(
        &mut self,
        batch_time_ms: i64,
        parts: &Partitions,
    ) -> Result<(), EngineError> {
        self.write(batch_time_ms, parts)
    }

    /// Handles one batch of a scaled-out job: each task's (input
    /// partition's) part, in partition order. Outputs that can tell tasks
    /// apart override it (a Kafka output writes them together and labels
    /// each record with its task); the default writes the parts one by one.
    fn write_tasks(
        &mut self,
        batch_time_ms: i64,
        tasks: &[TaskPart<'_>],
    ) -> Result<(), EngineError> {
        for t in tasks {
            if t.replayed {
                self.write_replayed(batch_time_ms, t.parts)?;
            } else {
                self.write(batch_time_ms, t.parts)?;
            }
        }
        Ok(())
    }
}

/// One task's part of a scaled-out job's batch.
#[derive(Debug, Clone, Copy)]
pub struct TaskPart<'a> {
    /// The task: its input partition.
    pub task: i32,
    /// Its partitions of the stream.
    pub parts: &'a Partitions,
    /// Recomputed from the changelog: it may be written in part already.
    pub replayed: bool,
}

/// Runs a [`BatchFn`].
pub struct ForEachBatch(pub BatchFn);

impl Output for ForEachBatch {
    fn write(&mut self, batch_time_ms: i64, parts: &Partitions) -> Result<(), EngineError> {
        (self.0)(batch_time_ms, parts)
    }
}

/// Renders bytes as text when they are printable UTF-8, as a number when
/// they are exactly 8 non-printable bytes (a canonical count), else as hex.
pub fn render_bytes(bytes: &[u8], out: &mut String) {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => out.push_str(s),
        _ => match canonical::decode_count(bytes) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => {
                out.push_str("0x");
                out.push_str(&hex::encode(bytes));
            }
        },
    }
}

fn render_list(items: &[&[u8]], out: &mut String) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render_bytes(item, out);
    }
    out.push(']');
}

fn render_option(v: Option<&[u8]>, out: &mut String) {
    match v {
        None => out.push_str("None"),
        Some(v) => {
            out.push_str("Some(");
            render_bytes(v, out);
            out.push(')');
        }
    }
}

/// Renders a value, decoding the structures the host makes.
pub fn render_value(kind: ValueKind, value: &[u8], out: &mut String) {
    match kind {
        ValueKind::Count => match canonical::decode_count(value) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => render_bytes(value, out),
        },
        ValueKind::List => match canonical::decode_list(value) {
            Ok(items) => render_list(&items, out),
            Err(_) => render_bytes(value, out),
        },
        ValueKind::Pair => match canonical::decode_pair(value) {
            Ok((l, r)) => {
                out.push('(');
                render_option(l, out);
                out.push(',');
                render_option(r, out);
                out.push(')');
            }
            Err(_) => render_bytes(value, out),
        },
        ValueKind::CoGroup => match canonical::decode_cogroup(value) {
            Ok((l, r)) => {
                out.push('(');
                render_list(&l, out);
                out.push(',');
                render_list(&r, out);
                out.push(')');
            }
            Err(_) => render_bytes(value, out),
        },
        ValueKind::Opaque => render_bytes(value, out),
    }
}

/// Renders a record as Spark prints elements: the value alone for unkeyed
/// records, `(key,value)` for keyed ones.
pub fn render_record(kind: ValueKind, key: &[u8], value: &[u8], out: &mut String) {
    if key.is_empty() {
        render_value(kind, value, out);
    } else {
        out.push('(');
        render_bytes(key, out);
        out.push(',');
        render_value(kind, value, out);
        out.push(')');
    }
}

/// Renders a whole partition, one record per line.
pub fn render_partition(kind: ValueKind, batch: &RecordBatch) -> String {
    let mut out = String::with_capacity(batch.byte_len());
    for (k, v) in batch.iter() {
        render_record(kind, k, v, &mut out);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: ValueKind, k: &[u8], v: &[u8]) -> String {
        let mut s = String::new();
        render_record(kind, k, v, &mut s);
        s
    }

    #[test]
    fn renders_like_spark() {
        assert_eq!(rec(ValueKind::Opaque, b"", b"a line"), "a line");
        assert_eq!(
            rec(ValueKind::Opaque, b"word", &3i64.to_le_bytes()),
            "(word,3)"
        );
        assert_eq!(
            rec(ValueKind::Count, b"w", &300i64.to_le_bytes()),
            "(w,300)"
        );
        assert_eq!(rec(ValueKind::Opaque, b"k", &[0xff, 0]), "(k,0xff00)");
        let list = canonical::encode_list([&b"a"[..], b"b"].into_iter());
        assert_eq!(rec(ValueKind::List, b"k", &list), "(k,[a,b])");
        let pair = canonical::encode_pair(Some(b"l"), None);
        assert_eq!(rec(ValueKind::Pair, b"k", &pair), "(k,(Some(l),None))");
        let cg = canonical::encode_cogroup([&b"x"[..]].into_iter(), [].into_iter());
        assert_eq!(rec(ValueKind::CoGroup, b"k", &cg), "(k,([x],[]))");
    }
}
