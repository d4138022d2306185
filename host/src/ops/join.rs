//! `join`, `left_outer_join`, `right_outer_join`, `full_outer_join` and
//! `cogroup` of two keyed streams: both sides are shuffled by key into the
//! same partitions, then matched per key.

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use weir_abi::{canonical, RecordBatch};

use super::spec::{Arity, OpDesc, Stage, PARTITIONS};
use super::{shuffle, Inputs, OpContext, OpState, Operator, Partitions, Step, ValueKind};
use crate::error::EngineError;

/// The four joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Keys on both sides.
    Inner,
    /// Every left key.
    LeftOuter,
    /// Every right key.
    RightOuter,
    /// Every key of either side.
    FullOuter,
}

macro_rules! join_desc {
    ($name:ident, $op:literal, $spark:literal, $kind:expr, $result:literal) => {
        pub(crate) static $name: OpDesc = OpDesc {
            name: $op,
            spark: $spark,
            arity: Arity::Two,
            params: &[PARTITIONS],
            shuffles: true,
            windowed: false,
            stateful: false,
            in_pipelines: true,
            result: $result,
            build: |args| {
                let partitions = args.shuffle_partitions();
                Ok(vec![Stage::new(
                    Join {
                        kind: $kind,
                        partitions,
                    },
                    partitions,
                )])
            },
        };
    };
}

join_desc!(
    JOIN,
    "join",
    "join",
    Some(JoinKind::Inner),
    "`(key, (left, right))` for every matching pair"
);
join_desc!(
    LEFT_OUTER_JOIN,
    "left_outer_join",
    "leftOuterJoin",
    Some(JoinKind::LeftOuter),
    "as `join`, plus `(key, (left, None))`"
);
join_desc!(
    RIGHT_OUTER_JOIN,
    "right_outer_join",
    "rightOuterJoin",
    Some(JoinKind::RightOuter),
    "as `join`, plus `(key, (None, right))`"
);
join_desc!(
    FULL_OUTER_JOIN,
    "full_outer_join",
    "fullOuterJoin",
    Some(JoinKind::FullOuter),
    "both of the above"
);
join_desc!(
    COGROUP,
    "cogroup",
    "cogroup",
    None,
    "`(key, (left values, right values))`"
);

/// A join (`kind`) or, without a kind, `cogroup`.
#[derive(Debug, Clone)]
pub(crate) struct Join {
    kind: Option<JoinKind>,
    partitions: usize,
}

impl Operator for Join {
    fn desc(&self) -> &'static OpDesc {
        match self.kind {
            Some(JoinKind::Inner) => &JOIN,
            Some(JoinKind::LeftOuter) => &LEFT_OUTER_JOIN,
            Some(JoinKind::RightOuter) => &RIGHT_OUTER_JOIN,
            Some(JoinKind::FullOuter) => &FULL_OUTER_JOIN,
            None => &COGROUP,
        }
    }

    fn describe(&self) -> String {
        format!("partitions {}", self.partitions)
    }

    fn value_kind(&self, _: &[ValueKind]) -> ValueKind {
        match self.kind {
            Some(_) => ValueKind::Pair,
            None => ValueKind::CoGroup,
        }
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let (l, r) = (inputs.batches[0], inputs.batches[1]);
        match self.kind {
            Some(kind) => join(cx, kind, l, r, self.partitions),
            None => cogroup(cx, l, r, self.partitions),
        }
        .map(Step::output)
    }
}

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
pub(crate) fn join(
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
pub(crate) fn cogroup(
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
