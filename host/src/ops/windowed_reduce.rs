//! Windowed reductions: `reduce_by_key_and_window` and the operators built
//! on it, `count_by_window`, `reduce_by_window` and
//! `count_by_value_and_window`.
//!
//! [`WindowedState`] keeps each batch's per-key reduction, shuffled into
//! the output partitions; with an inverse function the previous window's
//! values are kept too, and the new window is
//! `previous ⊖ leaving batches ⊕ entering batches`, so the cost of a slide
//! does not grow with the window length.

use std::collections::{BTreeMap, VecDeque};

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use weir_abi::{canonical, FunctionKind, RecordBatch};

use super::combine::combine_groups;
use super::count::{Count, CountByValue, Reduce};
use super::spec::{
    function, Args, Arity, OpDesc, Param, ParamKind, Stage, LENGTH, PARTITIONS, SLIDE,
};
use super::window::partitions_bytes;
use super::{
    merge_sorted, Combiner, FunctionRef, Groups, Inputs, OpContext, OpState, Operator, Partitions,
    Snapshot, Staged, Step, ValueKind,
};
use crate::checkpoint::SnapshotError;
use crate::error::{BuildError, EngineError};

pub(crate) static REDUCE_BY_KEY_AND_WINDOW: OpDesc = OpDesc {
    name: "reduce_by_key_and_window",
    spark: "reduceByKeyAndWindow",
    arity: Arity::One,
    params: &[
        function(FunctionKind::Reduce),
        Param::optional(
            "inverse",
            ParamKind::SameFunction(FunctionKind::Reduce),
            "inverse of `function`: makes the window incremental",
        ),
        Param::optional(
            "filter",
            ParamKind::SameFunction(FunctionKind::Map),
            "drops window entries (incremental form only), e.g. counts that fell to zero",
        ),
        LENGTH,
        SLIDE,
        PARTITIONS,
    ],
    shuffles: true,
    windowed: true,
    stateful: false,
    in_pipelines: true,
    result: "`(key, combined)` over the window; with `inverse`, incremental",
    build: |args| {
        let (length_ms, slide_ms) = args.window()?;
        let inverse = args.function("inverse");
        if inverse.is_none() && args.function("filter").is_some() {
            return Err(BuildError::WrongInput {
                op: "reduce_by_key_and_window",
                input: args.input(0).name.clone(),
                requirement: "gets a `filter` without `inverse`: the filter applies to the incremental form only",
            });
        }
        let spec = WindowedReduce {
            combine: Combiner::Plugin(args.the_function()),
            inverse: inverse.map(Combiner::Plugin),
            filter: args.function("filter").map(WindowFilter::Plugin),
            length_ms,
            slide_ms,
            partitions: args.shuffle_partitions(),
            counts: false,
        };
        Ok(vec![spec.stage()])
    },
};

pub(crate) static COUNT_BY_WINDOW: OpDesc = OpDesc {
    name: "count_by_window",
    spark: "countByWindow",
    arity: Arity::One,
    params: &[LENGTH, SLIDE],
    shuffles: false,
    windowed: true,
    stateful: false,
    in_pipelines: true,
    result: "one record: records in the window (`i64`), incremental; nothing until the first record arrives, as in Spark",
    build: |args| {
        let (length_ms, slide_ms) = args.window()?;
        let spec = WindowedReduce {
            combine: Combiner::SumI64,
            inverse: Some(Combiner::SubI64),
            filter: None,
            length_ms,
            slide_ms,
            partitions: 1,
            counts: true,
        };
        Ok(vec![Stage::new(Count { skip_empty: true }, 1), spec.stage()])
    },
};

pub(crate) static REDUCE_BY_WINDOW: OpDesc = OpDesc {
    name: "reduce_by_window",
    spark: "reduceByWindow",
    arity: Arity::One,
    params: &[function(FunctionKind::Reduce), LENGTH, SLIDE],
    shuffles: false,
    windowed: true,
    stateful: false,
    in_pipelines: true,
    result: "one record: all values in the window combined",
    build: |args| {
        let (length_ms, slide_ms) = args.window()?;
        let func = args.the_function();
        let spec = WindowedReduce {
            combine: Combiner::Plugin(func.clone()),
            inverse: None,
            filter: None,
            length_ms,
            slide_ms,
            partitions: 1,
            counts: false,
        };
        Ok(vec![Stage::new(Reduce { func }, 1), spec.stage()])
    },
};

