//! `print`: Spark's `pprint` — a header with the batch time, then the first
//! `n` records, and `...` when there are more.

use std::io::Write;

use super::{render_record, Output};
use crate::error::EngineError;
use crate::ops::Partitions;
use crate::ops::ValueKind;

/// Standard output that makes room for a terminal status line: when
/// stdout is a terminal and the process's tracing subscriber draws progress
/// bars (`tracing-indicatif`, as `weir run` does), each write clears them,
/// writes and redraws them, so the two never share a line. Otherwise it is
/// plain stdout.
#[derive(Debug)]
pub struct Stdout {
    terminal: bool,
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout {
            terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        }
    }
}

impl Stdout {
    fn with<R>(&self, f: impl FnOnce(&mut dyn Write) -> R) -> R {
        match self
            .terminal
            .then(tracing_indicatif::writer::get_indicatif_stdout_writer)
            .flatten()
        {
            Some(mut bars) => f(&mut bars),
            None => f(&mut std::io::stdout().lock()),
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.with(|w| w.write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.with(|w| w.write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.with(|w| w.flush())
    }
}

/// Prints to a writer ([`Stdout`] by default).
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
