//! Target `abi_output`: what a guest hands back, and every reader of the
//! framing in `weir-abi`.
//!
//! Input: `[reader: u8][status: u8][expected: u16][cap: u32][area: u32]`,
//! then guest memory. The host's result check ([`weir::wasm::take_output`])
//! runs on that memory with the output decoded as the chosen kind reads
//! it; the same bytes also go through every other reader, whose answers
//! must agree with each other (a batch that checks must iterate, a body
//! the in-place reader accepts the list reader accepts too).

use weir::wasm::{take_output, CallErrorKind};
use weir_abi::{
    canonical, groups, read_groups, read_reduced, read_update_entries, records, update_entries,
    CallHeader, FrameError, Reader, RecordBatch, UpdateOutput,
};

/// The fuzz target; see the module documentation for the input layout.
pub fn abi_output(data: &[u8]) {
    if data.len() < 12 {
        return;
    }
    let reader = data[0];
    let status = match data[1] {
        0 => weir_abi::STATUS_OK,
        1 => weir_abi::STATUS_ERROR,
        s => i32::from(s) - 128,
    };
    let expected = usize::from(u16::from_le_bytes([data[2], data[3]]));
    let cap = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes")) as usize;
    let area = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
    let mem = &data[12..];

    // The host's check of a call's result, decoded as the kind reads it.
    let _ = match reader % 4 {
        0 => take_output(mem, area, status, cap, |out| {
            RecordBatch::from_slice(out)
                .map(|b| b.len())
                .map_err(CallErrorKind::from)
        }),
        1 => take_output(mem, area, status, cap, |out| {
            Ok(RecordBatch::view(out)?.count())
        }),
        2 => take_output(mem, area, status, cap, |out| {
            Ok(read_reduced(out, expected)?.len())
        }),
        _ => take_output(mem, area, status, cap, |out| {
            Ok(UpdateOutput::decode(out, expected)?.states.len())
        }),
    };
    readers_agree(mem, expected);
}

/// Every reader over the same bytes; the in-place readers and the list
/// readers must give the same answers.
fn readers_agree(bytes: &[u8], expected: usize) {
    batch_readers_agree(bytes);

    // Reduce bodies (guest side) and outputs (host side).
    match (groups(bytes), read_groups(bytes)) {
        (Ok(lazy), Ok(listed)) => {
            assert_eq!(lazy.len(), listed.len());
            for ((k, vs), g) in lazy.zip(&listed) {
                assert_eq!(k, g.key);
                assert!(vs.eq(g.values.iter().copied()));
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("groups and read_groups disagree: {a:?} / {b:?}"),
    }
    if let Ok(values) = read_reduced(bytes, expected) {
        assert_eq!(values.len(), expected);
    }

    // Update bodies (guest side) and outputs (host side).
    match (update_entries(bytes), read_update_entries(bytes)) {
        (Ok(lazy), Ok(listed)) => {
            assert_eq!(lazy.len(), listed.len());
            for (e, l) in lazy.zip(&listed) {
                assert_eq!((e.key, e.state, e.timed_out), (l.key, l.state, l.timed_out));
                assert!(e.values.eq(l.values.iter().copied()));
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("update_entries and read_update_entries disagree: {a:?} / {b:?}"),
    }
    if let Ok(out) = UpdateOutput::decode(bytes, expected) {
        assert_eq!(out.states.len(), expected);
        assert_eq!(out.encode(), bytes, "an update output re-encodes as read");
    }

    // The header, and values the host makes (§4).
    if let Ok((_, body)) = CallHeader::split(bytes) {
        assert_eq!(body.len(), bytes.len() - weir_abi::HEADER_LEN);
    }
    let _ = canonical::decode_count(bytes);
    let _ = canonical::decode_list(bytes);
    let _ = canonical::decode_pair(bytes);
    let _ = canonical::decode_cogroup(bytes);
    let _ = sections(bytes);
}

/// Record batches: the three ways in agree, a checked batch iterates in
/// full and re-encodes as read, and its runs cover it.
fn batch_readers_agree(bytes: &[u8]) {
    let checked = RecordBatch::from_slice(bytes);
    match (&checked, records(bytes), RecordBatch::view(bytes)) {
        (Ok(batch), Ok(a), Ok(b)) => {
            assert_eq!(a.len(), batch.len());
            assert!(a.eq(b));
            let rebuilt: RecordBatch = batch.iter().collect();
            assert_eq!(rebuilt.as_bytes(), bytes, "a batch re-encodes as read");
            for max in [0, 7, 64] {
                let n: usize = batch.runs(max).map(|(n, _)| n).sum();
                assert_eq!(n, batch.len());
            }
        }
        (Err(e), Err(a), Err(b)) => {
            assert_eq!(e, &a);
            assert_eq!(e, &b);
        }
        (c, a, b) => panic!(
            "record batch readers disagree: {:?} / {:?} / {:?}",
            c.as_ref().map(RecordBatch::len),
            a.map(|i| i.len()),
            b.map(|i| i.len())
        ),
    }
    if let Ok(batch) = checked {
        assert_eq!(RecordBatch::from_bytes(bytes.to_vec()), Ok(batch));
    }
}

/// A batch read from the front of a reader, as sections of a larger
/// buffer are (the emitted records of an update output), then a byte
/// string and an option.
fn sections(bytes: &[u8]) -> Result<(), FrameError> {
    let mut r = Reader::new(bytes);
    let at = r.position();
    let batch = RecordBatch::read(&mut r)?;
    assert_eq!(
        batch.as_bytes(),
        &bytes[at..r.position()],
        "a batch read from a reader is the bytes it consumed"
    );
    r.bytes("byte string")?;
    canonical::read_option(&mut r)?;
    r.count(1, "count")?;
    r.finish()
}