pub(crate) static COUNT_BY_VALUE_AND_WINDOW: OpDesc = OpDesc {
    name: "count_by_value_and_window",
    spark: "countByValueAndWindow",
    arity: Arity::One,
    params: &[LENGTH, SLIDE, PARTITIONS],
    shuffles: true,
    windowed: true,
    stateful: false,
    in_pipelines: true,
    result: "`(element, count)` over the window, incremental, zero counts dropped",
    build: |args: &Args| {
        let (length_ms, slide_ms) = args.window()?;
        let partitions = args.shuffle_partitions();
        let spec = WindowedReduce {
            combine: Combiner::SumI64,
            inverse: Some(Combiner::SubI64),
            filter: Some(WindowFilter::NonZeroCount),
            length_ms,
            slide_ms,
            partitions,
            counts: true,
        };
        Ok(vec![
            Stage::new(CountByValue { partitions }, partitions),
            spec.stage(),
        ])
    },
};

/// Which window entries survive (`reduce_by_key_and_window`'s filter).
#[derive(Debug, Clone)]
pub(crate) enum WindowFilter {
    /// A plugin map function used as a filter.
    Plugin(FunctionRef),
    /// Drop canonical counts equal to zero.
    NonZeroCount,
}

/// A windowed reduction: the stage all four operators end with.
#[derive(Debug, Clone)]
pub(crate) struct WindowedReduce {
    /// Combines values.
    pub combine: Combiner,
    /// Removes values that leave the window; `None` recomputes each window.
    pub inverse: Option<Combiner>,
    /// Drops entries from the window state (inverse form only).
    pub filter: Option<WindowFilter>,
    /// Window length.
    pub length_ms: i64,
    /// Slide.
    pub slide_ms: i64,
    /// Output partitions.
    pub partitions: usize,
    /// Values are host-made counts.
    pub counts: bool,
}

impl WindowedReduce {
    fn stage(self) -> Stage {
        let (partitions, slide) = (self.partitions, self.slide_ms);
        Stage::sliding(self, partitions, slide)
    }

    fn plugin_combiners(&self) -> impl Iterator<Item = &FunctionRef> {
        [Some(&self.combine), self.inverse.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|c| match c {
                Combiner::Plugin(f) => Some(f),
                _ => None,
            })
    }
}

impl Operator for WindowedReduce {
    fn desc(&self) -> &'static OpDesc {
        &REDUCE_BY_KEY_AND_WINDOW
    }

    fn describe(&self) -> String {
        format!(
            "{}, inverse {}, filter {}, length {} ms, slide {} ms, partitions {}",
            self.combine.label(),
            self.inverse.as_ref().map_or("none".into(), Combiner::label),
            match &self.filter {
                None => "none".into(),
                Some(WindowFilter::NonZeroCount) => "non-zero".into(),
                Some(WindowFilter::Plugin(f)) => f.label(),
            },
            self.length_ms,
            self.slide_ms,
            self.partitions
        )
    }

    fn value_kind(&self, _: &[ValueKind]) -> ValueKind {
        if self.counts {
            ValueKind::Count
        } else {
            ValueKind::Opaque
        }
    }

    fn functions_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        let mut out = Vec::new();
        if let Combiner::Plugin(f) = &mut self.combine {
            out.push((f, FunctionKind::Reduce));
        }
        if let Some(Combiner::Plugin(f)) = &mut self.inverse {
            out.push((f, FunctionKind::Reduce));
        }
        if let Some(WindowFilter::Plugin(f)) = &mut self.filter {
            out.push((f, FunctionKind::Map));
        }
        out
    }

    fn holds_unmigratable_values_of(&self, name: &str) -> bool {
        self.plugin_combiners().any(|f| &**f.plugin.name() == name)
    }

    fn new_state(&self) -> Option<Box<dyn OpState>> {
        Some(Box::<WindowedState>::default())
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        state: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let state = state
            .and_then(|s| s.as_any().downcast_ref::<WindowedState>())
            .expect("a windowed reduction has a windowed state");
        state.step(cx, self, cx.batch_time_ms, inputs)
    }

    fn fuses_map(&self) -> bool {
        true
    }
}

