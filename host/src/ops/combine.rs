//! Combining the values of each key: with a plugin reduce function (one
//! crossing per partition for every key that has more than one value) or
//! host-natively for canonical counts.

use weir_abi::{canonical, GroupsBody, GroupsWriter, RecordBatch};

use super::{group, Combiner, FunctionRef, Groups, KeyIndex, OpContext};
use crate::error::EngineError;

/// The custom section in which a module may declare that some of its reduce
/// functions are a standard combine the host can run natively: lines
/// `reduce:NAME=checked_add_i64` (UTF-8, `\n`-separated; blank lines and
/// NUL padding ignored; the section may appear more than once). The only
/// combine defined is `checked_add_i64`: values are canonical 8-byte
/// little-endian `i64`s, a group's values are added left to right, and the
/// call fails on a value of another size or on overflow; a key with one
/// value keeps its bytes. `weir-sdk` writes the line for
/// `#[reduce(native = "checked_add_i64")]`. A module that declares it and
/// computes something else gets the declared combine (its own results
/// only: nothing another job sees changes); the declaration is part of the
/// module's bytes, so a run and its replay combine alike.
pub(crate) const NATIVE_SECTION: &str = "weir.native";

impl Combiner {
    /// How `func`'s values are combined: natively when its module declares
    /// it checked `i64` addition, else by calling it.
    pub(crate) fn of(func: &FunctionRef) -> Combiner {
        if declares_checked_add(func.plugin.bytes(), &func.function) {
            Combiner::CheckedAddI64(func.clone())
        } else {
            Combiner::Plugin(func.clone())
        }
    }
}

/// Whether `module` declares its `reduce:function` `checked_add_i64`.
fn declares_checked_add(module: &[u8], function: &str) -> bool {
    let line = format!("reduce:{function}=checked_add_i64");
    custom_sections(module, NATIVE_SECTION).any(|body| {
        body.split(|&b| b == b'\n')
            .any(|l| trim_nul(l).trim_ascii() == line.as_bytes())
    })
}

fn trim_nul(l: &[u8]) -> &[u8] {
    let start = l.iter().position(|&b| b != 0).unwrap_or(l.len());
    let end = l.iter().rposition(|&b| b != 0).map_or(start, |e| e + 1);
    &l[start..end.max(start)]
}

/// The bodies of the custom sections named `name` of a wasm module (none
/// if the bytes are not one: a plugin's module was validated when loaded).
fn custom_sections<'a>(module: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = module.get(8..).unwrap_or_default();
    std::iter::from_fn(move || {
        while let Some((&id, tail)) = rest.split_first() {
            let (size, tail) = leb_u32(tail)?;
            let section = tail.get(..size as usize)?;
            rest = &tail[size as usize..];
            if id != 0 {
                continue;
            }
            let (len, body) = leb_u32(section)?;
            let (n, body) = (body.get(..len as usize)?, &body[len as usize..]);
            if n == name.as_bytes() {
                return Some(body);
            }
        }
        None
    })
}

/// An unsigned LEB128 `u32` and what follows it.
fn leb_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// `a + b` of two canonical `i64` values, as a reduce function declared
/// `checked_add_i64` computes it (failing where it fails).
#[inline]
pub(crate) fn checked_add(
    ctx: &OpContext<'_>,
    func: &FunctionRef,
    a: &[u8],
    b: &[u8],
) -> Result<[u8; 8], EngineError> {
    let value = |v: &[u8]| {
        canonical::decode_count(v).ok_or_else(|| {
            ctx.contract(format!(
                "{} (declared checked_add_i64): expected an 8-byte i64 value, found {} bytes",
                func.label(),
                v.len()
            ))
        })
    };
    let (x, y) = (value(a)?, value(b)?);
    x.checked_add(y)
        .map(canonical::encode_count)
        .ok_or_else(|| {
            ctx.contract(format!(
                "{} (declared checked_add_i64): count overflow adding {x} and {y}",
                func.label()
            ))
        })
}

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
        Combiner::CheckedAddI64(func) => groups
            .values()
            .map(|vs| {
                let mut acc = vs[0].to_vec();
                for v in &vs[1..] {
                    acc = checked_add(ctx, func, &acc, v)?.to_vec();
                }
                Ok(acc)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A module of custom sections `(name, body)` only.
    fn module(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        for (name, body) in sections {
            let mut section = vec![name.len() as u8];
            section.extend_from_slice(name.as_bytes());
            section.extend_from_slice(body);
            m.push(0);
            // Section sizes as two-byte LEB128, as some linkers pad them.
            m.extend_from_slice(&[
                (section.len() as u8 & 0x7f) | 0x80,
                (section.len() >> 7) as u8,
            ]);
            m.extend_from_slice(&section);
        }
        m
    }

    #[test]
    fn reduce_functions_declared_checked_add_are_found_in_custom_sections() {
        let m = module(&[
            ("name", b"reduce:sum=checked_add_i64\n"),
            (NATIVE_SECTION, b"reduce:max=something_else\n\0\0"),
            (
                NATIVE_SECTION,
                b"reduce:sum=checked_add_i64\n\0\0reduce:add=checked_add_i64",
            ),
        ]);
        assert!(declares_checked_add(&m, "sum"));
        assert!(declares_checked_add(&m, "add"));
        assert!(!declares_checked_add(&m, "max"));
        assert!(!declares_checked_add(&m, "su"));
        // Only in a section of another name: not declared.
        let other = module(&[("name", b"reduce:sum=checked_add_i64\n")]);
        assert!(!declares_checked_add(&other, "sum"));
        // Truncated or not a module at all: nothing declared, no panic.
        for cut in 0..m.len() {
            let _ = declares_checked_add(&m[..cut], "sum");
        }
        assert!(!declares_checked_add(b"", "sum"));
    }
}
