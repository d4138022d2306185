//! A conformance suite for plugin modules, in any language: a corpus of
//! calls per function, each with what the host must see come back.
//!
//! **Reference functions.** The word-count functions every example plugin
//! implements — `map:split`, `reduce:sum`, `update:running_count` (see
//! `plugins/wordcount`) — have a native reference implementation here
//! ([`wordcount`]); a module's output must equal it byte for byte, and the
//! cases that must fail (invalid UTF-8, an overflowing sum, a value that is
//! not 8 bytes) must fail with a guest error (status 1), not a trap.
//!
//! **Any other function** gets generic checks ([`generic`]): an empty input
//! succeeds or fails cleanly, output framing is valid for the kind, two
//! identical calls give identical bytes, and odd bytes (an empty key,
//! invalid UTF-8) never trap.
//!
//! [`run`] runs the corpus on one plugin, [`compare`] runs it on two and
//! checks they agree case by case (for ports of a plugin to another
//! language), [`cases`] gives the corpus itself. `weir plugin test MODULE`
//! prints a [`Report`].
//!
//! ```no_run
//! use weir::conformance::{self, Selection};
//! use weir::wasm::{Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(&RuntimeConfig::default())?;
//! let plugin = runtime.load_file("target/plugins/wordcount.wasm")?;
//! let report = conformance::run(&plugin, &Selection::All)?;
//! assert!(report.passed(), "{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use weir_abi::{read_reduced, CallHeader, FunctionKind, RecordBatch, UpdateOutput};

use crate::wasm::{CallErrorKind, CallStats, FunctionInfo, Invocation, Limits, Plugin};

pub mod generic;
pub mod wordcount;

/// Limits of a suite call: the default ones, but a bounded fuel budget and
/// deadline, so a runaway plugin fails a case quickly instead of hanging.
pub fn suite_limits() -> Limits {
    Limits {
        fuel: 1_000_000_000,
        deadline: Duration::from_secs(30),
        ..Limits::default()
    }
}

/// One call of the corpus and what must come back.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short description, unique per function.
    pub name: String,
    /// The function's kind.
    pub kind: FunctionKind,
    /// The function's name (the export without the kind prefix).
    pub function: String,
    /// The call header (batch time, partition).
    pub header: CallHeader,
    /// Limits of the call ([`suite_limits`] unless the case tests a limit).
    pub limits: Limits,
    /// The body after the call header, framed for the kind.
    pub body: Vec<u8>,
    /// What must come back.
    pub expect: Expect,
}

impl Case {
    /// The export name, `KIND:NAME`.
    pub fn export(&self) -> String {
        self.kind.export_name(&self.function)
    }

    fn invocation(&self) -> Invocation {
        Invocation {
            header: self.header,
            limits: self.limits,
            ..Invocation::default()
        }
    }
}

/// What a case requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Status 0 with exactly these output bytes.
    Output(Vec<u8>),
    /// Status 1: the user function reports an error (not a trap).
    GuestError,
    /// The call fails because its output exceeds the case's output limit.
    OutputTooLarge,
    /// No reference: status 0 with output framed for the kind, or a guest
    /// error; never a trap or a protocol error.
    Clean,
    /// No reference: clean, and a second identical call gives the same
    /// bytes (or the same error).
    Deterministic,
}

/// What one call gave, as far as the suite cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Status 0 and these output bytes.
    Output(Vec<u8>),
    /// Status 1 and this message.
    GuestError(String),
    /// Any other failure: a trap, a limit, a protocol error. `code` is
    /// [`CallErrorKind::code`].
    Failed {
        /// Machine-readable kind of failure.
        code: &'static str,
        /// The host's message.
        message: String,
    },
}

impl Observed {
    fn describe(&self) -> String {
        match self {
            Observed::Output(out) => format!("succeeded with {} bytes", out.len()),
            Observed::GuestError(msg) => format!("failed with a guest error ({msg})"),
            Observed::Failed { code, message } => format!("failed: {code} ({message})"),
        }
    }
}

