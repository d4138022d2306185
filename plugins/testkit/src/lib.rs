//! Functions the engine tests use; each is tiny and its result easy to
//! compute independently in a test.

use weir_sdk::{map, reduce, update, State};

/// 1:1 — appends `!` to the value.
#[map]
pub fn tag(key: Vec<u8>, mut value: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    value.push(b'!');
    (key, value)
}

/// Filter — keeps records whose `i64` value is even.
#[map]
pub fn even(key: Vec<u8>, value: i64) -> Option<(Vec<u8>, i64)> {
    (value % 2 == 0).then_some((key, value))
}

/// Breaks map's contract: two records per input.
#[map]
pub fn twice(key: Vec<u8>, value: Vec<u8>) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(key.clone(), value.clone()), (key, value)]
}

/// Fails on the value `boom`.
#[map]
pub fn fail_on_boom(key: Vec<u8>, value: String) -> Result<(Vec<u8>, String), String> {
    if value == "boom" {
        Err("found a boom".into())
    } else {
        Ok((key, value))
    }
}

/// Panics on the value `panic` (the SDK reports the panic's message and
/// location to the host).
#[map]
pub fn panic_on_panic(key: Vec<u8>, value: String) -> (Vec<u8>, String) {
    if value == "panic" {
        panic!("asked to panic by {key:?}");
    }
    (key, value)
}

/// Value becomes `batch_time/partition/num_partitions`, from the call header.
#[map]
pub fn stamp(key: Vec<u8>, _value: Vec<u8>) -> (Vec<u8>, String) {
    (
        key,
        format!(
            "{}/{}/{}",
            weir_sdk::batch_time_ms(),
            weir_sdk::partition(),
            weir_sdk::num_partitions()
        ),
    )
}

/// 1:1 and deliberately slow: a fixed amount of work per record (about a
/// million simple steps), for backpressure tests.
#[map]
pub fn slow(key: Vec<u8>, value: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ value.len() as u64;
    for b in &value {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    for i in 0..1_000_000u64 {
        h = (h ^ (i & 0xff)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut value = value;
    // Keeps the loop from being optimised away; never true in practice.
    if h == 0 {
        value.push(b'!');
    }
    (key, value)
}

/// Associative but not commutative: shows the order values are combined in.
#[reduce]
pub fn concat(mut a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
    a.extend_from_slice(&b);
    a
}

/// Wrapping `i64` sum.
#[reduce]
pub fn sum(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// Running sum of `i64` values; emits `(key, total)` for keys with values.
#[update]
pub fn running_sum(
    key: Vec<u8>,
    values: Vec<i64>,
    state: &mut State<i64>,
) -> Option<(Vec<u8>, i64)> {
    if values.is_empty() {
        return None;
    }
    let total = state
        .get()
        .copied()
        .unwrap_or(0)
        .wrapping_add(values.iter().sum());
    state.set(total);
    Some((key, total))
}

/// Inverse of [`sum`].
#[reduce]
pub fn sub(a: i64, b: i64) -> i64 {
    a.wrapping_sub(b)
}

/// Filter: keeps non-zero `i64` values.
#[map]
pub fn nonzero(key: Vec<u8>, value: i64) -> Option<(Vec<u8>, i64)> {
    (value != 0).then_some((key, value))
}

/// Running sum that removes the key when the total drops below zero.
#[update]
pub fn bounded_sum(
    key: Vec<u8>,
    values: Vec<i64>,
    state: &mut State<i64>,
) -> Option<(Vec<u8>, i64)> {
    let total = state
        .get()
        .copied()
        .unwrap_or(0)
        .wrapping_add(values.iter().sum());
    if total < 0 {
        state.remove();
        None
    } else {
        state.set(total);
        (!values.is_empty()).then_some((key, total))
    }
}

/// Sessions: sums values per key; when the key times out, emits
/// `(key, -1 - total)` once (a negative marker carrying the total).
#[update]
pub fn session(key: Vec<u8>, values: Vec<i64>, state: &mut State<i64>) -> (Vec<u8>, i64) {
    let total = state.get().copied().unwrap_or(0);
    if state.is_timing_out() {
        return (key, -1 - total);
    }
    let total = total.wrapping_add(values.iter().sum());
    state.set(total);
    (key, total)
}
