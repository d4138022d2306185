//! The command line through the real binary: `weir validate` on broken and
//! good pipeline files (tests/fixtures/pipelines), `weir run` to completion
//! on a simulated clock, graceful stop on SIGTERM/SIGINT, a plugin that
//! fails mid-run, `--help`, the exit statuses (0, 1, 2, 130), `-q`/`-v`,
//! JSON log lines, the summary at exit and shell completions (issue 12).
//!
//! No sleeps: the signal tests wait for the first printed batch header, and
//! every wait on the child is bounded by a watchdog that kills it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::{text, wat_wordcount, weir};

/// How long any child may run before the test kills it and fails.
const LIMIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    weir_tests::fixture("pipelines").join(name)
}

/// Kills `pid` with SIGKILL unless told the child is done within [`LIMIT`].
/// The join handle says whether it had to.
struct Watchdog {
    done: mpsc::Sender<()>,
    thread: JoinHandle<bool>,
}

impl Watchdog {
    fn new(pid: u32) -> Watchdog {
        let (done, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match rx.recv_timeout(LIMIT) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The child is not reaped until the test's wait returns, so
                // the pid is still its own.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                true
            }
            _ => false,
        });
        Watchdog { done, thread }
    }

    /// Call after the child was reaped; fails the test if it was killed.
    fn finish(self, what: &str) {
        let _ = self.done.send(());
        let fired = self.thread.join().expect("watchdog thread");
        assert!(!fired, "{what} ran longer than {LIMIT:?} and was killed");
    }
}

/// Runs `cmd` to completion under a watchdog.
fn run_bounded(mut cmd: Command, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the weir binary");
    let dog = Watchdog::new(child.id());
    let out = child.wait_with_output().expect("wait for weir");
    dog.finish(what);
    out
}

fn no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
}

// ---- weir validate -------------------------------------------------------

fn validate(path: &Path) -> Output {
    let mut cmd = weir();
    cmd.arg("validate").arg(path).env("WEIR_LOG", "off");
    run_bounded(cmd, &format!("weir validate {}", path.display()))
}

/// `weir validate FIXTURE` fails with exactly these problems, each given as
/// its `line:col` and fragments its message must contain.
fn validate_fails(name: &str, expected: &[(&str, &[&str])]) -> String {
    let path = fixture(name);
    assert!(path.is_file(), "missing fixture {}", path.display());
    let out = validate(&path);
    let stderr = text(&out.stderr);
    no_panic(&stderr);
    assert_eq!(out.status.code(), Some(2), "{name}:\n{stderr}");
    assert!(out.stdout.is_empty(), "{name}: {}", text(&out.stdout));
    let n = expected.len();
    let header = format!(
        "error: {} has {n} problem{}:",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    assert!(
        stderr.starts_with(&header),
        "{name}: expected {header:?} first in:\n{stderr}"
    );
    let problems: Vec<&str> = stderr.lines().skip(1).collect();
    assert_eq!(problems.len(), n, "{name}:\n{stderr}");
    for ((loc, fragments), line) in expected.iter().zip(&problems) {
        let located = format!("  {}:{loc}: ", path.display());
        assert!(
            line.starts_with(&located),
            "{name}: expected a problem at {loc}, got:\n{line}\nin:\n{stderr}"
        );
        for f in *fragments {
            assert!(line.contains(f), "{name}: no {f:?} in:\n{line}");
        }
    }
    stderr
}

#[test]
fn validate_a_good_pipeline() {
    let path = fixture("good.toml");
    let out = validate(&path);
    let stderr = text(&out.stderr);
    no_panic(&stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: ok (1 source(s), 2 stream(s), 1 output(s), 1 plugin(s))\n",
            path.display()
        )
    );
}

#[test]
fn validate_malformed_toml() {
    // The string opened on line 3 is not closed before the line ends.
    validate_fails(
        "malformed_toml.toml",
        &[("3:21", &["invalid basic string"])],
    );
}

#[test]
fn validate_unknown_top_level_key() {
    validate_fails(
        "unknown_top_level_key.toml",
        &[(
            "12:2",
            &[
                "unknown field `checkpoint`",
                "expected one of `job`, `limits`, `plugins`, `source`, `stream`, `output`",
            ],
        )],
    );
}

