//! `window`: the union of the input's batches in `(t - length, t]`,
//! emitted at slide times only; its batch time is the window end `t`, as in
//! Spark. [`WindowBuffer`] keeps the input's recent batches.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_abi::RecordBatch;

use super::spec::{Arity, OpDesc, Stage, LENGTH, SLIDE};
use super::{Inputs, OpContext, OpState, Operator, Partitions, Snapshot, Staged, Step, ValueKind};
use crate::checkpoint::SnapshotError;
use crate::error::EngineError;

pub(crate) static WINDOW: OpDesc = OpDesc {
    name: "window",
    spark: "window",
    arity: Arity::One,
    params: &[LENGTH, SLIDE],
    shuffles: false,
    windowed: true,
    stateful: false,
    in_pipelines: true,
    result: "the input's batches in `(t − length, t]`, emitted every `slide`",
    build: |args| {
        let (length_ms, slide_ms) = args.window()?;
        let op = Window {
            length_ms,
            slide_ms,
        };
        Ok(vec![Stage::sliding(op, args.input(0).partitions, slide_ms)])
    },
};

/// `window`.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    length_ms: i64,
    slide_ms: i64,
}

/// Kind and version of a [`WindowBuffer`] snapshot.
const SNAPSHOT_KIND: &str = "window";
const SNAPSHOT_VERSION: u32 = 1;

/// The input's recent batches, for `window`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct WindowBuffer {
    /// `(batch time, partitions)`, oldest first.
    pub batches: VecDeque<(i64, Arc<Partitions>)>,
}

/// What a batch adds to a [`WindowBuffer`].
struct Push {
    t: i64,
    parts: Arc<Partitions>,
    length_ms: i64,
}

impl WindowBuffer {
    /// The window ending at `t` over the kept batches and `newest`:
    /// partition `i` is partition `i` of every batch in the window, oldest
    /// first.
    fn window(&self, newest: (i64, &Arc<Partitions>), length_ms: i64) -> Partitions {
        let t = newest.0;
        let inside: Vec<&Arc<Partitions>> = self
            .batches
            .iter()
            .map(|(bt, p)| (*bt, p))
            .chain([newest])
            .filter(|(bt, _)| *bt > t - length_ms && *bt <= t)
            .map(|(_, p)| p)
            .collect();
        let n = inside.iter().map(|p| p.len()).max().unwrap_or(0);
        (0..n)
            .map(|i| {
                let mut out = RecordBatch::new();
                for parts in &inside {
                    if let Some(b) = parts.get(i) {
                        out.extend(b);
                    }
                }
                out
            })
            .collect()
    }
}

/// Bytes of keys and values of a batch's partitions.
pub(crate) fn partitions_bytes(parts: &[RecordBatch]) -> u64 {
    parts.iter().map(|b| b.byte_len() as u64).sum()
}

impl OpState for WindowBuffer {
    fn commit(&mut self, staged: Staged) {
        let Ok(push) = staged.downcast::<Push>() else {
            return;
        };
        self.batches.push_back((push.t, push.parts));
        // Forget batches older than any window ending at or after `t` needs.
        while self
            .batches
            .front()
            .is_some_and(|(bt, _)| *bt <= push.t - push.length_ms)
        {
            self.batches.pop_front();
        }
    }

    fn bytes(&self) -> u64 {
        self.batches.iter().map(|(_, p)| partitions_bytes(p)).sum()
    }

    fn bytes_after(&self, staged: Option<&Staged>) -> u64 {
        let Some(push) = staged.and_then(|s| s.downcast_ref::<Push>()) else {
            return self.bytes();
        };
        self.batches
            .iter()
            .filter(|(bt, _)| *bt > push.t - push.length_ms)
            .map(|(_, p)| partitions_bytes(p))
            .sum::<u64>()
            + partitions_bytes(&push.parts)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::encode(SNAPSHOT_KIND, SNAPSHOT_VERSION, self)
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        *self = snapshot.decode(SNAPSHOT_KIND, SNAPSHOT_VERSION)?;
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Operator for Window {
    fn desc(&self) -> &'static OpDesc {
        &WINDOW
    }

    fn describe(&self) -> String {
        format!("length {} ms, slide {} ms", self.length_ms, self.slide_ms)
    }

    fn value_kind(&self, inputs: &[ValueKind]) -> ValueKind {
        inputs[0]
    }

    fn new_state(&self) -> Option<Box<dyn OpState>> {
        Some(Box::<WindowBuffer>::default())
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        state: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let buffer = state
            .and_then(|s| s.as_any().downcast_ref::<WindowBuffer>())
            .expect("a window has a window buffer");
        let (t, parts) = (cx.batch_time_ms, inputs.batches[0]);
        let out = inputs
            .due
            .then(|| Arc::new(buffer.window((t, parts), self.length_ms)));
        Ok(Step {
            out,
            staged: Some(Box::new(Push {
                t,
                parts: parts.clone(),
                length_ms: self.length_ms,
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(vals: &[&str]) -> Arc<Partitions> {
        Arc::new(
            vals.iter()
                .map(|v| [(&b""[..], v.as_bytes())].into_iter().collect())
                .collect(),
        )
    }

    fn values(p: &Partitions) -> Vec<Vec<String>> {
        p.iter()
            .map(|b| {
                b.iter()
                    .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_window_holds_the_batches_of_its_length_partition_by_partition() {
        let mut buf = WindowBuffer::default();
        for (t, vals) in [(1000, ["a0", "a1"]), (2000, ["b0", "b1"])] {
            buf.commit(Box::new(Push {
                t,
                parts: parts(&vals),
                length_ms: 2000,
            }));
        }
        // (1000, 3000]: batches 2000 and 3000; 1000 is out.
        let w = buf.window((3000, &parts(&["c0", "c1"])), 2000);
        assert_eq!(values(&w), vec![vec!["b0", "c0"], vec!["b1", "c1"]]);
        assert!(buf.bytes() > 0);
        // Committing 3000 forgets what no later window needs (t <= 1000).
        buf.commit(Box::new(Push {
            t: 3000,
            parts: parts(&["c0", "c1"]),
            length_ms: 2000,
        }));
        assert_eq!(
            buf.batches.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![2000, 3000]
        );
    }

    #[test]
    fn snapshots_round_trip_and_refuse_other_kinds() {
        let mut buf = WindowBuffer::default();
        buf.commit(Box::new(Push {
            t: 1000,
            parts: parts(&["x"]),
            length_ms: 5000,
        }));
        let snap = buf.snapshot();
        let mut back = WindowBuffer::default();
        back.restore(&snap).unwrap();
        assert_eq!(values(&back.batches[0].1), vec![vec!["x"]]);
        let mut other = snap.clone();
        other.version = SNAPSHOT_VERSION + 1;
        assert!(back.restore(&other).is_err(), "a newer version is refused");
    }
}