/// Kind and version of a [`WindowedState`] snapshot.
const SNAPSHOT_KIND: &str = "windowed_reduce";
const SNAPSHOT_VERSION: u32 = 1;

/// What a windowed reduction keeps between batches.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct WindowedState {
    /// Per batch: its per-key reduction, in the output partitions.
    pub batches: VecDeque<(i64, Partitions)>,
    /// Inverse form: the last window's value of every key, per partition.
    pub current: Option<Vec<BTreeMap<Vec<u8>, Vec<u8>>>>,
    /// End of the last emitted window.
    pub last_output_ms: Option<i64>,
    /// Bytes of keys and values in `current`, kept up to date by `commit`
    /// (reported every batch, so never recounted).
    #[serde(skip)]
    current_bytes: u64,
}

/// What one batch changes in a [`WindowedState`].
struct WindowStaged {
    t: i64,
    reduced: Partitions,
    /// Batches at or before this time are no longer needed.
    keep_after: i64,
    /// Inverse form, when a window was emitted: per partition, the keys
    /// whose window value changed (`None`: removed).
    changes: Option<Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>>,
    /// Set when a window was emitted.
    output_ms: Option<i64>,
}

/// A partition's window values with this slide's changes laid over them.
struct Overlay<'a> {
    base: Option<&'a BTreeMap<Vec<u8>, Vec<u8>>>,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Overlay<'_> {
    fn get(&self, k: &[u8]) -> Option<&[u8]> {
        match self.changes.get(k) {
            Some(v) => v.as_deref(),
            None => self.base.and_then(|b| b.get(k)).map(Vec::as_slice),
        }
    }

    fn set(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.changes.insert(k, v);
    }

    /// The values after the changes, in key order.
    fn merged(&self) -> RecordBatch {
        merge_sorted(
            self.base
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_slice(), v)),
            self.changes.iter().map(|(k, v)| (k.as_slice(), v.as_ref())),
            |v| v.as_slice(),
        )
    }
}

/// Values of every key over the batches with times in `(from, to]`, per
/// partition, oldest batch first.
fn groups_between<'a>(
    batches: &[(i64, &'a Partitions)],
    from: i64,
    to: i64,
    p: usize,
) -> Groups<'a> {
    let mut g: Groups<'a> = IndexMap::with_hasher(FxBuildHasher);
    for (t, parts) in batches {
        if *t > from && *t <= to {
            for (k, v) in parts[p].iter() {
                g.entry(k).or_default().push(v);
            }
        }
    }
    g
}

impl WindowedState {
    /// Reduces the input's batch at `t` per key and, if `due`, computes the
    /// window ending at `t`; the state changes are staged.
    fn step(
        &self,
        ctx: &OpContext<'_>,
        spec: &WindowedReduce,
        t: i64,
        inputs: &Inputs<'_>,
    ) -> Result<Step, EngineError> {
        let reduced = inputs.reduce_by_key(ctx, &spec.combine, spec.partitions)?;
        let due = inputs.due;
        // The inverse form still needs the batches leaving the next window.
        let keep_after = t - spec.length_ms - spec.slide_ms;
        let mut staged = WindowStaged {
            t,
            reduced,
            keep_after,
            changes: None,
            output_ms: None,
        };
        if !due {
            return Ok(Step {
                out: None,
                staged: Some(Box::new(staged)),
            });
        }
        let batches: Vec<(i64, &Partitions)> = self
            .batches
            .iter()
            .map(|(bt, p)| (*bt, p))
            .chain([(t, &staged.reduced)])
            .collect();
        let out = match &spec.inverse {
            None => recompute(ctx, spec, &batches, t)?,
            Some(inverse) => {
                let (out, changes) = self.incremental(ctx, spec, inverse, &batches, t)?;
                staged.changes = Some(changes);
                out
            }
        };
        staged.output_ms = Some(t);
        Ok(Step {
            out: Some(std::sync::Arc::new(out)),
            staged: Some(Box::new(staged)),
        })
    }