/// The verdict on one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub case: String,
    /// The function, `KIND:NAME`.
    pub function: String,
    /// True when the plugin did what the case requires.
    pub passed: bool,
    /// Why it failed, or a note on a pass (e.g. which guest error).
    pub reason: String,
    /// First byte offset at which the output differs from the reference
    /// (or at which its framing breaks), when that is the reason.
    pub first_diff: Option<usize>,
    /// What the (first) call cost.
    pub stats: CallStats,
}

/// The verdicts on a whole corpus.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plugin (for [`compare`]: `A vs B`).
    pub plugin: String,
    /// One per case, in corpus order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// True when every case passed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    /// The cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| !r.passed)
    }

    /// One line: how many cases passed and failed.
    pub fn summary(&self) -> String {
        let failed = self.failures().count();
        let fuel: u64 = self.results.iter().map(|r| r.stats.fuel).sum();
        format!(
            "{}: {} case(s), {} passed, {} failed, {} fuel",
            self.plugin,
            self.results.len(),
            self.results.len() - failed,
            failed,
            fuel
        )
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { '✓' } else { '✗' };
        write!(
            f,
            "{mark} {} {} (fuel {}, {:.2} ms)",
            self.function,
            self.case,
            self.stats.fuel,
            self.stats.elapsed.as_secs_f64() * 1000.0
        )?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            writeln!(f, "{r}")?;
        }
        write!(f, "{}", self.summary())
    }
}

/// Which functions of a plugin to test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every function the module exports.
    All,
    /// One function.
    Only(FunctionKind, String),
}

/// The suite cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The selected function is not exported by the module.
    #[error("plugin `{plugin}` has no function `{kind}:{function}`; it exports: {}", exports.join(", "))]
    NoSuchFunction {
        plugin: String,
        kind: FunctionKind,
        function: String,
        exports: Vec<String>,
    },
    /// Two plugins to compare share no function.
    #[error("plugins `{a}` and `{b}` export no function in common")]
    NothingInCommon { a: String, b: String },
}

/// The corpus for one function: the reference cases for the word-count
/// functions, generic checks for any other.
pub fn cases_for(kind: FunctionKind, function: &str) -> Vec<Case> {
    wordcount::cases(kind, function).unwrap_or_else(|| generic::cases(kind, function))
}

/// The corpus for the selected functions of `plugin`.
pub fn cases(plugin: &Plugin, selection: &Selection) -> Result<Vec<Case>, ConformanceError> {
    Ok(selected(plugin, selection)?
        .iter()
        .flat_map(|f| cases_for(f.kind, &f.name))
        .collect())
}

fn selected(plugin: &Plugin, selection: &Selection) -> Result<Vec<FunctionInfo>, ConformanceError> {
    match selection {
        Selection::All => Ok(plugin.functions().to_vec()),
        Selection::Only(kind, name) if plugin.has_function(*kind, name) => Ok(vec![FunctionInfo {
            kind: *kind,
            name: name.clone(),
        }]),
        Selection::Only(kind, name) => Err(ConformanceError::NoSuchFunction {
            plugin: plugin.name().to_string(),
            kind: *kind,
            function: name.clone(),
            exports: exports(plugin),
        }),
    }
}

fn exports(plugin: &Plugin) -> Vec<String> {
    plugin
        .functions()
        .iter()
        .map(|f| f.kind.export_name(&f.name))
        .collect()
}

/// Runs the corpus of the selected functions on `plugin`.
pub fn run(plugin: &Plugin, selection: &Selection) -> Result<Report, ConformanceError> {
    Ok(Report {
        plugin: plugin.name().to_string(),
        results: cases(plugin, selection)?
            .iter()
            .map(|c| run_case(plugin, c))
            .collect(),
    })
}

/// Calls `plugin` once with the case's input.
pub fn observe(plugin: &Plugin, case: &Case) -> (Observed, CallStats) {
    let (result, stats) =
        plugin.call_measured(case.kind, &case.function, &case.invocation(), &case.body);
    let observed = match result {
        Ok(out) => Observed::Output(out),
        Err(e) => match e.kind {
            CallErrorKind::Guest { message } => Observed::GuestError(message),
            ref kind => Observed::Failed {
                code: kind.code(),
                message: kind.to_string(),
            },
        },
    };
    (observed, stats)
}

