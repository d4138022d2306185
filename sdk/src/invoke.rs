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

use weir_abi::{put_u32, CallHeader, ACTION_REMOVE, ACTION_SET};

use crate::{BorrowDecode, Emit, Encode, RecordWriter, Reduced, State, UpdateValues, Values};

fn body(input: &[u8]) -> Result<&[u8], String> {
    let (header, body) = CallHeader::split(input).map_err(|e| format!("bad call input: {e}"))?;
    crate::set_header(header);
    Ok(body)
}

/// The records of a map body, read where they lie. The whole batch is
/// checked first, so a malformed batch fails before the function sees any
/// record.
fn records<'a>(
    body: &'a [u8],
    what: &str,
) -> Result<impl Iterator<Item = (&'a [u8], &'a [u8])>, String> {
    weir_abi::records(body).map_err(|e| format!("bad {what} from host: {e}"))
}

/// Room for the output of a map over `body`: twice the input, but at most
/// 64 MiB more than the input. Word splits and other expanding maps write
/// more than they read (a word of a few bytes becomes a record 16 bytes
/// longer); with the SDK's heap the buffer then grows in place at the top
/// of the heap, without a copy, and room never written costs no page
/// faults. The cap keeps a filter over a huge partition from reserving
/// memory it does not need against the host's memory limit.
fn map_capacity(body: &[u8]) -> usize {
    body.len().saturating_add(body.len().min(64 << 20))
}

/// A map call where the function takes key and value. Parameters may
/// borrow from `input` (`&str`, `&[u8]`).
pub fn map<'a, K: BorrowDecode<'a>, V: BorrowDecode<'a>, R: Emit<F>, F>(
    input: &'a [u8],
    f: impl Fn(K, V) -> R,
) -> Result<Vec<u8>, String> {
    let body = body(input)?;
    let mut out = RecordWriter::with_capacity(map_capacity(body));
    for (i, (k, v)) in records(body, "record batch")?.enumerate() {
        let k = K::borrow_decode(k).map_err(|e| format!("record {i}: key: {e}"))?;
        let v = V::borrow_decode(v).map_err(|e| format!("record {i}: value: {e}"))?;
        f(k, v).emit_into(&mut out)?;
    }
    Ok(out.into_bytes())
}

/// A map call where the function takes only the value (the key is ignored).
pub fn map_values<'a, V: BorrowDecode<'a>, R: Emit<F>, F>(
    input: &'a [u8],
    f: impl Fn(V) -> R,
) -> Result<Vec<u8>, String> {
    let body = body(input)?;
    let mut out = RecordWriter::with_capacity(map_capacity(body));
    for (i, (_, v)) in records(body, "record batch")?.enumerate() {
        let v = V::borrow_decode(v).map_err(|e| format!("record {i}: value: {e}"))?;
        f(v).emit_into(&mut out)?;
    }
    Ok(out.into_bytes())
}

/// A reduce call: folds every group's values left to right with `f`. The
/// groups are read where they lie (no list of groups or of values is
/// built) and the output (`u32 count`, then one byte string per group) is
/// written directly.
pub fn reduce<'a, V: BorrowDecode<'a> + Encode, R: Reduced<V>>(
    input: &'a [u8],
    f: impl Fn(V, V) -> R,
) -> Result<Vec<u8>, String> {
    let body = body(input)?;
    let groups = weir_abi::groups(body).map_err(|e| format!("bad reduce input from host: {e}"))?;
    // Enough for fixed-width results (a group's input takes at least as
    // many bytes as its reduced number), so the buffer rarely grows.
    let mut out = Vec::with_capacity(body.len());
    put_u32(
        &mut out,
        u32::try_from(groups.len()).expect("too many groups"),
    );
    for (i, (_key, mut values)) in groups.enumerate() {
        // Checked framing: every group has at least one value.
        let first = values.next().expect("a group has values");
        let mut acc = group_value::<V>(first, i)?;
        for v in values {
            acc = f(acc, group_value(v, i)?).into_value()?;
        }
        acc.encode_prefixed(&mut out);
    }
    Ok(out)
}

/// Decodes a value of group `i` (the message is built only on error).
#[inline(always)]
fn group_value<'a, V: BorrowDecode<'a>>(bytes: &'a [u8], i: usize) -> Result<V, String> {
    V::borrow_decode(bytes).map_err(|e| format!("group {i}: value: {e}"))
}

