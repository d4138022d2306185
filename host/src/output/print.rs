//! `print`: Spark's `pprint` — a header with the batch time, then the first
//! `n` records, and `...` when there are more.

use std::io::Write;

use super::{render_record, Output};
use crate::error::EngineError;
use crate::ops::Partitions;
use crate::ops::ValueKind;

/// Prints to a writer (stdout by default).
pub struct Print {
    /// Records to show per batch.
    pub num: usize,
    /// How values render.
    pub kind: ValueKind,
    /// Where to write.
    pub out: Box<dyn Write + Send>,
}

impl Print {
    /// Formats a batch the way `print` shows it.
    pub fn format(num: usize, kind: ValueKind, batch_time_ms: i64, parts: &Partitions) -> String {
        let rule = "-------------------------------------------";
        let mut s = format!("{rule}\nTime: {batch_time_ms} ms\n{rule}\n");
        let mut records = parts.iter().flat_map(|p| p.iter());
        for (k, v) in records.by_ref().take(num) {
            render_record(kind, k, v, &mut s);
            s.push('\n');
        }
        if records.next().is_some() {
            s.push_str("...\n");
        }
        s.push('\n');
        s
    }
}

impl Output for Print {
    fn write(&mut self, batch_time_ms: i64, parts: &Partitions) -> Result<(), EngineError> {
        let text = Print::format(self.num, self.kind, batch_time_ms, parts);
        // A closed stdout (e.g. `| head`) must not fail the job.
        let _ = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush());
        Ok(())
    }
}