/// Runs one case on `plugin` and judges it.
pub fn run_case(plugin: &Plugin, case: &Case) -> CaseResult {
    let (observed, stats) = observe(plugin, case);
    // A first call that failed outright is judged without a second.
    let repeat =
        case.expect == Expect::Deterministic && !matches!(observed, Observed::Failed { .. });
    let second = repeat.then(|| observe(plugin, case).0);
    let verdict = judge(case, &observed, second.as_ref());
    CaseResult {
        case: case.name.clone(),
        function: case.export(),
        passed: verdict.passed,
        reason: verdict.reason,
        first_diff: verdict.first_diff,
        stats,
    }
}

/// A verdict before it is attached to its case.
struct Verdict {
    passed: bool,
    reason: String,
    first_diff: Option<usize>,
}

impl Verdict {
    fn pass(note: impl Into<String>) -> Verdict {
        Verdict {
            passed: true,
            reason: note.into(),
            first_diff: None,
        }
    }

    fn fail(reason: impl Into<String>, first_diff: Option<usize>) -> Verdict {
        Verdict {
            passed: false,
            reason: reason.into(),
            first_diff,
        }
    }
}

fn judge(case: &Case, got: &Observed, second: Option<&Observed>) -> Verdict {
    match (&case.expect, got) {
        (Expect::Output(want), Observed::Output(out)) if want == out => Verdict::pass(""),
        (Expect::Output(want), Observed::Output(out)) => {
            let at = first_difference(want, out);
            Verdict::fail(describe_difference(case.kind, want, out, at), Some(at))
        }
        (Expect::Output(_), other) => {
            Verdict::fail(format!("must succeed, but {}", other.describe()), None)
        }
        (Expect::GuestError, Observed::GuestError(msg)) => {
            Verdict::pass(format!("guest error: {msg}"))
        }
        (Expect::GuestError, other) => Verdict::fail(
            format!(
                "must fail with a guest error (status 1), but {}",
                other.describe()
            ),
            None,
        ),
        (
            Expect::OutputTooLarge,
            Observed::Failed {
                code: "output_too_large",
                ..
            },
        ) => Verdict::pass("refused: output over the limit"),
        (Expect::OutputTooLarge, other) => Verdict::fail(
            format!(
                "must fail for output over the {}-byte limit, but {}",
                case.limits.output_bytes,
                other.describe()
            ),
            None,
        ),
        (Expect::Clean | Expect::Deterministic, _) => judge_clean(case, got, second),
    }
}

fn judge_clean(case: &Case, got: &Observed, second: Option<&Observed>) -> Verdict {
    let first = match got {
        Observed::Output(out) => match check_framing(case.kind, &case.body, out) {
            Ok(()) => Verdict::pass(format!("ok, {} bytes", out.len())),
            Err(e) => {
                return Verdict::fail(
                    format!("output is not framed as a {} output: {e}", case.kind),
                    Some(e.offset),
                )
            }
        },
        Observed::GuestError(msg) => Verdict::pass(format!("guest error: {msg}")),
        Observed::Failed { .. } => {
            return Verdict::fail(
                format!(
                    "must succeed or fail cleanly (status 1), but {}",
                    got.describe()
                ),
                None,
            )
        }
    };
    match (second, got) {
        (Some(again), _) if again == got => first,
        (Some(Observed::Output(b)), Observed::Output(a)) => {
            let at = first_difference(a, b);
            Verdict::fail(
                format!("not deterministic: a second identical call differs at byte {at}"),
                Some(at),
            )
        }
        (Some(again), _) => Verdict::fail(
            format!(
                "not deterministic: first call {}, second {}",
                got.describe(),
                again.describe()
            ),
            None,
        ),
        (None, _) => first,
    }
}

/// Checks `out` is framed as the output of a `kind` call on `body`.
pub fn check_framing(
    kind: FunctionKind,
    body: &[u8],
    out: &[u8],
) -> Result<(), weir_abi::FrameError> {
    let entries = || {
        body.get(..4).map_or(0, |b| {
            u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
        })
    };
    match kind {
        FunctionKind::Map | FunctionKind::Migrate => RecordBatch::from_slice(out).map(drop),
        FunctionKind::Reduce => read_reduced(out, entries()).map(drop),
        FunctionKind::Update => UpdateOutput::decode(out, entries()).map(drop),
    }
}