#[test]
fn validate_unknown_key_in_a_stream() {
    validate_fails(
        "unknown_stream_key.toml",
        &[(
            "13:1",
            &[
                "unknown field `window`",
                "expected one of `name`, `op`, `input`, `inputs`, `function`, `partitions`",
            ],
        )],
    );
}

const KNOWN_OPERATORS: &str = "known operators: map, flat_map, filter, map_partitions, \
     transform, repartition, union, count, reduce, count_by_value, reduce_by_key, \
     group_by_key, join, left_outer_join, right_outer_join, full_outer_join, cogroup";

#[test]
fn validate_unknown_operator() {
    let stderr = validate_fails(
        "unknown_operator.toml",
        &[(
            "7:6",
            &[
                "stream `sorted`: unknown operator `sort_by_key`; ",
                KNOWN_OPERATORS,
            ],
        )],
    );
    assert!(!stderr.contains("did you mean"), "{stderr}");
}

#[test]
fn validate_spark_operator_name_gets_a_hint() {
    validate_fails(
        "spark_operator_name.toml",
        &[(
            "16:6",
            &[
                "stream `counts`: unknown operator `reduceByKey` (did you mean `reduce_by_key`?)",
                KNOWN_OPERATORS,
            ],
        )],
    );
}

#[test]
fn validate_unknown_plugin_alias() {
    validate_fails(
        "unknown_plugin_alias.toml",
        &[(
            "12:12",
            &["stream `words`: unknown plugin `wordcount`; plugins declared in [plugins]: wc"],
        )],
    );
}

#[test]
fn validate_unknown_function_lists_the_plugins_functions() {
    validate_fails(
        "unknown_function.toml",
        &[(
            "8:1",
            &[
                "stream `words` (flat_map, function \"wc:tokenize\"): ",
                "plugin `wordcount` has no function `tokenize`; its map functions are: split",
            ],
        )],
    );
}

#[test]
fn validate_function_of_the_wrong_kind() {
    validate_fails(
        "wrong_function_kind.toml",
        &[(
            "14:1",
            &[
                "stream `counts` (reduce_by_key, function \"wc:split\"): ",
                "`wordcount:split` is a map function, but reduce_by_key needs a reduce function",
            ],
        )],
    );
}

#[test]
fn validate_undefined_input_stream() {
    validate_fails(
        "undefined_input.toml",
        &[(
            "8:1",
            &["stream `words` reads `sentences`, which is not defined; defined streams: lines, words"],
        )],
    );
}

#[test]
fn validate_cycle_names_its_streams() {
    // a reads c, c reads b, b reads a.
    validate_fails(
        "cycle.toml",
        &[("8:1", &["streams form a cycle: a → c → b → a"])],
    );
}

#[test]
fn validate_missing_plugin_file() {
    let missing = fixture("no_such_plugin.wasm");
    validate_fails(
        "missing_plugin_file.toml",
        &[(
            "2:6",
            &[
                "plugin `wc`: ",
                &format!("cannot read plugin module {}", missing.display()),
                "No such file or directory",
            ],
        )],
    );
}

#[test]
fn validate_bad_duration() {
    validate_fails(
        "bad_duration.toml",
        &[(
            "2:18",
            &[
                "`batch_interval` = \"fast\" is not a duration",
                "write e.g. \"1s\" or \"200ms\"",
            ],
        )],
    );
}

#[test]
fn validate_zero_partitions() {
    validate_fails(
        "zero_partitions.toml",
        &[("2:14", &["`partitions` must be at least 1"])],
    );
}

#[test]
fn validate_suffix_that_escapes_the_output_directory() {
    validate_fails(
        "suffix_escapes.toml",
        &[(
            "6:1",
            &["`suffix` = \"x/../../../escape\" must be a plain name ending"],
        )],
    );
}

#[test]
fn validate_join_with_one_input() {
    validate_fails(
        "join_one_input.toml",
        &[(
            "6:1",
            &["stream `joined`: `join` reads exactly two (left, right) input streams, 1 given"],
        )],
    );
}

#[test]
fn validate_no_outputs() {
    validate_fails(
        "no_outputs.toml",
        &[("1:1", &["the pipeline has no [[output]]: add one"])],
    );
}

