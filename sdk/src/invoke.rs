//! The byte-level drivers behind the attributes: one whole call, input
//! buffer (header + body) in, output buffer or error message out.
//!
//! They run natively too, so a plugin's test can feed hand-built bytes
//! through exactly the code the wasm export runs:
//!
//! ```
//! use weir_sdk::{abi::{CallHeader, RecordBatch}, invoke};
//! fn upper(line: String) -> (String, String) { (String::new(), line.to_uppercase()) }
//!
//! let mut input = CallHeader::default().encode().to_vec();
//! input.extend_from_slice([(&b""[..], &b"hi"[..])].into_iter().collect::<RecordBatch>().as_bytes());
//! let out = invoke::map_values(&input, upper).unwrap();
//! let out = RecordBatch::from_bytes(out).unwrap();
//! assert_eq!(out.iter().next().unwrap().1, b"HI");
//! ```

use weir_abi::{
    put_u32, read_groups, read_update_entries, write_prefixed, CallHeader, FrameError, Reader,
    RecordBatch, UpdateOutput,
};

use crate::{Decode, Emit, Encode, Reduced, State};

fn body(input: &[u8]) -> Result<&[u8], String> {
    let (header, body) = CallHeader::split(input).map_err(|e| format!("bad call input: {e}"))?;
    crate::set_header(header);
    Ok(body)
}

/// The records of a map body, read where they lie. The whole batch is
/// checked first (as `RecordBatch::from_bytes` would), so a malformed batch
/// fails before the function sees any record.
fn records(body: &[u8]) -> Result<impl Iterator<Item = (&[u8], &[u8])>, String> {
    let check = |body| -> Result<usize, FrameError> {
        let mut r = Reader::new(body);
        let n = r.count(8, "record count")?;
        for _ in 0..n {
            r.bytes("record key")?;
            r.bytes("record value")?;
        }
        r.finish()?;
        Ok(n)
    };
    let n = check(body).map_err(|e| format!("bad record batch from host: {e}"))?;
    let mut rest = &body[4..];
    let mut field = move || {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        bytes
    };
    Ok((0..n).map(move |_| (field(), field())))
}

/// A map call where the function takes key and value.
pub fn map<K: Decode, V: Decode, R: Emit>(
    input: &[u8],
    f: impl Fn(K, V) -> R,
) -> Result<Vec<u8>, String> {
    let body = body(input)?;
    let mut out = RecordBatch::with_capacity(body.len());
    for (i, (k, v)) in records(body)?.enumerate() {
        let k = K::decode(k).map_err(|e| format!("record {i}: key: {e}"))?;
        let v = V::decode(v).map_err(|e| format!("record {i}: value: {e}"))?;
        f(k, v).emit_into(&mut out)?;
    }
    Ok(out.into_bytes())
}

/// A map call where the function takes only the value (the key is ignored).
pub fn map_values<V: Decode, R: Emit>(input: &[u8], f: impl Fn(V) -> R) -> Result<Vec<u8>, String> {
    let body = body(input)?;
    let mut out = RecordBatch::with_capacity(body.len());
    for (i, (_, v)) in records(body)?.enumerate() {
        let v = V::decode(v).map_err(|e| format!("record {i}: value: {e}"))?;
        f(v).emit_into(&mut out)?;
    }
    Ok(out.into_bytes())
}

/// A reduce call: folds every group's values left to right with `f`.
pub fn reduce<V: Decode + Encode, R: Reduced<V>>(
    input: &[u8],
    f: impl Fn(V, V) -> R,
) -> Result<Vec<u8>, String> {
    let groups =
        read_groups(body(input)?).map_err(|e| format!("bad reduce input from host: {e}"))?;
    // The output (`u32 count`, then one byte string per group) is written
    // directly, without a buffer per value.
    let mut out = Vec::new();
    put_u32(
        &mut out,
        u32::try_from(groups.len()).expect("too many groups"),
    );
    for (i, g) in groups.iter().enumerate() {
        let mut values = g
            .values
            .iter()
            .map(|v| V::decode(v).map_err(|e| format!("group {i}: value: {e}")));
        let first = values
            .next()
            .ok_or_else(|| format!("group {i} has no values"))??;
        let acc = values.try_fold(first, |acc, v| f(acc, v?).into_value())?;
        write_prefixed(&mut out, |b| acc.encode(b));
    }
    Ok(out)
}

