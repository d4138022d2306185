//! Window operators. A window at time `t` covers the parent's batches with
//! times in `(t - length, t]` and is emitted at slide times only; its batch
//! time is the window end `t`, as in Spark.
//!
//! [`WindowBuffer`] keeps the parent's batches for `window`.
//! [`WindowedReduce`](crate::stream::graph::WindowedReduce) keeps each
//! batch's per-key reduction, shuffled into the output partitions; with an
//! inverse function the previous window's values are kept too, and the new
//! window is `previous ⊖ leaving batches ⊕ entering batches`, so the cost of
//! a slide does not grow with the window length.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use weir_abi::{canonical, RecordBatch};

use super::combine::combine_groups;
use super::{Groups, OpContext, Partitions};
use crate::error::EngineError;
use crate::stream::graph::{Combiner, WindowFilter, WindowedReduce};

/// The parent's recent batches, for `window`.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct WindowBuffer {
    /// `(batch time, partitions)`, oldest first.
    pub batches: VecDeque<(i64, Arc<Partitions>)>,
}

impl WindowBuffer {
    /// Adds the parent's batch at `t` and forgets batches older than any
    /// window ending at or after `t` needs.
    pub fn push(&mut self, t: i64, parts: Arc<Partitions>, length_ms: i64) {
        self.batches.push_back((t, parts));
        while self
            .batches
            .front()
            .is_some_and(|(bt, _)| *bt <= t - length_ms)
        {
            self.batches.pop_front();
        }
    }

    /// The window ending at `t`: partition `i` is partition `i` of every
    /// batch in the window, oldest first.
    pub fn window(&self, t: i64, length_ms: i64) -> Partitions {
        let inside: Vec<&Arc<Partitions>> = self
            .batches
            .iter()
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

/// What a windowed reduction keeps between batches.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct WindowedState {
    /// Per batch: its per-key reduction, in the output partitions.
    pub batches: VecDeque<(i64, Partitions)>,
    /// Inverse form: the last window's value of every key, per partition.
    pub current: Option<Vec<BTreeMap<Vec<u8>, Vec<u8>>>>,
    /// End of the last emitted window.
    pub last_output_ms: Option<i64>,
}

/// Values of every key over the batches with times in `(from, to]`, per
/// partition, oldest batch first.
fn groups_between(
    batches: &VecDeque<(i64, Partitions)>,
    from: i64,
    to: i64,
    p: usize,
) -> Groups<'_> {
    let mut g: Groups<'_> = IndexMap::with_hasher(FxBuildHasher);
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
    /// Ingests the parent's batch at `t` (reduced per key), and if `due`,
    /// returns the window ending at `t`.
    pub fn step(
        &mut self,
        ctx: &OpContext<'_>,
        spec: &WindowedReduce,
        t: i64,
        input: &[RecordBatch],
        due: bool,
    ) -> Result<Option<Partitions>, EngineError> {
        let reduced = super::reduce_by_key::apply(ctx, &spec.combine, input, spec.partitions)?;
        self.batches.push_back((t, reduced));
        // The inverse form still needs the batches leaving the next window.
        let keep_after = t - spec.length_ms - spec.slide_ms;
        while self
            .batches
            .front()
            .is_some_and(|(bt, _)| *bt <= keep_after)
        {
            self.batches.pop_front();
        }
        if !due {
            return Ok(None);
        }
        let out = match &spec.inverse {
            None => self.recompute(ctx, spec, t)?,
            Some(inverse) => self.incremental(ctx, spec, inverse, t)?,
        };
        self.last_output_ms = Some(t);
        Ok(Some(out))
    }

    fn recompute(
        &self,
        ctx: &OpContext<'_>,
        spec: &WindowedReduce,
        t: i64,
    ) -> Result<Partitions, EngineError> {
        let n = spec.partitions;
        let slots: Vec<usize> = (0..n).collect();
        ctx.par_map(&slots, |_, &p| {
            let groups = groups_between(&self.batches, t - spec.length_ms, t, p);
            let values = combine_groups(ctx, &spec.combine, &groups, p, n)?;
            Ok(groups
                .keys()
                .zip(&values)
                .map(|(k, v)| (*k, v.as_slice()))
                .collect::<RecordBatch>())
        })
    }

