//! `weir plugin test` (the conformance suite) and `weir plugin call` (one
//! function on input given on the command line).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_abi::{
    read_reduced, write_update_entries, FunctionKind, GroupsWriter, RecordBatch, UpdateEntry,
    UpdateOutput,
};

use crate::conformance::{self, ConformanceError, Selection};
use crate::ops::ValueKind;
use crate::output::render_record;
use crate::wasm::{CallError, Invocation, Limits, Plugin, Runtime, RuntimeConfig};

/// Why `weir plugin test` or `weir plugin call` failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginToolError {
    /// A function argument is not `KIND:NAME`.
    #[error("`{spec}` is not a function: write KIND:NAME (or KIND__NAME), e.g. map:split; kinds are map, reduce, update, migrate")]
    BadFunction { spec: String },
    /// The suite could not run.
    #[error(transparent)]
    Conformance(#[from] ConformanceError),
    /// Some conformance cases failed (each was printed).
    #[error("{failed} of {total} conformance case(s) failed for plugin `{plugin}`")]
    TestsFailed {
        plugin: String,
        failed: usize,
        total: usize,
    },
    /// Neither or both of `--text` and `--input`.
    #[error("give the input with exactly one of --text TEXT (map functions) or --input FILE (JSON lines; - for stdin)")]
    NoInput,
    /// `--text` for a function that takes groups or entries.
    #[error("--text gives lines of text, the input of a map function; `{kind}` functions take JSON lines (--input FILE): {shape}")]
    TextNotForKind {
        kind: FunctionKind,
        shape: &'static str,
    },
    /// The input file could not be read.
    #[error("cannot read input {}: {source}", path.display())]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the input file is not what the function's kind takes.
    #[error("{}:{line}: {source}; a {kind} input line is {shape}", path.display())]
    BadInputLine {
        path: PathBuf,
        line: usize,
        kind: FunctionKind,
        shape: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A `*_hex` field or `{"hex": ...}` value is not hex.
    #[error("{}:{line}: `{text}` is not hex: {source}", path.display())]
    BadHex {
        path: PathBuf,
        line: usize,
        text: String,
        #[source]
        source: hex::FromHexError,
    },
    /// A line gives a field both as text and as hex.
    #[error("{}:{line}: `{field}` and `{field}_hex` both given; keep one", path.display())]
    BothSpellings {
        path: PathBuf,
        line: usize,
        field: &'static str,
    },
    /// The call failed (boxed: a call error is large).
    #[error(transparent)]
    Call(Box<CallError>),
    /// The call succeeded but its output is not framed for its kind.
    #[error("plugin `{plugin}` function `{function}` returned malformed output: {source}")]
    Malformed {
        plugin: String,
        function: String,
        #[source]
        source: weir_abi::FrameError,
    },
}

/// Parses `KIND:NAME` (or `KIND__NAME`, the spelling for languages that
/// cannot put `:` in an export name).
pub fn parse_function(spec: &str) -> Result<(FunctionKind, String), PluginToolError> {
    FunctionKind::parse_export(spec)
        .map(|(kind, name)| (kind, name.to_owned()))
        .ok_or_else(|| PluginToolError::BadFunction {
            spec: spec.to_owned(),
        })
}

fn load(module: &Path) -> Result<Plugin, super::CliError> {
    let runtime = Runtime::new(&RuntimeConfig::default()).map_err(super::CliError::Runtime)?;
    Ok(runtime.load_file(module)?)
}

/// `weir plugin test MODULE [--function KIND:NAME]`.
pub fn test(module: &Path, function: Option<&str>) -> Result<(), super::CliError> {
    let selection = match function {
        Some(spec) => {
            let (kind, name) = parse_function(spec)?;
            Selection::Only(kind, name)
        }
        None => Selection::All,
    };
    let plugin = load(module)?;
    let cases = conformance::cases(&plugin, &selection).map_err(PluginToolError::from)?;
    let mut failed = 0;
    for case in &cases {
        let result = conformance::run_case(&plugin, case);
        failed += usize::from(!result.passed);
        println!("{result}");
    }
    let total = cases.len();
    println!(
        "{}: {total} case(s), {} passed, {failed} failed",
        plugin.name(),
        total - failed
    );
    if failed > 0 {
        return Err(PluginToolError::TestsFailed {
            plugin: plugin.name().to_string(),
            failed,
            total,
        }
        .into());
    }
    Ok(())
}

/// Where `weir plugin call` takes its input from.
#[derive(Debug, Clone)]
pub enum CallInput {
    /// Lines of text, one unkeyed record each (map functions).
    Text(String),
    /// A file of JSON lines (`-`: standard input).
    Json(PathBuf),
}

/// Options of `weir plugin call`.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// `KIND:NAME`.
    pub function: String,
    /// The input.
    pub input: CallInput,
    /// Fuel budget [default: the runtime's].
    pub fuel: Option<u64>,
    /// Batch time handed to the guest, in ms [default: 0].
    pub batch_time_ms: i64,
}