#[test]
fn validate_reports_several_problems_in_one_run() {
    validate_fails(
        "several_problems.toml",
        &[
            ("3:18", &["`batch_interval` = \"fast\" is not a duration"]),
            ("4:14", &["`partitions` must be at least 1"]),
            (
                "15:6",
                &["stream `words`: unknown operator `flatMap` (did you mean `flat_map`?)"],
            ),
            (
                "19:1",
                &["stream `counts` reads `tokens`, which is not defined"],
            ),
            ("23:12", &["stream `counts`: unknown plugin `nope`"]),
            ("25:1", &["stream `joined`: `join` reads exactly two"]),
        ],
    );
}

#[test]
fn validate_reports_file_and_plugin_problems_together() {
    validate_fails(
        "file_and_plugin_problems.toml",
        &[
            ("3:14", &["`partitions` must be at least 1"]),
            (
                "12:1",
                &["stream `words`", "has no function `splitt`", "split"],
            ),
        ],
    );
}

#[test]
fn validate_a_missing_pipeline_file() {
    let path = fixture("no_such_pipeline.toml");
    let out = validate(&path);
    let stderr = text(&out.stderr);
    no_panic(&stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:0:0: cannot read the pipeline file",
            path.display()
        )),
        "{stderr}"
    );
}

// ---- weir run to completion ----------------------------------------------

/// A TOML basic string.
fn toml_str(p: &Path) -> String {
    let s = p.to_str().expect("UTF-8 temp path");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn run_three_batches_to_text_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("out");
    let pipeline = dir.path().join("wordcount.toml");
    let plugin = wat_wordcount();
    // 200 lines per second of 5 words: 1000 words per 1 s batch.
    std::fs::write(
        &pipeline,
        format!(
            r#"[job]
name = "wc-files"
batch_interval = "1s"
partitions = 2

[plugins]
wc = {}

[[source]]
name = "lines"
type = "generator"
rate = 200
words_per_line = 5

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[stream]]
name = "counts"
op = "reduce_by_key"
input = "words"
function = "wc:sum"

[[output]]
stream = "counts"
type = "text_files"
prefix = {}
"#,
            toml_str(&plugin),
            toml_str(&out_dir.join("counts")),
        ),
    )
    .expect("write the pipeline");

    let mut cmd = weir();
    cmd.arg("run")
        .arg(&pipeline)
        .args(["--batches", "3", "--simulated-clock"]);
    let out = run_bounded(cmd, "weir run --batches 3");
    let stderr = text(&out.stderr);
    no_panic(&stderr);
    assert!(out.status.success(), "{stderr}");

    let entries: BTreeSet<String> = std::fs::read_dir(&out_dir)
        .expect("the output directory exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = ["counts-1000", "counts-2000", "counts-3000"]
        .map(String::from)
        .into();
    assert_eq!(entries, want, "batch directories (and nothing else)");

    for batch in &want {
        let batch_dir = out_dir.join(batch);
        assert!(
            batch_dir.join("_SUCCESS").is_file(),
            "{batch} has no _SUCCESS"
        );
        let parts = crate::support::part_files(&batch_dir);
        assert!(!parts.is_empty(), "{batch} has no part files");
        let mut words = BTreeSet::new();
        let mut total = 0u64;
        for part in &parts {
            for line in std::fs::read_to_string(part).unwrap().lines() {
                let (word, count) = line
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix(')'))
                    .and_then(|l| l.rsplit_once(','))
                    .unwrap_or_else(|| {
                        panic!("{}: not a (word,count) line: {line:?}", part.display())
                    });
                let count: u64 = count
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: bad count in {line:?}", part.display()));
                assert!(count > 0, "{line:?}");
                assert!(
                    words.insert(word.to_owned()),
                    "{batch}: `{word}` counted in two records"
                );
                total += count;
            }
        }
        assert_eq!(total, 1000, "{batch}: words counted");
    }
}

// ---- a plugin that fails mid-run -----------------------------------------

