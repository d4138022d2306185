//! Real-time analytics of sensor readings, as a weir plugin (the example
//! `examples/pipelines/analytics.toml`).
//!
//! Input records are text lines `id,source,bytes,temperature`, e.g.
//! `17,sensor-3,512,21.5`: `bytes` is a non-negative integer, `temperature`
//! a decimal with at most two fraction digits (`21`, `21.5`, `-3.25`).
//! Fields may be surrounded by spaces. A line that does not fit fails the
//! call with a message quoting the line; nothing here panics on input.
//!
//! - `map:bytes_by_source`: line → `(source, bytes)` (`i64`).
//! - `reduce:sum_bytes`: adds two `i64`s, failing on overflow.
//! - `update:running_total`: the running total of bytes per source
//!   (`update_state_by_key`: the stream is then the state, `(source,
//!   total)` for every source seen so far); emits `(source, total)` for the
//!   sources seen in the batch (what `map_with_state` would pass on).
//! - `map:temperature_by_source`: line → `(source, Readings { sum, count:
//!   1 })` with `sum` the temperature in hundredths of a degree.
//! - `reduce:add_readings` / `reduce:subtract_readings`: add and subtract
//!   [`Readings`] (the function and inverse of `reduce_by_key_and_window`),
//!   and `map:has_readings`, its `filter`: drops sources whose count fell
//!   to zero.
//! - `map:average`: `(source, Readings)` → `(source, average)`, the
//!   average temperature as text with two decimals (rounded half away from
//!   zero).
//!
//! [`Readings`] is 16 bytes on the wire: `sum` then `count`, both `i64`
//! little-endian — the same bytes as `Bincode<(i64, i64)>`.
//!
//! Build: `cargo build -p analytics --release --target wasm32-unknown-unknown`.

use weir_sdk::{map, reduce, update, Decode, DecodeError, Encode, State};

/// One parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading<'a> {
    /// The `id` field, as written.
    pub id: &'a str,
    /// The `source` field (never empty).
    pub source: &'a str,
    /// The `bytes` field.
    pub bytes: i64,
    /// The temperature in hundredths of a degree.
    pub centi_degrees: i64,
}

/// Parses `id,source,bytes,temperature`; the error quotes the line.
pub fn parse_reading(line: &str) -> Result<Reading<'_>, String> {
    let bad = |why: String| format!("malformed reading {line:?}: {why}");
    let fields: Vec<&str> = line.trim().split(',').map(str::trim).collect();
    let [id, source, bytes, temperature] = fields[..] else {
        return Err(bad(format!(
            "expected 4 comma-separated fields `id,source,bytes,temperature`, found {}",
            fields.len()
        )));
    };
    if source.is_empty() {
        return Err(bad("the source is empty".into()));
    }
    let bytes = parse_bytes(bytes).ok_or_else(|| {
        bad(format!(
            "bytes {bytes:?} is not a non-negative integer that fits in an i64"
        ))
    })?;
    let centi_degrees = parse_centi(temperature).ok_or_else(|| {
        bad(format!(
            "temperature {temperature:?} is not a decimal number with at most 2 fraction digits"
        ))
    })?;
    Ok(Reading {
        id,
        source,
        bytes,
        centi_degrees,
    })
}

/// Decimal digits only (no sign), as an `i64`.
fn parse_bytes(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `[-+]digits[.d[d]]` in hundredths.
fn parse_centi(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) if (1..=2).contains(&f.len()) => (w, f),
        Some(_) => return None,
        None => (unsigned, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let mut value: i64 = 0;
    for d in whole.bytes().chain(fraction.bytes()) {
        value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    for _ in fraction.len()..2 {
        value = value.checked_mul(10)?;
    }
    Some(if negative { -value } else { value })
}

fn parse_line(line: &[u8]) -> Result<Reading<'_>, String> {
    let text = std::str::from_utf8(line).map_err(|_| {
        format!(
            "malformed reading {:?}: not UTF-8",
            String::from_utf8_lossy(line)
        )
    })?;
    parse_reading(text)
}

/// A sum of temperatures (hundredths of a degree) and how many readings
/// it adds up. On the wire: `sum`, `count`, each `i64` little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readings {
    /// Sum of the temperatures, in hundredths of a degree.
    pub sum: i64,
    /// Number of readings.
    pub count: i64,
}

