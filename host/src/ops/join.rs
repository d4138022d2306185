//! `join`, `left_outer_join`, `right_outer_join`, `full_outer_join` and
//! `cogroup` of two keyed streams: both sides are shuffled by key into the
//! same partitions, then matched per key.

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use weir_abi::{canonical, RecordBatch};

use super::{shuffle, OpContext, Partitions};
use crate::error::EngineError;
use crate::stream::graph::JoinKind;

type Sides<'a> = IndexMap<&'a [u8], (Vec<&'a [u8]>, Vec<&'a [u8]>), FxBuildHasher>;

/// Per key (left keys first, in arrival order, then right-only keys): the
/// key's left values and right values.
fn cogroup_partition<'a>(left: &'a RecordBatch, right: &'a RecordBatch) -> Sides<'a> {
    let mut sides: Sides<'a> = IndexMap::default();
    for (k, v) in left.iter() {
        sides.entry(k).or_default().0.push(v);
    }
    for (k, v) in right.iter() {
        sides.entry(k).or_default().1.push(v);
    }
    sides
}

/// Shuffles both sides into the same `n` partitions and runs `per_key` on
/// every partition's keys (left keys first, then right-only keys).
fn per_partition(
    ctx: &OpContext<'_>,
    left: &[RecordBatch],
    right: &[RecordBatch],
    n: usize,
    per_key: impl Fn(&mut RecordBatch, &[u8], Vec<&[u8]>, Vec<&[u8]>) + Sync + Send,
) -> Result<Partitions, EngineError> {
    let (l, r) = (shuffle(ctx, left, n)?, shuffle(ctx, right, n)?);
    let pairs: Vec<(RecordBatch, RecordBatch)> = l.into_iter().zip(r).collect();
    ctx.par_map(&pairs, |_, (l, r)| {
        let mut out = RecordBatch::new();
        for (k, (ls, rs)) in cogroup_partition(l, r) {
            per_key(&mut out, k, ls, rs);
        }
        Ok(out)
    })
}

/// Joins: for each key, every (left, right) pair of its values, left-major.
/// Outer joins pair an unmatched side with "absent".
pub fn join(
    ctx: &OpContext<'_>,
    kind: JoinKind,
    left: &[RecordBatch],
    right: &[RecordBatch],
    n: usize,
) -> Result<Partitions, EngineError> {
    per_partition(ctx, left, right, n, |out, k, ls, rs| {
        match (ls.is_empty(), rs.is_empty()) {
            (false, false) => {
                for lv in &ls {
                    for rv in &rs {
                        out.push(k, &canonical::encode_pair(Some(lv), Some(rv)));
                    }
                }
            }
            (false, true) if matches!(kind, JoinKind::LeftOuter | JoinKind::FullOuter) => {
                for lv in &ls {
                    out.push(k, &canonical::encode_pair(Some(lv), None));
                }
            }
            (true, false) if matches!(kind, JoinKind::RightOuter | JoinKind::FullOuter) => {
                for rv in &rs {
                    out.push(k, &canonical::encode_pair(None, Some(rv)));
                }
            }
            _ => {}
        }
    })
}

/// Cogroup: one record per key of either side, value = (left list, right list).
pub fn cogroup(
    ctx: &OpContext<'_>,
    left: &[RecordBatch],
    right: &[RecordBatch],
    n: usize,
) -> Result<Partitions, EngineError> {
    per_partition(ctx, left, right, n, |out, k, ls, rs| {
        out.push(
            k,
            &canonical::encode_cogroup(ls.into_iter(), rs.into_iter()),
        )
    })
}