const MAP_SHAPE: &str =
    r#"{"key": BYTES, "value": BYTES} (key optional; or "key_hex"/"value_hex": "6869")"#;
const REDUCE_SHAPE: &str = r#"one group: {"key": BYTES, "values": [BYTES, ...]}"#;
const UPDATE_SHAPE: &str = r#"one entry: {"key": BYTES, "state": BYTES (optional), "timed_out": false, "values": [BYTES, ...]}"#;

fn shape(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Map | FunctionKind::Migrate => MAP_SHAPE,
        FunctionKind::Reduce => REDUCE_SHAPE,
        FunctionKind::Update => UPDATE_SHAPE,
    }
}

/// `weir plugin call MODULE KIND:NAME ...`: runs one function on a fresh
/// instance and prints its output as `print` does, plus fuel and time.
pub fn call(module: &Path, opts: &CallOptions) -> Result<(), super::CliError> {
    let (kind, name) = parse_function(&opts.function)?;
    let body = match &opts.input {
        CallInput::Text(text) if matches!(kind, FunctionKind::Map | FunctionKind::Migrate) => text
            .lines()
            .map(|l| (&b""[..], l.as_bytes()))
            .collect::<RecordBatch>()
            .into_bytes(),
        CallInput::Text(_) => {
            return Err(PluginToolError::TextNotForKind {
                kind,
                shape: shape(kind),
            }
            .into())
        }
        CallInput::Json(path) => json_body(kind, path)?,
    };
    let plugin = load(module)?;
    let mut limits = Limits::default();
    if let Some(fuel) = opts.fuel {
        limits.fuel = fuel;
    }
    let inv = Invocation {
        header: weir_abi::CallHeader {
            batch_time_ms: opts.batch_time_ms,
            partition: 0,
            num_partitions: 1,
        },
        limits,
        ..Invocation::default()
    };
    let (result, stats) = plugin.call_measured(kind, &name, &inv, &body);
    eprintln!(
        "fuel: {} of {}, time: {:.3} ms",
        stats.fuel,
        limits.fuel,
        stats.elapsed.as_secs_f64() * 1000.0
    );
    let out = result.map_err(|e| PluginToolError::Call(Box::new(e)))?;
    let text = render_output(kind, &body, &out).map_err(|source| PluginToolError::Malformed {
        plugin: plugin.name().to_string(),
        function: kind.export_name(&name),
        source,
    })?;
    print!("{text}");
    Ok(())
}

/// Renders a call's output: records as `print` shows them; for reduce one
/// `(key,value)` per group; for update first one `state` line per entry,
/// then the emitted records.
pub fn render_output(
    kind: FunctionKind,
    body: &[u8],
    out: &[u8],
) -> Result<String, weir_abi::FrameError> {
    let mut s = String::new();
    let mut line = |k: &[u8], v: &[u8]| {
        render_record(ValueKind::Opaque, k, v, &mut s);
        s.push('\n');
    };
    match kind {
        FunctionKind::Map | FunctionKind::Migrate => {
            RecordBatch::from_slice(out)?
                .iter()
                .for_each(|(k, v)| line(k, v));
        }
        FunctionKind::Reduce => {
            let groups = weir_abi::read_groups(body)?;
            for (g, v) in groups.iter().zip(read_reduced(out, groups.len())?) {
                line(g.key, v);
            }
        }
        FunctionKind::Update => {
            let entries = weir_abi::read_update_entries(body)?;
            let decoded = UpdateOutput::decode(out, entries.len())?;
            let mut states = String::new();
            for (e, state) in entries.iter().zip(&decoded.states) {
                states.push_str("state ");
                match state {
                    Some(st) => render_record(ValueKind::Opaque, e.key, st, &mut states),
                    None => {
                        states.push_str("removed ");
                        crate::output::render_bytes(e.key, &mut states);
                    }
                }
                states.push('\n');
            }
            decoded.emitted.iter().for_each(|(k, v)| line(k, v));
            s.insert_str(0, &states);
        }
    }
    Ok(s)
}

/// Bytes in a JSON input line: a string is its UTF-8 bytes, an integer an
/// `i64` (8 bytes little-endian, weir's count), `{"hex": "..."}` raw bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonBytes {
    Text(String),
    Int(i64),
    Hex { hex: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    key: Option<JsonBytes>,
    key_hex: Option<String>,
    value: Option<JsonBytes>,
    value_hex: Option<String>,
    /// Reduce: the group's values; update: the entry's new values.
    values: Option<Vec<JsonBytes>>,
    /// Update: the key's state (absent: no state).
    state: Option<JsonBytes>,
    #[serde(default)]
    timed_out: bool,
}

