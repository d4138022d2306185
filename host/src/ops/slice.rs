//! `slice`: the batches of a stream between two times, from the batches it
//! remembers (Spark's `DStream.slice` with `remember`). Library API only:
//! `stream.remember(duration)` passes the stream through unchanged and
//! keeps every committed batch of the last `duration`;
//! [`Slicer::slice`] returns those between two batch times. Remembered
//! batches are not checkpointed; after a recovery the replayed batches are
//! remembered again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::spec::{Arity, OpDesc, Param, ParamKind, Stage};
use super::window::partitions_bytes;
use super::{Inputs, OpContext, OpState, Operator, Partitions, Snapshot, Staged, Step, ValueKind};
use crate::checkpoint::SnapshotError;
use crate::error::EngineError;

pub(crate) static SLICE: OpDesc = OpDesc {
    name: "slice",
    spark: "slice",
    arity: Arity::One,
    params: &[Param::required(
        "remember",
        ParamKind::Duration,
        "how long batches are kept for `slice`",
    )],
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: false,
    result: "the input unchanged; `Slicer::slice(from, to)` returns its batches between two times",
    build: |args| {
        let op = Remember {
            remember_ms: args.duration_ms("remember").unwrap_or(0),
            slicer: Slicer::default(),
        };
        Ok(vec![Stage::new(op, args.input(0).partitions)])
    },
};

/// The batches a stream remembers, shared with the library user.
#[derive(Debug, Clone, Default)]
pub struct Slicer {
    batches: Arc<Mutex<VecDeque<(i64, Arc<Partitions>)>>>,
}

impl Slicer {
    /// The remembered batches with times in `[from_ms, to_ms]` (both
    /// included, as Spark's `slice`), oldest first.
    pub fn slice(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, Arc<Partitions>)> {
        self.batches
            .lock()
            .expect("slicer poisoned")
            .iter()
            .filter(|(t, _)| *t >= from_ms && *t <= to_ms)
            .cloned()
            .collect()
    }

    /// Times of the remembered batches, oldest first.
    pub fn times(&self) -> Vec<i64> {
        let batches = self.batches.lock().expect("slicer poisoned");
        batches.iter().map(|(t, _)| *t).collect()
    }
}

/// `remember`, the operator behind `slice`.
#[derive(Debug, Clone)]
pub(crate) struct Remember {
    remember_ms: i64,
    slicer: Slicer,
}

/// The state of [`Remember`]: the shared batches (not checkpointed).
#[derive(Debug)]
struct Remembered {
    remember_ms: i64,
    slicer: Slicer,
}

impl OpState for Remembered {
    fn commit(&mut self, staged: Staged) {
        let Ok(batch) = staged.downcast::<(i64, Arc<Partitions>)>() else {
            return;
        };
        let t = batch.0;
        let mut batches = self.slicer.batches.lock().expect("slicer poisoned");
        batches.push_back(*batch);
        while batches
            .front()
            .is_some_and(|(bt, _)| *bt <= t - self.remember_ms)
        {
            batches.pop_front();
        }
    }

    fn bytes(&self) -> u64 {
        let batches = self.slicer.batches.lock().expect("slicer poisoned");
        batches.iter().map(|(_, p)| partitions_bytes(p)).sum()
    }

    fn bytes_after(&self, staged: Option<&Staged>) -> u64 {
        let Some((t, parts)) = staged.and_then(|s| s.downcast_ref::<(i64, Arc<Partitions>)>())
        else {
            return self.bytes();
        };
        let batches = self.slicer.batches.lock().expect("slicer poisoned");
        batches
            .iter()
            .filter(|(bt, _)| *bt > t - self.remember_ms)
            .map(|(_, p)| partitions_bytes(p))
            .sum::<u64>()
            + partitions_bytes(parts)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::encode("remember", 1, &())
    }

    fn restore(&mut self, _: &Snapshot) -> Result<(), SnapshotError> {
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Operator for Remember {
    fn desc(&self) -> &'static OpDesc {
        &SLICE
    }

    fn describe(&self) -> String {
        format!("remember {} ms", self.remember_ms)
    }

    fn value_kind(&self, inputs: &[ValueKind]) -> ValueKind {
        inputs[0]
    }

    fn new_state(&self) -> Option<Box<dyn OpState>> {
        Some(Box::new(Remembered {
            remember_ms: self.remember_ms,
            slicer: self.slicer.clone(),
        }))
    }

    fn slicer(&self) -> Option<Slicer> {
        Some(self.slicer.clone())
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let parts = inputs.batches[0].clone();
        Ok(Step {
            out: Some(parts.clone()),
            staged: Some(Box::new((cx.batch_time_ms, parts))),
        })
    }
}