/// An update call: runs `f` once per entry with the key, its new values
/// (`Vec<V>`, or [`Values`] to decode them lazily) and its state, and
/// writes the new states and emitted records. Entries are read where they
/// lie; nothing is allocated per entry unless the function asks for a `Vec`.
pub fn update<'a, K, Vs, S, R, F>(
    input: &'a [u8],
    f: impl Fn(K, Vs, &mut State<S>) -> R,
) -> Result<Vec<u8>, String>
where
    K: BorrowDecode<'a>,
    Vs: UpdateValues<'a>,
    S: BorrowDecode<'a> + Encode,
    R: Emit<F>,
{
    let body = body(input)?;
    let entries =
        weir_abi::update_entries(body).map_err(|e| format!("bad update input from host: {e}"))?;
    // The actions (`u32 count`, then per entry `0` or `1` + state), then
    // the emitted records, appended at the end.
    let mut actions = Vec::with_capacity(body.len().saturating_add(4));
    put_u32(
        &mut actions,
        u32::try_from(entries.len()).expect("too many entries"),
    );
    let mut emitted = RecordWriter::with_capacity(body.len());
    for (i, e) in entries.enumerate() {
        let key = K::borrow_decode(e.key).map_err(|err| format!("entry {i}: key: {err}"))?;
        // Key, values, state: the order errors are reported in.
        let values = Vs::from_values(Values::<()>::new(e.values))
            .map_err(|err| format!("entry {i}: value: {err}"))?;
        let prev = e
            .state
            .map(S::borrow_decode)
            .transpose()
            .map_err(|err| format!("entry {i}: state: {err}"))?;
        let mut state = State::new(prev, e.timed_out);
        f(key, values, &mut state).emit_into(&mut emitted)?;
        match state.into_inner() {
            None => actions.push(ACTION_REMOVE),
            Some(s) => {
                actions.push(ACTION_SET);
                s.encode_prefixed(&mut actions);
            }
        }
    }
    actions.extend_from_slice(&emitted.into_bytes());
    Ok(actions)
}

/// Runs a driver on the input the host placed in guest memory and writes
/// the result area (`docs/abi.md` §2); returns the status. Public for other
/// front ends over this SDK (`weir-js`).
///
/// The input stays where the host wrote it until the instance is thrown
/// away, so the driver may borrow from it for any lifetime `'a`.
///
/// # Safety
/// `input..input+len` must be readable memory, not written during the
/// call, and `result` must point to 8 writable bytes: the host guarantees
/// all of it by the ABI.
#[doc(hidden)]
pub unsafe fn run<'a>(
    input: u32,
    len: u32,
    result: u32,
    driver: impl FnOnce(&'a [u8]) -> Result<Vec<u8>, String>,
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
pub unsafe fn run_map<'a, K: BorrowDecode<'a>, V: BorrowDecode<'a>, R: Emit<F>, F>(
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
pub unsafe fn run_map_values<'a, V: BorrowDecode<'a>, R: Emit<F>, F>(
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
pub unsafe fn run_reduce<'a, V: BorrowDecode<'a> + Encode, R: Reduced<V>>(
    input: u32,
    len: u32,
    result: u32,
    f: impl Fn(V, V) -> R,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { run(input, len, result, |i| reduce(i, f)) }
}

/// A migrate call: `(key, old state)` records in, `(key, new state)` out;
/// keys the function drops (`None`) leave the state. The key is written
/// back as the host sent it.
pub fn migrate<'a, K: BorrowDecode<'a>, S1: BorrowDecode<'a>, S2: Encode>(
    input: &'a [u8],
    f: impl Fn(K, S1) -> Option<S2>,
) -> Result<Vec<u8>, String> {
    let body = body(input)?;
    let records = records(body, "migrate input")?;
    let mut out = RecordWriter::with_capacity(body.len());
    for (i, (k, v)) in records.enumerate() {
        let key = K::borrow_decode(k).map_err(|e| format!("entry {i}: key: {e}"))?;
        let old = S1::borrow_decode(v).map_err(|e| format!("entry {i}: old state: {e}"))?;
        if let Some(new) = f(key, old) {
            out.push(k, &new);
        }
    }
    Ok(out.into_bytes())
}

/// Export glue for a migrate function.
///
/// # Safety
/// Called only from the export glue with the pointers the host passed.
pub unsafe fn run_migrate<'a, K: BorrowDecode<'a>, S1: BorrowDecode<'a>, S2: Encode>(
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
pub unsafe fn run_update<'a, K, Vs, S, R, F>(
    input: u32,
    len: u32,
    result: u32,
    f: impl Fn(K, Vs, &mut State<S>) -> R,
) -> i32
where
    K: BorrowDecode<'a>,
    Vs: UpdateValues<'a>,
    S: BorrowDecode<'a> + Encode,
    R: Emit<F>,
{
    // SAFETY: forwarded from the caller.
    unsafe { run(input, len, result, |i| update(i, f)) }
}