/// One input line made into bytes.
struct Line {
    key: Vec<u8>,
    value: Vec<u8>,
    values: Vec<Vec<u8>>,
    state: Option<Vec<u8>>,
    timed_out: bool,
}

fn json_body(kind: FunctionKind, path: &Path) -> Result<Vec<u8>, PluginToolError> {
    let lines = read_json_lines(kind, path)?;
    Ok(match kind {
        FunctionKind::Map | FunctionKind::Migrate => lines
            .iter()
            .map(|l| (&l.key[..], &l.value[..]))
            .collect::<RecordBatch>()
            .into_bytes(),
        FunctionKind::Reduce => {
            let mut w = GroupsWriter::new();
            for l in &lines {
                w.push(&l.key, l.values.iter().map(Vec::as_slice));
            }
            w.into_bytes()
        }
        FunctionKind::Update => {
            let entries: Vec<UpdateEntry<'_>> = lines
                .iter()
                .map(|l| UpdateEntry {
                    key: &l.key,
                    state: l.state.as_deref(),
                    timed_out: l.timed_out,
                    values: l.values.iter().map(Vec::as_slice).collect(),
                })
                .collect();
            write_update_entries(&entries)
        }
    })
}

fn read_json_lines(kind: FunctionKind, path: &Path) -> Result<Vec<Line>, PluginToolError> {
    let read_err = |source| PluginToolError::ReadInput {
        path: path.to_owned(),
        source,
    };
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(read_err)?,
        ))
    };
    let mut lines = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let text = text.map_err(read_err)?;
        if text.trim().is_empty() {
            continue;
        }
        let rec: JsonRecord =
            serde_json::from_str(&text).map_err(|source| PluginToolError::BadInputLine {
                path: path.to_owned(),
                line: i + 1,
                kind,
                shape: shape(kind),
                source,
            })?;
        lines.push(line_bytes(rec, path, i + 1)?);
    }
    Ok(lines)
}

fn line_bytes(rec: JsonRecord, path: &Path, line: usize) -> Result<Line, PluginToolError> {
    let hex = |text: String| {
        hex::decode(&text).map_err(|source| PluginToolError::BadHex {
            path: path.to_owned(),
            line,
            text,
            source,
        })
    };
    let bytes = |b: JsonBytes| match b {
        JsonBytes::Text(s) => Ok(s.into_bytes()),
        JsonBytes::Int(n) => Ok(n.to_le_bytes().to_vec()),
        JsonBytes::Hex { hex: h } => hex(h),
    };
    let pick = |field, plain: Option<JsonBytes>, hexed: Option<String>| match (plain, hexed) {
        (Some(_), Some(_)) => Err(PluginToolError::BothSpellings {
            path: path.to_owned(),
            line,
            field,
        }),
        (None, Some(h)) => hex(h),
        (Some(b), None) => bytes(b),
        (None, None) => Ok(Vec::new()),
    };
    Ok(Line {
        key: pick("key", rec.key, rec.key_hex)?,
        value: pick("value", rec.value, rec.value_hex)?,
        values: rec
            .values
            .unwrap_or_default()
            .into_iter()
            .map(bytes)
            .collect::<Result<_, _>>()?,
        state: rec.state.map(bytes).transpose()?,
        timed_out: rec.timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_given_as_text_and_as_hex_is_refused() {
        let rec: JsonRecord = serde_json::from_str(r#"{"key": "a", "key_hex": "61"}"#).unwrap();
        let err = line_bytes(rec, Path::new("in.jsonl"), 3).err().unwrap();
        assert_eq!(
            err.to_string(),
            "in.jsonl:3: `key` and `key_hex` both given; keep one"
        );
        let rec: JsonRecord = serde_json::from_str(r#"{"value_hex": "6162"}"#).unwrap();
        assert_eq!(line_bytes(rec, Path::new("x"), 1).unwrap().value, b"ab");
    }

    #[test]
    fn function_specs() {
        assert_eq!(
            parse_function("map:split").unwrap(),
            (FunctionKind::Map, "split".into())
        );
        assert_eq!(
            parse_function("reduce__sum").unwrap(),
            (FunctionKind::Reduce, "sum".into())
        );
        for bad in ["split", "map:", "mapp:split", ""] {
            assert!(parse_function(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_values() {
        let rec: JsonRecord =
            serde_json::from_str(r#"{"key": "w", "values": [1, "a", {"hex": "ff00"}]}"#).unwrap();
        let line = line_bytes(rec, Path::new("x"), 1).unwrap();
        assert_eq!(line.key, b"w");
        assert_eq!(
            line.values,
            vec![1i64.to_le_bytes().to_vec(), b"a".to_vec(), vec![0xff, 0]]
        );
    }
}