impl Encode for Readings {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sum.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
    }
}

impl Decode for Readings {
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (Some(sum), Some(count)) = (bytes.get(..8), bytes.get(8..)) else {
            return Err(readings_error(bytes.len()));
        };
        let count: [u8; 8] = count.try_into().map_err(|_| readings_error(bytes.len()))?;
        Ok(Readings {
            sum: i64::from_le_bytes(sum.try_into().expect("8 bytes")),
            count: i64::from_le_bytes(count),
        })
    }
}

fn readings_error(len: usize) -> DecodeError {
    DecodeError {
        type_name: std::any::type_name::<Readings>(),
        reason: format!("expected 16 bytes (sum and count, i64 little-endian), found {len}"),
    }
}

/// A line → `(source, bytes)`.
#[map]
pub fn bytes_by_source(line: Vec<u8>) -> Result<(String, i64), String> {
    let r = parse_line(&line)?;
    Ok((r.source.to_owned(), r.bytes))
}

/// Adds two byte counts.
#[reduce]
pub fn sum_bytes(a: i64, b: i64) -> Result<i64, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("byte total overflows an i64 adding {a} and {b}"))
}

/// Running total of bytes per source; emits `(source, total)` for the
/// sources seen in this batch.
#[update]
pub fn running_total(
    source: String,
    bytes: Vec<i64>,
    total: &mut State<i64>,
) -> Result<Option<(String, i64)>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut t = total.get().copied().unwrap_or(0);
    for b in bytes {
        t = t.checked_add(b).ok_or_else(|| {
            format!("byte total of source {source:?} overflows an i64 adding {b} to {t}")
        })?;
    }
    total.set(t);
    Ok(Some((source, t)))
}

/// A line → `(source, one reading of its temperature)`.
#[map]
pub fn temperature_by_source(line: Vec<u8>) -> Result<(String, Readings), String> {
    let r = parse_line(&line)?;
    Ok((
        r.source.to_owned(),
        Readings {
            sum: r.centi_degrees,
            count: 1,
        },
    ))
}

/// Adds two sums of readings.
#[reduce]
pub fn add_readings(a: Readings, b: Readings) -> Result<Readings, String> {
    match (a.sum.checked_add(b.sum), a.count.checked_add(b.count)) {
        (Some(sum), Some(count)) => Ok(Readings { sum, count }),
        _ => Err(format!("readings overflow an i64 adding {b:?} to {a:?}")),
    }
}

/// Inverse of [`add_readings`]: takes readings that left a window out.
#[reduce]
pub fn subtract_readings(a: Readings, b: Readings) -> Result<Readings, String> {
    match (a.sum.checked_sub(b.sum), a.count.checked_sub(b.count)) {
        (Some(sum), Some(count)) => Ok(Readings { sum, count }),
        _ => Err(format!(
            "readings overflow an i64 subtracting {b:?} from {a:?}"
        )),
    }
}

/// Keeps sources that still have readings (the filter of an incremental
/// window).
#[map]
pub fn has_readings(source: String, readings: Readings) -> Option<(String, Readings)> {
    (readings.count != 0).then_some((source, readings))
}

/// `(source, readings)` → `(source, average temperature)`, e.g. `"21.53"`.
#[map]
pub fn average(source: String, readings: Readings) -> Result<(String, String), String> {
    Ok((source, format_average(readings)?))
}