#[cfg(test)]
mod tests {
    use weir_abi::{write_update_entries, GroupsWriter, RecordBatch, UpdateEntry, UpdateOutput};

    use super::*;
    use crate::Values;

    fn call_input(body: &[u8]) -> Vec<u8> {
        let mut input = CallHeader::default().encode().to_vec();
        input.extend_from_slice(body);
        input
    }

    fn lines(lines: &[&[u8]]) -> Vec<u8> {
        let batch: RecordBatch = lines.iter().map(|l| (&b""[..], *l)).collect();
        call_input(batch.as_bytes())
    }

    #[test]
    fn every_output_form_gives_the_same_bytes() {
        let input = lines(&[b"a bb  ccc", b"", b"  d "]);
        let owned = map_values(&input, |l: String| -> Vec<(String, i64)> {
            l.split_whitespace().map(|w| (w.to_owned(), 1)).collect()
        })
        .unwrap();
        let borrowed_iter =
            map_values(&input, |l: &str| l.split_whitespace().map(|w| (w, 1i64))).unwrap();
        let bytes_iter = map_values(&input, |l: &[u8]| {
            l.split(|b| *b == b' ')
                .filter(|w| !w.is_empty())
                .map(|w| (w, 1i64))
        })
        .unwrap();
        let fallible_iter = map_values(&input, |l: &str| {
            Ok::<_, String>(l.split_whitespace().map(|w| Some((w, 1i64))))
        })
        .unwrap();
        let expected: RecordBatch = ["a", "bb", "ccc", "d"]
            .iter()
            .map(|w| (w.as_bytes(), 1i64.to_le_bytes()))
            .collect();
        for out in [owned, borrowed_iter, bytes_iter, fallible_iter] {
            assert_eq!(out, expected.as_bytes());
        }
        let arrays = map(&input, |_: (), l: &str| [(l, 1u8), (l, 2u8)]).unwrap();
        assert_eq!(RecordBatch::from_bytes(arrays).unwrap().len(), 6);
    }

    #[test]
    fn borrowed_strings_fail_as_owned_ones_do() {
        let input = lines(&[b"ok", b"bad \xff"]);
        let owned = map_values(&input, |l: String| Some((l, 1i64))).unwrap_err();
        let borrowed = map_values(&input, |l: &str| Some((l, 1i64))).unwrap_err();
        assert_eq!(borrowed, owned);
        assert_eq!(
            borrowed,
            "record 1: value: cannot decode alloc::string::String: \
             invalid utf-8 sequence of 1 bytes from index 4"
        );
        let err = map_values(&input, |l: &str| {
            l.split_whitespace()
                .map(|w| if w == "ok" { Err("no") } else { Ok((w, 1i64)) })
                .collect::<Vec<_>>()
        })
        .unwrap_err();
        assert_eq!(err, "no");
        // Malformed framing fails before the function runs.
        let mut bad = lines(&[b"x"]);
        bad.pop();
        assert!(map_values(&bad, |_: &[u8]| -> () { unreachable!() })
            .unwrap_err()
            .starts_with("bad record batch from host: "));
    }