    fn incremental(
        &mut self,
        ctx: &OpContext<'_>,
        spec: &WindowedReduce,
        inverse: &Combiner,
        t: i64,
    ) -> Result<Partitions, EngineError> {
        let n = spec.partitions;
        let mut current = self
            .current
            .take()
            .unwrap_or_else(|| vec![BTreeMap::new(); n]);
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
        let batches = &self.batches;
        let result = ctx.par_map_mut(&(0..n).collect::<Vec<usize>>(), &mut current, |_, &p, values| {
            // Keys whose value changes in this slide.
            let mut changed: Vec<Vec<u8>> = Vec::new();
            // previous ⊖ leaving: one inverse call over [prev, l1, l2, ...].
            if let Some((from, to)) = leave {
                let leaving = groups_between(batches, from, to, p);
                let mut g: Groups<'_> = IndexMap::with_hasher(FxBuildHasher);
                for (k, vs) in &leaving {
                    // Like Spark, leaving values of a key without a previous
                    // value (already filtered out) are ignored.
                    if let Some(prev) = values.get(*k) {
                        let mut all = vec![prev.as_slice()];
                        all.extend(vs);
                        g.insert(k, all);
                    }
                }
                let reduced = combine_groups(ctx, inverse, &g, p, n)?;
                let updates: Vec<(Vec<u8>, Vec<u8>)> = g.keys().map(|k| k.to_vec()).zip(reduced).collect();
                for (k, v) in updates {
                    changed.push(k.clone());
                    values.insert(k, v);
                }
            }
            // ⊕ entering: one call over [value, e1, e2, ...] (or [e1, ...]).
            let entering = groups_between(batches, enter_from, t, p);
            let prev: Vec<Option<Vec<u8>>> = entering.keys().map(|k| values.get(*k).cloned()).collect();
            let mut g: Groups<'_> = IndexMap::with_hasher(FxBuildHasher);
            for ((k, vs), prev) in entering.iter().zip(&prev) {
                let mut all: Vec<&[u8]> = prev.iter().map(Vec::as_slice).collect();
                all.extend(vs);
                g.insert(k, all);
            }
            let combined = combine_groups(ctx, &spec.combine, &g, p, n)?;
            let updates: Vec<(Vec<u8>, Vec<u8>)> = g.keys().map(|k| k.to_vec()).zip(combined).collect();
            for (k, v) in updates {
                changed.push(k.clone());
                values.insert(k, v);
            }
            // The filter decides which keys stay. Only changed values are
            // looked at: an unchanged value passed the filter before (the
            // filter must depend on the key and value only), so a slide
            // costs the same however many keys the window holds.
            changed.sort_unstable();
            changed.dedup();
            match &spec.filter {
                None => {}
                Some(WindowFilter::NonZeroCount) => {
                    for k in &changed {
                        if values.get(k).is_some_and(|v| canonical::decode_count(v) == Some(0)) {
                            values.remove(k);
                        }
                    }
                }
                Some(WindowFilter::Plugin(func)) => {
                    let touched: RecordBatch = changed.iter().filter_map(|k| values.get(k).map(|v| (k.as_slice(), v.as_slice()))).collect();
                    let kept = if touched.is_empty() { touched } else { func.plugin.map(&func.function, &ctx.invocation(p, n), &touched)? };
                    let mut keep: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
                    for (k, v) in kept.iter() {
                        if changed.binary_search_by(|c| c.as_slice().cmp(k)).is_err() || !values.contains_key(k) {
                            return Err(ctx.contract(format!(
                                "filter `{}` returned keys that were not in the window; a filter may only drop entries",
                                func.label()
                            )));
                        }
                        keep.insert(k, v);
                    }
                    for k in &changed {
                        match keep.get(k.as_slice()) {
                            Some(v) => {
                                values.insert(k.clone(), v.to_vec());
                            }
                            None => {
                                values.remove(k);
                            }
                        }
                    }
                }
            }
            Ok(values.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect::<RecordBatch>())
        });
        self.current = Some(current);
        result
    }
}