/// The average of `readings` in degrees with two decimals, rounded half
/// away from zero.
pub fn format_average(readings: Readings) -> Result<String, String> {
    if readings.count <= 0 {
        return Err(format!(
            "cannot average {} readings (sum {})",
            readings.count, readings.sum
        ));
    }
    let (sum, count) = (i128::from(readings.sum), i128::from(readings.count));
    // |sum| / count in hundredths, rounded half up.
    let rounded = (2 * sum.abs() + count) / (2 * count);
    let sign = if sum < 0 && rounded != 0 { "-" } else { "" };
    Ok(format!("{sign}{}.{:02}", rounded / 100, rounded % 100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::abi::{CallHeader, GroupsWriter, RecordBatch};
    use weir_sdk::Bincode;

    fn reading(line: &str) -> (String, i64, i64) {
        let r = parse_reading(line).unwrap();
        (r.source.to_owned(), r.bytes, r.centi_degrees)
    }

    #[test]
    fn parses_readings() {
        assert_eq!(
            reading("17,sensor-3,512,21.5"),
            ("sensor-3".into(), 512, 2150)
        );
        assert_eq!(reading(" 1 , a ,0, -3.25 \r"), ("a".into(), 0, -325));
        assert_eq!(reading("x,b,7,21"), ("b".into(), 7, 2100));
        assert_eq!(reading("x,b,7,+0.07"), ("b".into(), 7, 7));
        assert_eq!(reading("x,b,7,-0.5"), ("b".into(), 7, -50));
        assert_eq!(
            reading("x,b,9223372036854775807,1.00"),
            ("b".into(), i64::MAX, 100)
        );
        assert_eq!(parse_reading("17,s,1,2").unwrap().id, "17");
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (line, why) in [
            ("", "found 1"),
            ("17,sensor-3,512", "found 3"),
            ("17,sensor-3,512,21.5,9", "found 5"),
            ("17,,512,21.5", "source is empty"),
            ("17,sensor-3,abc,21.5", "bytes \"abc\""),
            ("17,sensor-3,-5,21.5", "bytes \"-5\""),
            ("17,sensor-3,+5,21.5", "bytes \"+5\""),
            ("17,sensor-3,,21.5", "bytes \"\""),
            ("17,sensor-3,99999999999999999999,21.5", "fits in an i64"),
            ("17,sensor-3,512,warm", "temperature \"warm\""),
            ("17,sensor-3,512,21.505", "temperature \"21.505\""),
            ("17,sensor-3,512,21.", "temperature \"21.\""),
            ("17,sensor-3,512,.5", "temperature \".5\""),
            ("17,sensor-3,512,-", "temperature \"-\""),
            ("17,sensor-3,512,1e3", "temperature \"1e3\""),
            ("17,sensor-3,512,2.-5", "temperature \"2.-5\""),
            ("17,sensor-3,512,99999999999999999999", "temperature"),
        ] {
            let err = parse_reading(line).unwrap_err();
            assert!(
                err.contains(&format!("{line:?}")) && err.contains(why),
                "{line:?}: {err}"
            );
            let err = bytes_by_source(line.as_bytes().to_vec()).unwrap_err();
            assert!(err.contains(&format!("{line:?}")), "{err}");
            let err = temperature_by_source(line.as_bytes().to_vec()).unwrap_err();
            assert!(err.contains(&format!("{line:?}")), "{err}");
        }
        let err = bytes_by_source(b"1,\xff,2,3".to_vec()).unwrap_err();
        assert!(
            err.contains("not UTF-8") && err.contains("1,\u{fffd},2,3"),
            "{err}"
        );
    }

    #[test]
    fn maps_give_source_keys() {
        let line = b"17,sensor-3,512,21.5".to_vec();
        assert_eq!(bytes_by_source(line.clone()), Ok(("sensor-3".into(), 512)));
        assert_eq!(
            temperature_by_source(line),
            Ok((
                "sensor-3".into(),
                Readings {
                    sum: 2150,
                    count: 1
                }
            ))
        );
    }

    #[test]
    fn sums_fail_on_overflow() {
        assert_eq!(sum_bytes(2, 3), Ok(5));
        assert!(sum_bytes(i64::MAX, 1).unwrap_err().contains("overflow"));
        let r = |sum, count| Readings { sum, count };
        assert_eq!(add_readings(r(100, 1), r(-250, 2)), Ok(r(-150, 3)));
        assert_eq!(subtract_readings(r(-150, 3), r(100, 1)), Ok(r(-250, 2)));
        assert!(add_readings(r(i64::MAX, 1), r(1, 1)).is_err());
        assert!(subtract_readings(r(i64::MIN, 1), r(1, 1)).is_err());
        assert_eq!(has_readings("a".into(), r(0, 0)), None);
        assert_eq!(
            has_readings("a".into(), r(5, 1)),
            Some(("a".into(), r(5, 1)))
        );
    }

    #[test]
    fn running_total_adds_up_and_emits_seen_sources() {
        let mut state = State::new(None, false);
        assert_eq!(
            running_total("a".into(), vec![1, 2], &mut state),
            Ok(Some(("a".into(), 3)))
        );
        assert_eq!(state.get(), Some(&3));
        assert_eq!(running_total("a".into(), vec![], &mut state), Ok(None));
        assert_eq!(state.get(), Some(&3));
        let mut full = State::new(Some(i64::MAX), false);
        assert!(running_total("a".into(), vec![1], &mut full).is_err());
    }

    #[test]
    fn averages_have_two_decimals() {
        let avg = |sum, count| format_average(Readings { sum, count }).unwrap();
        assert_eq!(avg(2150, 1), "21.50");
        assert_eq!(avg(2150 + 2101, 2), "21.26"); // 21.255 rounds up
        assert_eq!(avg(-325, 1), "-3.25");
        assert_eq!(avg(-5, 2), "-0.03"); // -0.025 rounds away from zero
        assert_eq!(avg(-1, 3), "0.00");
        assert_eq!(avg(1, 3), "0.00");
        assert_eq!(avg(2, 3), "0.01");
        assert_eq!(avg(100, 3), "0.33");
        assert_eq!(
            avg(i64::MAX, 1),
            format!("{}.{:02}", i64::MAX / 100, i64::MAX % 100)
        );
        assert!(format_average(Readings { sum: 0, count: 0 }).is_err());
        assert_eq!(
            average("s".into(), Readings { sum: 7, count: 2 }),
            Ok(("s".into(), "0.04".into()))
        );
        assert!(average("s".into(), Readings::default()).is_err());
    }

    #[test]
    fn readings_are_16_bytes_like_bincode_of_a_pair() {
        let r = Readings {
            sum: -325,
            count: 7,
        };
        let mut ours = Vec::new();
        r.encode(&mut ours);
        let mut bincode = Vec::new();
        Bincode((-325i64, 7i64)).encode(&mut bincode);
        assert_eq!(ours.len(), 16);
        assert_eq!(ours, bincode);
        assert_eq!(Readings::decode(&ours), Ok(r));
        assert!(Readings::decode(&ours[..15]).is_err());
        assert!(Readings::decode(&[0; 17]).is_err());
        assert!(Readings::decode(&[]).is_err());
    }

    fn map_input(lines: &[&str]) -> Vec<u8> {
        let mut input = CallHeader::default().encode().to_vec();
        let batch: RecordBatch = lines.iter().map(|l| (&b""[..], l.as_bytes())).collect();
        input.extend_from_slice(batch.as_bytes());
        input
    }

    #[test]
    fn through_the_abi() {
        let out = weir_sdk::invoke::map_values(
            &map_input(&["1,a,10,20.5", "2,b,5,-1"]),
            temperature_by_source,
        )
        .unwrap();
        let out = RecordBatch::from_bytes(out).unwrap();
        let records: Vec<(Vec<u8>, Vec<u8>)> =
            out.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let enc = |sum: i64, count: i64| [sum.to_le_bytes(), count.to_le_bytes()].concat();
        assert_eq!(
            records,
            vec![(b"a".to_vec(), enc(2050, 1)), (b"b".to_vec(), enc(-100, 1))]
        );

        let err = weir_sdk::invoke::map_values(
            &map_input(&["1,a,10,20.5", "2,b,lots,-1"]),
            bytes_by_source,
        )
        .unwrap_err();
        assert!(err.contains("\"2,b,lots,-1\""), "{err}");

        let mut input = CallHeader::default().encode().to_vec();
        let mut groups = GroupsWriter::new();
        let (x, y) = (enc(100, 1), enc(250, 2));
        groups.push(b"a", [&x[..], &y[..], &x[..]].into_iter());
        input.extend_from_slice(&groups.into_bytes());
        let out = weir_sdk::invoke::reduce(&input, add_readings).unwrap();
        assert_eq!(
            weir_sdk::abi::read_reduced(&out, 1).unwrap(),
            vec![&enc(450, 4)[..]]
        );
    }
}