    #[allow(clippy::type_complexity)]
    fn incremental(
        &self,
        ctx: &OpContext<'_>,
        spec: &WindowedReduce,
        inverse: &Combiner,
        batches: &[(i64, &Partitions)],
        t: i64,
    ) -> Result<(Partitions, Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>), EngineError> {
        let n = spec.partitions;
        let window_start = t - spec.length_ms;
        let (enter_from, leave) = match self.last_output_ms {
            // The previous window was (prev - length, prev]; what of it is
            // before this window's start leaves (all of it when the slide
            // is longer than the window).
            Some(prev) => (
                prev.max(window_start),
                Some((prev - spec.length_ms, prev.min(window_start))),
            ),
            None => (window_start, None),
        };
        let slots: Vec<usize> = (0..n).collect();
        let results = ctx.par_map(&slots, |_, &p| {
            let mut values = Overlay {
                base: self.current.as_ref().and_then(|c| c.get(p)),
                changes: BTreeMap::new(),
            };
            // previous ⊖ leaving: one inverse call over [prev, l1, l2, ...].
            if let Some((from, to)) = leave {
                let leaving = groups_between(batches, from, to, p);
                let mut g: Groups<'_> = IndexMap::with_hasher(FxBuildHasher);
                for (k, vs) in &leaving {
                    // Like Spark, leaving values of a key without a previous
                    // value (already filtered out) are ignored.
                    if let Some(prev) = values.get(k) {
                        let mut all = vec![prev];
                        all.extend(vs);
                        g.insert(k, all);
                    }
                }
                let reduced = combine_groups(ctx, inverse, &g, p, n)?;
                let updates: Vec<(Vec<u8>, Vec<u8>)> =
                    g.keys().map(|k| k.to_vec()).zip(reduced).collect();
                for (k, v) in updates {
                    values.set(k, Some(v));
                }
            }
            // ⊕ entering: one call over [value, e1, e2, ...] (or [e1, ...]).
            let entering = groups_between(batches, enter_from, t, p);
            let prev: Vec<Option<Vec<u8>>> = entering
                .keys()
                .map(|k| values.get(k).map(<[u8]>::to_vec))
                .collect();
            let mut g: Groups<'_> = IndexMap::with_hasher(FxBuildHasher);
            for ((k, vs), prev) in entering.iter().zip(&prev) {
                let mut all: Vec<&[u8]> = prev.iter().map(Vec::as_slice).collect();
                all.extend(vs);
                g.insert(k, all);
            }
            let combined = combine_groups(ctx, &spec.combine, &g, p, n)?;
            let updates: Vec<(Vec<u8>, Vec<u8>)> =
                g.keys().map(|k| k.to_vec()).zip(combined).collect();
            for (k, v) in updates {
                values.set(k, Some(v));
            }
            // The filter decides which keys stay. Only changed values are
            // looked at: an unchanged value passed the filter before (the
            // filter must depend on the key and value only), so a slide
            // costs the same however many keys the window holds.
            let changed: Vec<Vec<u8>> = values.changes.keys().cloned().collect();
            match &spec.filter {
                None => {}
                Some(WindowFilter::NonZeroCount) => {
                    for k in changed {
                        if values
                            .get(&k)
                            .is_some_and(|v| canonical::decode_count(v) == Some(0))
                        {
                            values.set(k, None);
                        }
                    }
                }
                Some(WindowFilter::Plugin(func)) => {
                    let touched: RecordBatch = changed
                        .iter()
                        .filter_map(|k| values.get(k).map(|v| (k.as_slice(), v)))
                        .collect();
                    let kept = if touched.is_empty() {
                        touched
                    } else {
                        func.plugin
                            .map(&func.function, &ctx.invocation(p, n), &touched)?
                    };
                    let mut keep: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
                    for (k, v) in kept.iter() {
                        if changed.binary_search_by(|c| c.as_slice().cmp(k)).is_err()
                            || values.get(k).is_none()
                        {
                            return Err(ctx.contract(format!(
                                "filter `{}` returned keys that were not in the window; a filter may only drop entries",
                                func.label()
                            )));
                        }
                        keep.insert(k, v);
                    }
                    for k in changed {
                        let v = keep.get(k.as_slice()).map(|v| v.to_vec());
                        values.set(k, v);
                    }
                }
            }
            Ok((values.merged(), values.changes))
        })?;
        Ok(results.into_iter().unzip())
    }
}

/// The window ending at `t`, recomputed from the per-batch reductions.
fn recompute(
    ctx: &OpContext<'_>,
    spec: &WindowedReduce,
    batches: &[(i64, &Partitions)],
    t: i64,
) -> Result<Partitions, EngineError> {
    let n = spec.partitions;
    let slots: Vec<usize> = (0..n).collect();
    ctx.par_map(&slots, |_, &p| {
        let groups = groups_between(batches, t - spec.length_ms, t, p);
        let values = combine_groups(ctx, &spec.combine, &groups, p, n)?;
        Ok(groups
            .keys()
            .zip(&values)
            .map(|(k, v)| (*k, v.as_slice()))
            .collect::<RecordBatch>())
    })
}