/// The first offset at which `a` and `b` differ (the shorter length when
/// one is a prefix of the other).
pub fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn describe_difference(kind: FunctionKind, want: &[u8], got: &[u8], at: usize) -> String {
    let byte = |b: &[u8]| b.get(at).map_or("end".to_owned(), |x| format!("0x{x:02x}"));
    let mut s = format!(
        "output differs from the reference at byte {at} (expected {}, got {}; {} vs {} bytes)",
        byte(want),
        byte(got),
        want.len(),
        got.len()
    );
    if matches!(kind, FunctionKind::Map | FunctionKind::Migrate) {
        if let (Ok(w), Ok(g)) = (RecordBatch::from_slice(want), RecordBatch::from_slice(got)) {
            s.push_str(&describe_records(&w, &g));
        }
    }
    s
}

/// The first record that differs, both ways, as text.
fn describe_records(want: &RecordBatch, got: &RecordBatch) -> String {
    let show = |r: Option<(&[u8], &[u8])>| match r {
        Some((k, v)) => format!("({},{})", show_bytes(k), show_bytes(v)),
        None => "nothing".to_owned(),
    };
    let (mut w, mut g) = (want.iter(), got.iter());
    for i in 0.. {
        let (a, b) = (w.next(), g.next());
        if a.is_none() && b.is_none() {
            break;
        }
        if a != b {
            return format!(
                "; record {i}: expected {}, got {} ({} vs {} records)",
                show(a),
                show(b),
                want.len(),
                got.len()
            );
        }
    }
    String::new()
}

/// Bytes as a reader wants them: quoted text, a count for 8 non-text
/// bytes, else hex.
fn show_bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ if b.len() == 8 => i64::from_le_bytes(b.try_into().expect("8 bytes")).to_string(),
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("0x{}", hex::encode(b)),
    }
}

/// Runs the corpus of every function both plugins export on both, and
/// checks they agree case by case: the same output bytes, or both a guest
/// error, or both the same kind of failure. Reference expectations are not
/// checked here (run [`run`] on each for that).
pub fn compare(a: &Plugin, b: &Plugin, selection: &Selection) -> Result<Report, ConformanceError> {
    let common: Vec<FunctionInfo> = selected(a, selection)?
        .into_iter()
        .filter(|f| b.has_function(f.kind, &f.name))
        .collect();
    if common.is_empty() {
        return Err(ConformanceError::NothingInCommon {
            a: a.name().to_string(),
            b: b.name().to_string(),
        });
    }
    let results = common
        .iter()
        .flat_map(|f| cases_for(f.kind, &f.name))
        .map(|case| compare_case(a, b, &case))
        .collect();
    Ok(Report {
        plugin: format!("{} vs {}", a.name(), b.name()),
        results,
    })
}

fn compare_case(a: &Plugin, b: &Plugin, case: &Case) -> CaseResult {
    let (x, stats) = observe(a, case);
    let (y, _) = observe(b, case);
    let verdict = match (&x, &y) {
        (Observed::Output(p), Observed::Output(q)) if p != q => {
            let at = first_difference(p, q);
            Verdict::fail(
                format!(
                    "outputs differ: {}",
                    describe_difference(case.kind, p, q, at)
                ),
                Some(at),
            )
        }
        (Observed::Output(_), Observed::Output(_))
        | (Observed::GuestError(_), Observed::GuestError(_)) => Verdict::pass(""),
        (Observed::Failed { code: c, .. }, Observed::Failed { code: d, .. }) if c == d => {
            Verdict::pass(format!("both {c}"))
        }
        _ => Verdict::fail(
            format!("first {}, second {}", x.describe(), y.describe()),
            None,
        ),
    };
    CaseResult {
        case: case.name.clone(),
        function: case.export(),
        passed: verdict.passed,
        reason: verdict.reason,
        first_diff: verdict.first_diff,
        stats,
    }
}