/// An update call: runs `f` once per entry with the key's new values and
/// state, and collects the new states and emitted records.
pub fn update<K: Decode, V: Decode, S: Decode + Encode, R: Emit>(
    input: &[u8],
    f: impl Fn(K, Vec<V>, &mut State<S>) -> R,
) -> Result<Vec<u8>, String> {
    let entries = read_update_entries(body(input)?)
        .map_err(|e| format!("bad update input from host: {e}"))?;
    let mut out = UpdateOutput {
        states: Vec::with_capacity(entries.len()),
        emitted: RecordBatch::new(),
    };
    for (i, e) in entries.iter().enumerate() {
        let key = K::decode(e.key).map_err(|err| format!("entry {i}: key: {err}"))?;
        let values = e
            .values
            .iter()
            .map(|v| V::decode(v))
            .collect::<Result<Vec<V>, _>>()
            .map_err(|err| format!("entry {i}: value: {err}"))?;
        let prev = e
            .state
            .map(S::decode)
            .transpose()
            .map_err(|err| format!("entry {i}: state: {err}"))?;
        let mut state = State::new(prev, e.timed_out);
        f(key, values, &mut state).emit_into(&mut out.emitted)?;
        out.states.push(state.into_inner().map(|s| {
            let mut buf = Vec::new();
            s.encode(&mut buf);
            buf
        }));
    }
    Ok(out.encode())
}

/// Runs a driver on the input the host placed in guest memory and writes
/// the result area. Returns the status code.
///
/// Runs a driver on the input the host placed in guest memory and writes
/// the result area (`docs/abi.md` §2); returns the status. Public for other
/// front ends over this SDK (`weir-js`).
///
/// # Safety
/// `input..input+len` must be readable memory and `result` must point to 8
/// writable bytes: the host guarantees both by the ABI.
#[doc(hidden)]
pub unsafe fn run(
    input: u32,
    len: u32,
    result: u32,
    driver: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> i32 {
    // SAFETY: the caller guarantees the range is valid guest memory.
    let input = unsafe { std::slice::from_raw_parts(input as usize as *const u8, len as usize) };
    let (status, bytes) = match driver(input) {
        Ok(out) => (weir_abi::STATUS_OK, out),
        Err(msg) => (weir_abi::STATUS_ERROR, msg.into_bytes()),
    };
    // Never freed: the instance is discarded after the call. (Not turned
    // into a boxed slice, which could copy the output to shrink it.)
    let bytes = std::mem::ManuallyDrop::new(bytes);
    let area = result as usize as *mut u32;
    // SAFETY: the caller guarantees 8 writable bytes at `result`.
    unsafe {
        area.write_unaligned((bytes.as_ptr() as usize as u32).to_le());
        area.add(1).write_unaligned((bytes.len() as u32).to_le());
    }
    status
}

/// Export glue for a map function of key and value.
///
/// # Safety
/// Called only from the export glue with the pointers the host passed.
pub unsafe fn run_map<K: Decode, V: Decode, R: Emit>(
    input: u32,
    len: u32,
    result: u32,
    f: impl Fn(K, V) -> R,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { run(input, len, result, |i| map(i, f)) }
}

/// Export glue for a map function of the value only.
///
/// # Safety
/// Called only from the export glue with the pointers the host passed.
pub unsafe fn run_map_values<V: Decode, R: Emit>(
    input: u32,
    len: u32,
    result: u32,
    f: impl Fn(V) -> R,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { run(input, len, result, |i| map_values(i, f)) }
}

/// Export glue for a reduce function.
///
/// # Safety
/// Called only from the export glue with the pointers the host passed.
pub unsafe fn run_reduce<V: Decode + Encode, R: Reduced<V>>(
    input: u32,
    len: u32,
    result: u32,
    f: impl Fn(V, V) -> R,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { run(input, len, result, |i| reduce(i, f)) }
}

/// A migrate call: `(key, old state)` records in, `(key, new state)` out;
/// keys the function drops (`None`) leave the state.
pub fn migrate<K: Decode, S1: Decode, S2: Encode>(
    input: &[u8],
    f: impl Fn(K, S1) -> Option<S2>,
) -> Result<Vec<u8>, String> {
    let batch = RecordBatch::from_bytes(body(input)?.to_vec())
        .map_err(|e| format!("bad migrate input from host: {e}"))?;
    let mut out = RecordBatch::with_capacity(batch.byte_len());
    for (i, (k, v)) in batch.iter().enumerate() {
        let key = K::decode(k).map_err(|e| format!("entry {i}: key: {e}"))?;
        let old = S1::decode(v).map_err(|e| format!("entry {i}: old state: {e}"))?;
        if let Some(new) = f(key, old) {
            out.push_encoded(|b| b.extend_from_slice(k), |b| new.encode(b));
        }
    }
    Ok(out.into_bytes())
}

/// Export glue for a migrate function.
///
/// # Safety
/// Called only from the export glue with the pointers the host passed.
pub unsafe fn run_migrate<K: Decode, S1: Decode, S2: Encode>(
    input: u32,
    len: u32,
    result: u32,
    f: impl Fn(K, S1) -> Option<S2>,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { run(input, len, result, |i| migrate(i, f)) }
}

/// Export glue for an update function.
///
/// # Safety
/// Called only from the export glue with the pointers the host passed.
pub unsafe fn run_update<K: Decode, V: Decode, S: Decode + Encode, R: Emit>(
    input: u32,
    len: u32,
    result: u32,
    f: impl Fn(K, Vec<V>, &mut State<S>) -> R,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { run(input, len, result, |i| update(i, f)) }
}
