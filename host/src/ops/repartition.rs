//! `repartition(n)` and `union`.

use weir_abi::RecordBatch;

use super::Partitions;

/// Spreads records evenly over `n` partitions: the i-th record of the batch
/// (partitions read in order) goes to partition `i mod n`.
pub fn repartition(input: &[RecordBatch], n: usize) -> Partitions {
    let total: usize = input.iter().map(RecordBatch::byte_len).sum();
    let mut out: Partitions = (0..n)
        .map(|_| RecordBatch::with_capacity(total / n))
        .collect();
    let mut i = 0usize;
    for batch in input {
        for (k, v) in batch.iter() {
            out[i % n].push(k, v);
            i += 1;
        }
    }
    out
}

/// The partitions of every input, one after another.
pub fn union(inputs: &[&[RecordBatch]]) -> Partitions {
    inputs
        .iter()
        .flat_map(|parts| parts.iter().cloned())
        .collect()
}
