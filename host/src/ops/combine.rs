//! Combining the values of each key: with a plugin reduce function (one
//! crossing per partition for every key that has more than one value) or
//! host-natively for canonical counts.

use weir_abi::{canonical, GroupsBody, GroupsWriter, RecordBatch};

use super::{group, Combiner, Groups, KeyIndex, OpContext};
use crate::error::EngineError;

pub(crate) fn count_of(ctx: &OpContext<'_>, v: &[u8]) -> Result<i64, EngineError> {
    canonical::decode_count(v).ok_or_else(|| {
        ctx.contract(format!(
            "expected an 8-byte i64 count, found {} bytes",
            v.len()
        ))
    })
}

/// One combined value per group, in group order. Groups with a single
/// value pass through without a call.
pub(crate) fn combine_groups(
    ctx: &OpContext<'_>,
    combiner: &Combiner,
    groups: &Groups<'_>,
    p: usize,
    n: usize,
) -> Result<Vec<Vec<u8>>, EngineError> {
    match combiner {
        Combiner::Plugin(func) => {
            let mut writer = GroupsWriter::new();
            for (k, vs) in groups.iter().filter(|(_, vs)| vs.len() > 1) {
                writer.push(k, vs.iter().copied());
            }
            let mut reduced = if writer.is_empty() {
                Vec::new()
            } else {
                func.plugin
                    .reduce(&func.function, &ctx.invocation(p, n), writer)?
            }
            .into_iter();
            Ok(groups
                .values()
                .map(|vs| {
                    if vs.len() > 1 {
                        reduced.next().expect("one value per multi-value group")
                    } else {
                        vs[0].to_vec()
                    }
                })
                .collect())
        }
        Combiner::SumI64 | Combiner::SubI64 => groups
            .values()
            .map(|vs| {
                let mut acc = count_of(ctx, vs[0])?;
                for v in &vs[1..] {
                    let x = count_of(ctx, v)?;
                    acc = if matches!(combiner, Combiner::SumI64) {
                        acc.wrapping_add(x)
                    } else {
                        acc.wrapping_sub(x)
                    };
                }
                Ok(canonical::encode_count(acc).to_vec())
            })
            .collect(),
    }
}

/// Combines every key of one partition: `(key, combined)` in
/// first-appearance order.
pub(crate) fn combine_partition(
    ctx: &OpContext<'_>,
    combiner: &Combiner,
    batch: &RecordBatch,
    p: usize,
    n: usize,
) -> Result<RecordBatch, EngineError> {
    let Combiner::Plugin(func) = combiner else {
        let groups = group(batch);
        let values = combine_groups(ctx, combiner, &groups, p, n)?;
        let mut out = RecordBatch::with_capacity(batch.byte_len() / 2);
        for (k, v) in groups.keys().zip(&values) {
            out.push(k, v);
        }
        return Ok(out);
    };
    // The same call as `combine_groups` makes — every key with more than
    // one value, in first-appearance order, values in arrival order — but
    // without collecting the values: the keys are indexed in one pass, and
    // a second pass writes every value straight into guest memory.
    let index = KeyIndex::new(batch);
    const SINGLE: u32 = u32::MAX;
    let mut multi: Vec<u32> = Vec::new();
    let slots: Vec<u32> = index
        .counts
        .iter()
        .enumerate()
        .map(|(g, &c)| {
            if c > 1 {
                multi.push(g as u32);
                (multi.len() - 1) as u32
            } else {
                SINGLE
            }
        })
        .collect();
    let shape = |g: &u32| {
        let g = *g as usize;
        (
            index.keys[g],
            index.counts[g] as usize,
            index.value_bytes[g],
        )
    };
    let reduced = if multi.is_empty() {
        Vec::new()
    } else {
        let body_len = GroupsBody::len_of(multi.iter().map(shape).map(|(k, c, b)| (k.len(), c, b)));
        func.plugin.reduce_with(
            &func.function,
            &ctx.invocation(p, n),
            multi.len(),
            body_len,
            |buf| {
                let mut body = GroupsBody::new(buf, multi.iter().map(shape));
                for ((_, v), &id) in batch.iter().zip(&index.ids) {
                    let slot = slots[id as usize];
                    if slot != SINGLE {
                        body.push(slot as usize, v);
                    }
                }
            },
        )?
    };
    let out_len: usize = index
        .keys
        .iter()
        .zip(&slots)
        .enumerate()
        .map(|(g, (k, &slot))| {
            8 + k.len()
                + if slot == SINGLE {
                    index.first[g].len()
                } else {
                    reduced[slot as usize].len()
                }
        })
        .sum();
    let mut out = RecordBatch::with_capacity(out_len);
    for (g, (k, &slot)) in index.keys.iter().zip(&slots).enumerate() {
        out.push(
            k,
            if slot == SINGLE {
                index.first[g]
            } else {
                &reduced[slot as usize]
            },
        );
    }
    Ok(out)
}