#[test]
fn run_reports_a_failing_plugin() {
    let mut cmd = weir();
    cmd.arg("run")
        .arg(fixture("explode.toml"))
        .args(["--batches", "5", "--simulated-clock"]);
    let out = run_bounded(cmd, "weir run explode.toml");
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    no_panic(&stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    for part in [
        "plugin `explode` function `map:explode`",
        "job `exploding`",
        "operator `checked`",
        "batch 3000 ms",
        "partition 1",
        "unreachable",
    ] {
        assert!(error.contains(part), "no {part:?} in:\n{error}");
    }
    assert!(
        stderr.contains("\n2 batch(es) completed before the failure, the last at 2000 ms"),
        "{stderr}"
    );
    // The completed batches were printed; the failed one was not.
    assert!(stdout.contains("Time: 1000 ms\n"), "{stdout}");
    assert!(stdout.contains("Time: 2000 ms\n"), "{stdout}");
    assert!(!stdout.contains("Time: 3000 ms"), "{stdout}");
}

// ---- graceful stop -------------------------------------------------------

/// Starts `weir run` on the wall clock, waits for the first printed batch,
/// sends `signal` and checks the job stops gracefully, exiting `code`.
fn stop_with(signal: &str, code: i32) {
    let mut child: Child = weir()
        .arg("run")
        .arg(fixture("system_clock_print.toml"))
        .env("WEIR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the weir binary");
    let pid = child.id();
    let dog = Watchdog::new(pid);

    // Read stdout on a thread: announce the first batch header, then keep
    // draining so the child never blocks on a full pipe.
    let (first_batch, batch_seen) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut announced = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !announced && line.starts_with("Time: ") {
                let _ = first_batch.send(line.clone());
                announced = true;
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });

    // Bounded by the watchdog: if no batch appears, it kills the child, the
    // pipe closes and the channel disconnects.
    let header = batch_seen.recv();
    if header.is_ok() {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
    }
    let status: ExitStatus = child.wait().expect("wait for weir");
    dog.finish(&format!("weir run (stopped with SIG{signal})"));
    let stdout = reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    let header = header.unwrap_or_else(|_| panic!("no batch was printed:\n{stdout}\n{stderr}"));
    assert!(header.ends_with(" ms"), "{header}");

    no_panic(&stderr);
    assert_eq!(status.code(), Some(code), "SIG{signal}: {status}\n{stderr}");
    assert!(stderr.contains("stop requested"), "SIG{signal}:\n{stderr}");
    assert!(!stderr.contains("second stop signal"), "{stderr}");
    assert!(
        stderr.contains(" stopped "),
        "no final log line in:\n{stderr}"
    );
    assert!(stderr.contains("\nsummary: "), "no summary in:\n{stderr}");
    // The batch in flight when the signal came was finished, not cut off:
    // every printed header is followed by its records.
    let headers = stdout.lines().filter(|l| l.starts_with("Time: ")).count();
    assert!(headers >= 1, "{stdout}");
    assert!(stdout.ends_with("\n\n"), "last batch cut off:\n{stdout}");
}

/// A supervisor's SIGTERM is a requested stop: exit 0.
#[test]
fn sigterm_stops_gracefully() {
    stop_with("TERM", 0);
}

/// Ctrl-C finishes the batch too, then exits 130 as an interrupted
/// command does.
#[test]
fn sigint_stops_gracefully_and_exits_130() {
    stop_with("INT", 130);
}

// ---- help ----------------------------------------------------------------

fn help(args: &[&str]) -> String {
    let mut cmd = weir();
    cmd.args(args);
    let out = run_bounded(cmd, &format!("weir {}", args.join(" ")));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    no_panic(&stderr);
    text(&out.stdout)
}

#[test]
fn help_lists_the_commands() {
    let out = help(&["--help"]);
    assert!(out.contains("Usage: weir"), "{out}");
    for command in ["run", "validate", "plugin"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "no `{command}` in:\n{out}"
        );
    }
}

#[test]
fn run_help_shows_defaults() {
    let out = help(&["run", "--help"]);
    assert!(out.contains("Usage: weir run"), "{out}");
    assert!(out.contains("[default:"), "{out}");
    for flag in [
        "--batches",
        "--batch-interval",
        "--partitions",
        "--workers",
        "--simulated-clock",
        "--stats-file",
    ] {
        assert!(out.contains(flag), "no {flag} in:\n{out}");
    }
    // Every option says what it defaults to.
    let options = out
        .lines()
        .filter(|l| l.trim_start().starts_with("--") && !l.contains("--help"))
        .count();
    let defaults = out.matches("[default:").count();
    assert!(
        defaults >= 6 && options >= 6,
        "{defaults} defaults for {options} options:\n{out}"
    );
}

#[test]
fn help_documents_the_exit_statuses() {
    let out = help(&["--help"]);
    for line in ["Exit status:", "  2 ", "  3 ", "  130 ", "WEIR_LOG_FORMAT"] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    for flag in ["--quiet", "--verbose"] {
        assert!(out.contains(flag), "no {flag} in:\n{out}");
    }
}