    #[test]
    fn reduce_reads_groups_in_place() {
        let mut groups = GroupsWriter::new();
        let v = |n: i64| n.to_le_bytes();
        groups.push(b"a", [&v(1)[..], &v(2)[..], &v(3)[..]].into_iter());
        groups.push(b"b", [&v(10)[..]].into_iter());
        groups.push(b"c", [&v(-1)[..], &v(1)[..]].into_iter());
        let input = call_input(&groups.into_bytes());
        let out = reduce(&input, |a: i64, b: i64| a + b).unwrap();
        assert_eq!(
            weir_abi::read_reduced(&out, 3).unwrap(),
            vec![&v(6)[..], &v(10)[..], &v(0)[..]]
        );
        // Borrowed values: the longest string of each group.
        let mut groups = GroupsWriter::new();
        groups.push(b"k", [&b"ab"[..], b"abc", b"x"].into_iter());
        let input = call_input(&groups.into_bytes());
        let out = reduce(
            &input,
            |a: &str, b: &str| if b.len() > a.len() { b } else { a },
        )
        .unwrap();
        assert_eq!(weir_abi::read_reduced(&out, 1).unwrap(), vec![&b"abc"[..]]);
        // Errors name the group; a group without values is the host's fault.
        let mut groups = GroupsWriter::new();
        groups.push(b"a", [&v(1)[..]].into_iter());
        groups.push(b"b", [&v(1)[..], &b"x"[..]].into_iter());
        let input = call_input(&groups.into_bytes());
        assert_eq!(
            reduce(&input, |a: i64, b: i64| a + b).unwrap_err(),
            "group 1: value: cannot decode i64: expected 8 bytes, found 1"
        );
        let input = call_input(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(reduce(&input, |a: i64, b: i64| a + b)
            .unwrap_err()
            .starts_with("bad reduce input from host: "));
    }

    #[test]
    fn update_with_values_equals_update_with_a_vec() {
        let (one, two, ten) = (1i64.to_le_bytes(), 2i64.to_le_bytes(), 10i64.to_le_bytes());
        let entries = [
            UpdateEntry {
                key: b"old",
                state: Some(&ten),
                timed_out: false,
                values: vec![&one, &two],
            },
            UpdateEntry {
                key: b"idle",
                state: Some(&ten),
                timed_out: true,
                values: vec![],
            },
            UpdateEntry {
                key: b"gone",
                state: None,
                timed_out: false,
                values: vec![],
            },
            UpdateEntry {
                key: b"new",
                state: None,
                timed_out: false,
                values: vec![&two],
            },
        ];
        let input = call_input(&write_update_entries(&entries));
        let with_vec = update(&input, |k: String, vs: Vec<i64>, s: &mut State<i64>| {
            if vs.is_empty() {
                return None;
            }
            let total = s.get().copied().unwrap_or(0) + vs.iter().sum::<i64>();
            s.set(total);
            Some((k, total))
        })
        .unwrap();
        let with_values = update(&input, |k: &str, vs: Values<i64>, s: &mut State<i64>| {
            if vs.is_empty() {
                return None;
            }
            let total = s.get().copied().unwrap_or(0) + vs.sum::<i64>();
            s.set(total);
            Some((k, total))
        })
        .unwrap();
        assert_eq!(with_values, with_vec);
        let out = UpdateOutput::decode(&with_values, 4).unwrap();
        assert_eq!(
            out.states,
            vec![
                Some(13i64.to_le_bytes().to_vec()),
                Some(ten.to_vec()),
                None,
                Some(two.to_vec())
            ]
        );
        assert_eq!(out.emitted.len(), 2);
        // A bad value fails before the function sees the key, either way.
        let entries = [UpdateEntry {
            key: b"k",
            state: None,
            timed_out: false,
            values: vec![&one, b"xy"],
        }];
        let input = call_input(&write_update_entries(&entries));
        let err = update(
            &input,
            |_: &[u8], _: Values<i64>, _: &mut State<i64>| -> () { unreachable!() },
        )
        .unwrap_err();
        assert_eq!(
            err,
            "entry 0: value: cannot decode i64: expected 8 bytes, found 2"
        );
        // A bad value is reported before a bad state, as it always was
        // (the other languages' plugins reproduce the order).
        let entries = [UpdateEntry {
            key: b"k",
            state: Some(b"abc"),
            timed_out: false,
            values: vec![b"xy"],
        }];
        let input = call_input(&write_update_entries(&entries));
        for err in [
            update(&input, |_: &[u8], _: Vec<i64>, _: &mut State<i64>| {}).unwrap_err(),
            update(&input, |_: &[u8], _: Values<i64>, _: &mut State<i64>| {}).unwrap_err(),
        ] {
            assert_eq!(
                err,
                "entry 0: value: cannot decode i64: expected 8 bytes, found 2"
            );
        }
    }

    #[test]
    fn migrate_borrows_keys_and_states() {
        let batch: RecordBatch = [(&b"k1"[..], &b"1"[..]), (b"k2", b"22")]
            .into_iter()
            .collect();
        let input = call_input(batch.as_bytes());
        let out = migrate(&input, |k: &str, old: &str| {
            (k == "k2").then_some(old.len() as i64)
        })
        .unwrap();
        let out = RecordBatch::from_bytes(out).unwrap();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![(&b"k2"[..], &2i64.to_le_bytes()[..])]
        );
    }
}