impl WindowedState {
    fn current_bytes(&self) -> u64 {
        debug_assert_eq!(self.current_bytes, self.count_current_bytes());
        self.current_bytes
    }

    fn count_current_bytes(&self) -> u64 {
        self.current
            .iter()
            .flatten()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

impl OpState for WindowedState {
    fn commit(&mut self, staged: Staged) {
        let Ok(staged) = staged.downcast::<WindowStaged>() else {
            return;
        };
        let WindowStaged {
            t,
            reduced,
            keep_after,
            changes,
            output_ms,
        } = *staged;
        let n = reduced.len();
        self.batches.push_back((t, reduced));
        while self
            .batches
            .front()
            .is_some_and(|(bt, _)| *bt <= keep_after)
        {
            self.batches.pop_front();
        }
        if let Some(changes) = changes {
            let current = self.current.get_or_insert_with(|| vec![BTreeMap::new(); n]);
            let size = |k: &[u8], v: &[u8]| (k.len() + v.len()) as u64;
            for (values, changes) in current.iter_mut().zip(changes) {
                for (k, v) in changes {
                    self.current_bytes += v.as_deref().map_or(0, |v| size(&k, v));
                    let old = match v {
                        Some(v) => values.insert(k.clone(), v),
                        None => values.remove(&k),
                    };
                    self.current_bytes -= old.map_or(0, |v| size(&k, &v));
                }
            }
        }
        if output_ms.is_some() {
            self.last_output_ms = output_ms;
        }
    }

    fn bytes(&self) -> u64 {
        let batches: u64 = self.batches.iter().map(|(_, p)| partitions_bytes(p)).sum();
        batches + self.current_bytes()
    }

    fn keys(&self) -> Option<u64> {
        // The inverse form keeps the window's value per key.
        let current = self.current.as_ref()?;
        Some(current.iter().map(|m| m.len() as u64).sum())
    }

    fn bytes_after(&self, staged: Option<&Staged>) -> u64 {
        let Some(s) = staged.and_then(|s| s.downcast_ref::<WindowStaged>()) else {
            return self.bytes();
        };
        let batches: u64 = self
            .batches
            .iter()
            .filter(|(bt, _)| *bt > s.keep_after)
            .map(|(_, p)| partitions_bytes(p))
            .sum::<u64>()
            + partitions_bytes(&s.reduced);
        let mut delta = 0i64;
        for (p, changes) in s.changes.iter().flatten().enumerate() {
            let values = self.current.as_ref().and_then(|c| c.get(p));
            for (k, v) in changes {
                delta += v.as_ref().map_or(0, |v| (k.len() + v.len()) as i64);
                delta -= values
                    .and_then(|m| m.get(k))
                    .map_or(0, |v| (k.len() + v.len()) as i64);
            }
        }
        batches + self.current_bytes().saturating_add_signed(delta)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::encode(SNAPSHOT_KIND, SNAPSHOT_VERSION, self)
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        *self = snapshot.decode(SNAPSHOT_KIND, SNAPSHOT_VERSION)?;
        self.current_bytes = self.count_current_bytes();
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_merges_changes_in_key_order() {
        let base: BTreeMap<Vec<u8>, Vec<u8>> = [("b", "1"), ("d", "2"), ("f", "3")]
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let mut o = Overlay {
            base: Some(&base),
            changes: BTreeMap::new(),
        };
        o.set(b"a".to_vec(), Some(b"new".to_vec()));
        o.set(b"d".to_vec(), None);
        o.set(b"f".to_vec(), Some(b"30".to_vec()));
        o.set(b"g".to_vec(), None);
        assert_eq!(o.get(b"d"), None);
        assert_eq!(o.get(b"b"), Some(&b"1"[..]));
        let merged: Vec<(Vec<u8>, Vec<u8>)> = o
            .merged()
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = [("a", "new"), ("b", "1"), ("f", "30")]
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(merged, want);
        assert_eq!(base.len(), 3, "the base is untouched until commit");
    }
}