// ---- shell completions ---------------------------------------------------

#[test]
fn bash_completions_mention_the_subcommands() {
    let script = help(&["completions", "bash"]);
    assert!(script.contains("_weir()"), "{script}");
    for command in ["run", "validate", "replay", "plugin", "completions"] {
        assert!(script.contains(command), "no `{command}` in the script");
    }
    for shell in ["zsh", "fish"] {
        let script = help(&["completions", shell]);
        assert!(script.contains("validate"), "{shell}:\n{script}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let mut cmd = weir();
    cmd.args(["completions", "tcsh"]);
    let out = run_bounded(cmd, "weir completions tcsh");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

// ---- exit statuses, log format, summary ------------------------------------

/// `weir run FIXTURE --batches N --simulated-clock ARGS`, with `env`.
fn run_fixture(name: &str, batches: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = weir();
    cmd.args(args)
        .arg("run")
        .arg(fixture(name))
        .args(["--batches", batches, "--simulated-clock"])
        .env_remove("WEIR_LOG")
        .env_remove("WEIR_LOG_FORMAT")
        .envs(env.iter().copied());
    run_bounded(cmd, &format!("weir run {name}"))
}

#[test]
fn run_of_a_bad_pipeline_exits_2() {
    let out = run_fixture("cycle.toml", "1", &[], &[]);
    let stderr = text(&out.stderr);
    no_panic(&stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("streams form a cycle"), "{stderr}");
}

#[test]
fn run_prints_a_summary_at_exit() {
    let out = run_fixture("good.toml", "3", &[], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    for part in [
        "3 batch(es)",
        "record(s)",
        "processing mean ",
        "total delay mean ",
        " max ",
    ] {
        assert!(summary.contains(part), "no {part:?} in {summary:?}");
    }
    assert!(!summary.contains("failed"), "{summary}");
    // Without a terminal: no status line, no escape codes at all.
    assert!(!stderr.contains('\x1b'), "escape codes in:\n{stderr:?}");
    assert!(!stderr.contains('\r'), "carriage returns in:\n{stderr:?}");
    assert!(!stderr.contains("[weir] batches"), "{stderr}");
}

#[test]
fn a_failing_run_exits_1_after_its_summary() {
    let out = run_fixture("explode.toml", "5", &[], &[]);
    let stderr = text(&out.stderr);
    no_panic(&stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("summary: 2 batch(es)") && stderr.contains("1 failed attempt(s)"),
        "{stderr}"
    );
}

#[test]
fn quiet_hides_the_info_lines_and_the_summary() {
    let out = run_fixture("good.toml", "2", &["--quiet"], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "quiet run said:\n{stderr}");
    // Errors still show.
    let out = run_fixture("explode.toml", "5", &["-q"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(!stderr.contains(" INFO "), "{stderr}");
}

#[test]
fn verbose_shows_debug_lines_and_weir_log_wins() {
    let out = run_fixture("good.toml", "2", &["-v"], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(" DEBUG "), "no debug line in:\n{stderr}");
    let out = run_fixture("good.toml", "2", &["-v"], &[("WEIR_LOG", "warn")]);
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains(" DEBUG ") && !stderr.contains(" INFO "),
        "{stderr}"
    );
}

#[test]
fn json_log_lines_parse_and_include_the_batches() {
    let out = run_fixture("good.toml", "2", &[], &[("WEIR_LOG_FORMAT", "json")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l:?}")))
        .collect();
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().map(str::to_owned);
    let completed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| message(v).as_deref() == Some("batch completed"))
        .collect();
    assert_eq!(completed.len(), 2, "{stderr}");
    assert_eq!(completed[0]["level"], "INFO");
    assert_eq!(completed[0]["fields"]["batch_time_ms"], 1000);
    let summary = lines
        .iter()
        .find(|v| message(v).as_deref() == Some("run summary"))
        .unwrap_or_else(|| panic!("no run summary in:\n{stderr}"));
    assert_eq!(summary["fields"]["batches"], 2);
}

#[test]
fn with_json_logs_a_failure_is_a_json_line_too() {
    let out = run_fixture("explode.toml", "5", &[], &[("WEIR_LOG_FORMAT", "json")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last: serde_json::Value = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l:?}")))
        .last()
        .expect("some log lines");
    assert_eq!(last["level"], "ERROR", "{stderr}");
    let message = last["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("plugin `explode`"), "{stderr}");
}
