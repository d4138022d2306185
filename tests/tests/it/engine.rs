//! Sources, outputs and determinism, end to end through real sockets, real
//! files and real wasm plugins.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use weir::ops::Partitions;
use weir::{ClockMode, SourceSpec, StreamingConfig};
use weir_tests::{
    collect, context, count, guests, records, shared_plugin, simulated_config, Collected,
};

/// Upper bound on how long a live test waits for a batch; a failure bound,
/// not a synchronisation: tests move on as soon as the data arrives.
const PATIENCE: Duration = Duration::from_secs(60);

fn live_config(partitions: usize) -> StreamingConfig {
    StreamingConfig {
        job_name: "live".into(),
        batch_interval: Duration::from_millis(100),
        block_interval: Duration::from_millis(20),
        partitions,
        workers: 2,
        clock: ClockMode::System,
        ..StreamingConfig::default()
    }
}

fn word_counts(lines: &[String]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for l in lines {
        for w in l.split_whitespace() {
            *m.entry(w.to_string()).or_default() += 1;
        }
    }
    m
}

fn add_counts(into: &mut BTreeMap<String, i64>, parts: &Partitions) {
    for (k, v) in records(parts) {
        *into.entry(String::from_utf8(k).unwrap()).or_default() += count(&v);
    }
}

/// Word count over a real TCP socket. The server sends half the lines,
/// drops the connection, accepts the reconnect and sends the rest.
#[test]
fn socket_word_count_survives_a_dropped_connection() {
    let lines: Vec<String> = (0..400)
        .map(|i| format!("alpha beta{} gamma{}", i % 7, i % 3))
        .collect();
    let expected = word_counts(&lines);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let to_send = lines.clone();
    let server = std::thread::spawn(move || {
        for half in to_send.chunks(200) {
            let (mut conn, _) = listener.accept().unwrap();
            for l in half {
                writeln!(conn, "{l}").unwrap();
            }
            conn.flush().unwrap();
            // Dropping `conn` closes the connection: the receiver must reconnect.
        }
        listener // keep the port bound until the test ends
    });

    let ctx = context(live_config(3));
    let wc = shared_plugin(guests::WORDCOUNT);
    let counts = ctx
        .socket_text_stream("127.0.0.1", port)
        .unwrap()
        .flat_map(&wc, "split")
        .unwrap()
        .reduce_by_key(&wc, "sum", None)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    counts
        .foreach_batch(move |_, parts| {
            let _ = tx.send(parts.clone());
            Ok(())
        })
        .unwrap();
    let job = ctx.start(None).unwrap();
    let mut got = BTreeMap::new();
    let total: i64 = expected.values().sum();
    while got.values().sum::<i64>() < total {
        let parts = rx.recv_timeout(PATIENCE).expect("batches keep coming");
        add_counts(&mut got, &parts);
    }
    job.stop();
    let summary = job.await_termination().unwrap();
    // Whatever batches ran after the last word arrived must add nothing.
    while let Ok(parts) = rx.try_recv() {
        add_counts(&mut got, &parts);
    }
    assert_eq!(got, expected);
    assert!(summary.batches >= 1);
    let _listener = server.join().unwrap();
}

fn write_atomically(dir: &Path, name: &str, lines: &[String]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// Files moved into the directory are read once each; a file still being
/// written under a temporary (dot) name is not read until it is renamed;
/// files present before the start are ignored.
#[test]
fn file_stream_reads_each_new_file_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.txt"), "ignored line\n").unwrap();

    let ctx = context(live_config(2));
    let lines = ctx.text_file_stream(dir.path()).unwrap();
    let counted = lines.count().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines_seen = lines.clone();
    let (ltx, lrx) = mpsc::channel();
    lines_seen
        .foreach_batch(move |_, parts| {
            let _ = ltx.send(records(parts));
            Ok(())
        })
        .unwrap();
    counted
        .foreach_batch(move |_, parts| {
            let _ = tx.send(count(&records(parts)[0].1));
            Ok(())
        })
        .unwrap();
    let job = ctx.start(None).unwrap();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let next_batch = |seen: &mut Vec<Vec<u8>>| {
        let n = rx.recv_timeout(PATIENCE).expect("a batch");
        let recs = lrx.recv_timeout(PATIENCE).expect("a batch");
        assert_eq!(n as usize, recs.len());
        seen.extend(recs.into_iter().map(|(_, v)| v));
        n
    };

    // A file being written under a temporary name: never read early.
    let partial = dir.path().join(".growing.tmp");
    std::fs::write(&partial, "first half\n").unwrap();
    for _ in 0..3 {
        next_batch(&mut seen);
    }
    assert!(seen.is_empty(), "nothing new yet: {seen:?}");

    let a: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..70).map(|i| format!("b{i}")).collect();
    write_atomically(dir.path(), "a.txt", &a);
    write_atomically(dir.path(), "b.txt", &b);
    std::fs::write(&partial, "first half\nsecond half\n").unwrap();
    std::fs::rename(&partial, dir.path().join("growing.txt")).unwrap();
    let expected = a.len() + b.len() + 2;
    while seen.len() < expected {
        next_batch(&mut seen);
    }
    // Two more batches: nothing is read twice.
    next_batch(&mut seen);
    next_batch(&mut seen);
    job.stop();
    job.await_termination().unwrap();

    let mut got: Vec<String> = seen
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    got.sort();
    let mut want: Vec<String> = a
        .into_iter()
        .chain(b)
        .chain(["first half".into(), "second half".into()])
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// A late job catches up in bounded batches: with at most two files (or
/// 250 bytes) a batch, five waiting files are taken oldest first, two by
/// two (or as the bytes allow), never all at once.
#[test]
fn a_files_source_takes_at_most_its_limit_per_batch() {
    for (limits, want) in [
        (
            weir::stream::FileLimits {
                max_files: Some(2),
                max_bytes: None,
            },
            vec![20, 20, 10, 0],
        ),
        (
            weir::stream::FileLimits {
                max_files: None,
                // Each file is 10 lines of 10 bytes ("fN line M" and a newline).
                max_bytes: Some(250),
            },
            vec![20, 20, 10, 0],
        ),
        (
            weir::stream::FileLimits {
                max_files: Some(0),
                max_bytes: Some(1),
            },
            vec![10, 10, 10, 10, 10, 0],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        for f in 0..5 {
            let lines: Vec<String> = (0..10).map(|l| format!("f{f} line {l}")).collect();
            write_atomically(dir.path(), &format!("{f}.txt"), &lines);
            // Distinct modification times: files are taken oldest first.
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + f);
            let file = std::fs::File::options()
                .write(true)
                .open(dir.path().join(format!("{f}.txt")))
                .unwrap();
            file.set_modified(t).unwrap();
        }
        let ctx = context(simulated_config(2, 2));
        let lines = ctx
            .source(
                Some("files"),
                SourceSpec::Files {
                    dir: dir.path().to_owned(),
                    include_existing: true,
                    limits,
                },
            )
            .unwrap();
        let (tx, rx) = mpsc::channel();
        lines
            .foreach_batch(move |_, parts| {
                let recs = records(parts);
                let _ = tx.send(recs);
                Ok(())
            })
            .unwrap();
        ctx.start(Some(want.len() as u64))
            .unwrap()
            .await_termination()
            .unwrap();
        let batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = rx.try_iter().collect();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, want, "{limits:?}");
        // Oldest first: the first batch holds file 0's lines.
        assert!(batches[0].iter().any(|(_, v)| v.as_slice() == b"f0 line 0"));
    }
}

/// Every file under `dir`, relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walkdir(dir) {
        out.insert(
            entry.strip_prefix(dir).unwrap().to_path_buf(),
            std::fs::read(&entry).unwrap(),
        );
    }
    out
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walkdir(&p));
        } else {
            files.push(p);
        }
    }
    files
}

/// Runs a word-count-and-join pipeline on a fixed generator input with
/// `workers` threads, saving text files under `out`.
fn run_to_text(out: &Path, workers: usize) {
    let ctx = context(StreamingConfig {
        workers,
        ..simulated_config(4, workers)
    });
    let wc = shared_plugin(guests::WORDCOUNT);
    let tk = shared_plugin(guests::TESTKIT);
    let gen = |seed| SourceSpec::Generator {
        kind: weir::receiver::generator::GeneratorKind::Text,
        rate: 3000,
        seed,
        words_per_line: 6,
        vocabulary: 300,
        limit: None,
    };
    let lines = ctx.source(Some("lines"), gen(1)).unwrap();
    let other = ctx.source(Some("other"), gen(2)).unwrap();
    let counts = lines
        .flat_map(&wc, "split")
        .unwrap()
        .reduce_by_key(&wc, "sum", Some(3))
        .unwrap();
    let other_counts = other
        .flat_map(&wc, "split")
        .unwrap()
        .reduce_by_key(&tk, "concat", None)
        .unwrap();
    counts
        .save_as_text_files(out.join("counts"), Some("txt"))
        .unwrap();
    counts
        .full_outer_join(&other_counts, Some(5))
        .unwrap()
        .save_as_text_files(out.join("joined"), None)
        .unwrap();
    lines
        .count_by_value(None)
        .unwrap()
        .save_as_text_files(out.join("lines"), None)
        .unwrap();
    other
        .flat_map(&wc, "split")
        .unwrap()
        .group_by_key(Some(2))
        .unwrap()
        .save_as_text_files(out.join("groups"), None)
        .unwrap();
    ctx.run(Some(3)).unwrap();
}

#[test]
fn outputs_are_byte_identical_across_worker_counts() {
    let one = tempfile::tempdir().unwrap();
    let four = tempfile::tempdir().unwrap();
    run_to_text(one.path(), 1);
    run_to_text(four.path(), 4);
    let a = tree(one.path());
    let b = tree(four.path());
    assert!(a.len() > 30, "expected many part files, got {}", a.len());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(
            b[path] == *bytes,
            "{} differs between 1 and 4 workers",
            path.display()
        );
    }
}

#[test]
fn text_files_follow_sparks_layout_and_rewrite_identically() {
    let out = tempfile::tempdir().unwrap();
    run_to_text(out.path(), 2);
    let first = tree(out.path());
    for t in [1000, 2000, 3000] {
        let dir = out.path().join(format!("counts-{t}.txt"));
        assert!(dir.join("_SUCCESS").exists());
        for p in 0..3 {
            assert!(dir.join(format!("part-{p:05}")).exists());
        }
        let text = std::fs::read_to_string(dir.join("part-00000")).unwrap();
        let line = text.lines().next().unwrap();
        assert!(
            line.starts_with('(') && line.ends_with(')') && line.contains(','),
            "{line}"
        );
    }
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no temporary directories left: {names:?}"
    );
    // Rewriting the same batches (as a replay does) gives the same bytes.
    run_to_text(out.path(), 2);
    assert_eq!(tree(out.path()), first);
}

#[test]
fn print_shows_the_batch_header_and_first_records() {
    use weir::output::print::Print;
    use weir::stream::ValueKind;
    let parts: Partitions = vec![
        [
            (&b"a"[..], &1i64.to_le_bytes()[..]),
            (b"b", &2i64.to_le_bytes()),
        ]
        .into_iter()
        .collect(),
        [(&b"c"[..], &3i64.to_le_bytes()[..])].into_iter().collect(),
    ];
    let rule = "-------------------------------------------";
    assert_eq!(
        Print::format(2, ValueKind::Count, 5000, &parts),
        format!("{rule}\nTime: 5000 ms\n{rule}\n(a,1)\n(b,2)\n...\n\n")
    );
    assert_eq!(
        Print::format(10, ValueKind::Count, 5000, &parts),
        format!("{rule}\nTime: 5000 ms\n{rule}\n(a,1)\n(b,2)\n(c,3)\n\n")
    );
}

#[test]
fn stats_are_recorded_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.jsonl");
    let ctx = context(StreamingConfig {
        stats_file: Some(stats.clone()),
        ..simulated_config(2, 2)
    });
    let src = ctx
        .queue_stream(
            vec![vec![(b"", b"x")]; 3]
                .into_iter()
                .map(|b| {
                    b.into_iter()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect()
                })
                .collect(),
        )
        .unwrap();
    src.print(1).unwrap();
    let summary = ctx.run(Some(4)).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&stats)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let inputs: Vec<i64> = lines
        .iter()
        .map(|l| l["input_records"].as_i64().unwrap())
        .collect();
    assert_eq!(inputs, [1, 1, 1, 0]);
    assert_eq!(lines[0]["batch_time_ms"], 1000);
    for key in ["processing_ms", "scheduling_delay_ms", "total_delay_ms"] {
        assert!(lines[0][key].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(summary.batches, 4);
}

/// When processing falls behind, the socket receiver stops reading (a
/// bounded queue of blocks), TCP pushes back on the sender, and no line is
/// dropped: every line written is counted once processing resumes.
#[test]
fn a_slow_job_pushes_back_on_the_socket_and_loses_nothing() {
    use std::io::Write;
    use std::net::TcpListener;
    const LINE: &[u8] = b"0123456789012345678901234567890123456789012345678\n"; // 50 bytes
    const UNBOUNDED: usize = 400 << 20; // a receiver that never stops reading would take this much

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctx = context(StreamingConfig {
        max_pending_blocks: 2,
        ..live_config(2)
    });
    let counts = ctx
        .socket_text_stream("127.0.0.1", port)
        .unwrap()
        .count()
        .unwrap();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = std::sync::Mutex::new(gate_rx);
    let (tx, rx) = mpsc::channel();
    counts
        .foreach_batch(move |_, parts| {
            let n = count(&records(parts)[0].1);
            let _ = tx.send(n);
            if n > 0 {
                // Hold the batch thread until the test opens the gate.
                let _ = gate_rx.lock().unwrap().recv();
            }
            Ok(())
        })
        .unwrap();
    let job = ctx.start(None).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(LINE).unwrap();
    // The first batch with data is now held; write as fast as possible
    // until the socket pushes back.
    assert_eq!(
        std::iter::repeat_with(|| rx.recv_timeout(PATIENCE).unwrap()).find(|n| *n > 0),
        Some(1)
    );
    conn.set_nonblocking(true).unwrap();
    let chunk = LINE.repeat(2000);
    let mut written = 0usize;
    let mut partial = 0usize;
    while written < UNBOUNDED {
        match conn.write(&chunk) {
            Ok(n) => {
                written += n;
                partial = n % LINE.len();
                if partial != 0 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        written < UNBOUNDED,
        "the receiver kept reading {written} bytes while processing was stalled"
    );
    // Finish the last line, then let processing go.
    conn.set_nonblocking(false).unwrap();
    if partial != 0 {
        conn.write_all(&LINE[partial..]).unwrap();
        written += LINE.len() - partial;
    }
    let lines = written / LINE.len() + 1;
    drop(conn);
    drop(gate_tx); // every held and later batch now passes
    let mut counted = 1i64;
    while counted < lines as i64 {
        counted += rx.recv_timeout(PATIENCE).expect("the backlog drains");
    }
    job.stop();
    job.await_termination().unwrap();
    while let Ok(n) = rx.try_recv() {
        counted += n;
    }
    assert_eq!(counted, lines as i64, "no line lost or counted twice");
    eprintln!(
        "backpressure: the sender was stopped after {} MB while the job was stalled",
        written >> 20
    );
}

/// A context on a host of its own (`with_runtime`) keeps that host — and
/// the socket receiver running on it — alive after `start` consumed the
/// context (found in review: the receiver was dropped with the context).
#[test]
fn a_job_on_its_own_host_keeps_its_socket_receiver() {
    let lines: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let to_send = lines.clone();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for l in &to_send {
            writeln!(conn, "{l}").unwrap();
        }
        conn.flush().unwrap();
        conn // keep the connection open until the test ends
    });
    let ctx = weir::StreamingContext::with_runtime(live_config(2), weir_tests::runtime()).unwrap();
    let counted = ctx
        .socket_text_stream("127.0.0.1", port)
        .unwrap()
        .count()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    counted
        .foreach_batch(move |_, parts| {
            let _ = tx.send(count(&records(parts)[0].1));
            Ok(())
        })
        .unwrap();
    let job = ctx.start(None).unwrap();
    let mut got = 0;
    while got < lines.len() as i64 {
        got += rx.recv_timeout(PATIENCE).expect("batches keep coming");
    }
    job.stop();
    job.await_termination().unwrap();
    assert_eq!(got, lines.len() as i64);
    drop(server.join().unwrap());
}

/// A map read only by a `reduce_by_key` runs fused into its map-side
/// combine (its output never materialised, fed in runs of about 1 MiB);
/// observing the map's stream keeps it unfused. Both give the same
/// batches, key order and value order included: `concat` is associative
/// but not commutative, so a value out of order would show.
#[test]
fn a_map_fused_into_reduce_by_key_gives_the_unfused_batches() {
    let tk = shared_plugin(guests::TESTKIT);
    let wc = shared_plugin(guests::WORDCOUNT);
    let run = |observe_maps: bool| {
        let ctx = context(simulated_config(2, 2));
        let keyed = ctx
            .source(
                Some("keyed"),
                SourceSpec::Generator {
                    kind: weir::receiver::generator::GeneratorKind::KeyValue,
                    // ~3 MiB of records per batch: several runs a partition.
                    rate: 150_000,
                    seed: 7,
                    words_per_line: 1,
                    vocabulary: 2_000,
                    limit: None,
                },
            )
            .unwrap();
        let tagged = keyed.map(&tk, "tag").unwrap();
        let concats = collect(&tagged.reduce_by_key(&tk, "concat", Some(3)).unwrap());
        let lines = ctx
            .source(
                Some("lines"),
                SourceSpec::Generator {
                    kind: weir::receiver::generator::GeneratorKind::Text,
                    rate: 40_000,
                    seed: 3,
                    words_per_line: 10,
                    vocabulary: 5_000,
                    limit: None,
                },
            )
            .unwrap();
        let words = lines.flat_map(&wc, "split").unwrap();
        let counts = collect(&words.reduce_by_key(&wc, "sum", Some(2)).unwrap());
        // A windowed reduction fuses the same way (its own flat_map).
        let window_words = lines.flat_map(&wc, "split").unwrap();
        let windowed = collect(
            &window_words
                .reduce_by_key_and_window_inv(
                    &wc,
                    "sum",
                    "subtract",
                    Duration::from_secs(2),
                    Duration::from_secs(1),
                    None,
                    Some("nonzero"),
                )
                .unwrap(),
        );
        let observed = observe_maps.then(|| {
            collect(&window_words);
            (collect(&tagged), collect(&words))
        });
        let stats = Arc::new(OperatorLog::default());
        ctx.add_listener(stats.clone());
        ctx.run(Some(2)).unwrap();
        // The map's operator reports what it did either way; fused, it
        // fed its partitions in runs: more calls than partitions.
        for batch in stats.0.lock().unwrap().iter() {
            let maps: Vec<_> = batch
                .iter()
                .filter(|o| o.op == "map" || o.op == "flat_map")
                .collect();
            assert_eq!(maps.len(), 3, "{batch:?}");
            for map in maps {
                let least = if map.op == "map" { 150_000 } else { 350_000 };
                assert!(map.records_out >= least, "{map:?}");
                assert_eq!(map.calls > 2, !observe_maps, "{map:?}");
            }
        }
        if let Some((tagged, words)) = observed {
            let n = |c: &Collected| -> usize {
                c.lock()
                    .unwrap()
                    .iter()
                    .map(|(_, p)| records(p).len())
                    .sum()
            };
            assert_eq!(
                n(&tagged),
                300_000,
                "the observed map stream has its batches"
            );
            assert!(n(&words) > 700_000, "ten words a line");
        }
        let take = |c: Collected| Arc::try_unwrap(c).unwrap().into_inner().unwrap();
        (take(concats), take(counts), take(windowed))
    };
    let fused = run(false);
    let unfused = run(true);
    assert_eq!(fused.0.len(), 2);
    assert_eq!(fused.1.len(), 2);
    for (what, a, b) in [
        ("concat", &fused.0, &unfused.0),
        ("sum", &fused.1, &unfused.1),
    ] {
        for ((ta, pa), (tb, pb)) in a.iter().zip(b) {
            assert_eq!(ta, tb);
            assert!(
                pa == pb,
                "{what}: batch {ta} differs between fused and unfused"
            );
        }
    }
    let values: usize = fused.0[0]
        .1
        .iter()
        .flat_map(|p| p.iter())
        .map(|(_, v)| v.len())
        .sum();
    assert!(
        values > 150_000 * 2,
        "every tagged value reached the combine: {values} bytes"
    );
}

/// The operators of every completed batch.
#[derive(Default)]
struct OperatorLog(std::sync::Mutex<Vec<Vec<weir::stream::events::OperatorStats>>>);

impl weir::stream::events::StreamingListener for OperatorLog {
    fn on_batch_completed(&self, e: &weir::stream::events::BatchCompleted) {
        self.0.lock().unwrap().push(e.operators.clone());
    }
}

/// `module` without its custom sections named `name`.
fn without_custom_section(module: &[u8], name: &str) -> Vec<u8> {
    fn leb(bytes: &[u8]) -> (usize, usize) {
        let (mut value, mut shift) = (0usize, 0);
        for (i, b) in bytes.iter().enumerate() {
            value |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return (value, i + 1);
            }
            shift += 7;
        }
        panic!("truncated LEB128");
    }
    let mut out = module[..8].to_vec();
    let mut at = 8;
    while at < module.len() {
        let (size, n) = leb(&module[at + 1..]);
        let end = at + 1 + n + size;
        let body = &module[at + 1 + n..end];
        let named = |body: &[u8]| {
            let (len, m) = leb(body);
            &body[m..m + len] == name.as_bytes()
        };
        if !(module[at] == 0 && named(body)) {
            out.extend_from_slice(&module[at..end]);
        }
        at = end;
    }
    out
}

/// wordcount's `sum` is declared `checked_add_i64`, so the host adds its
/// values itself; the same module without the declaration is called. Both
/// give the same bytes, and fail alike on an overflow and on a value that
/// is not 8 bytes, whether the reduction reads the source or a flat_map
/// fused into it.
#[test]
fn a_reduce_declared_native_gives_what_calling_the_guest_gives() {
    let declared = std::fs::read(weir_tests::guest(guests::WORDCOUNT)).unwrap();
    let called = without_custom_section(&declared, "weir.native");
    assert!(called.len() < declared.len(), "wordcount declares its sum");
    let tk = shared_plugin(guests::TESTKIT);
    let n = |k: &str, v: i64| (k.as_bytes().to_vec(), v.to_le_bytes().to_vec());
    let raw = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
    // (case, records, succeeds unfused, succeeds behind `twice`)
    let cases = [
        (
            "sums",
            vec![
                n("a", 1),
                n("b", 5),
                n("a", 2),
                n("c", i64::MIN / 4),
                n("a", -3),
                n("c", 7),
            ],
            true,
            true,
        ),
        ("overflow", vec![n("a", i64::MAX), n("a", 1)], false, false),
        (
            "a short value",
            vec![n("a", 1), raw("a", "xyz")],
            false,
            false,
        ),
        // One value is the group's result whatever its bytes; doubled, it
        // must be added.
        (
            "a lone short value",
            vec![raw("s", "xyz"), n("a", 4)],
            true,
            false,
        ),
    ];
    for (case, input, unfused_ok, fused_ok) in cases {
        for fused in [false, true] {
            let run = |bytes: &[u8]| -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
                let ctx = context(simulated_config(2, 2));
                let wc = ctx.runtime().load_bytes("wc", bytes).unwrap();
                let src = ctx.queue_stream(vec![input.clone()]).unwrap();
                let src = if fused {
                    src.flat_map(&tk, "twice").unwrap()
                } else {
                    src
                };
                let out = collect(&src.reduce_by_key(&wc, "sum", Some(2)).unwrap());
                ctx.run(Some(1)).map_err(|e| e.to_string())?;
                let batches = out.lock().unwrap();
                Ok(records(&batches[0].1))
            };
            let (native, guest) = (run(&declared), run(&called));
            let what = format!("{case}, fused: {fused}");
            match (&native, &guest) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
                // Only the declared one was added by the host.
                (Err(a), Err(b)) => assert!(
                    a.contains("declared checked_add_i64") && !b.contains("declared"),
                    "{what}: {a} / {b}"
                ),
                _ => panic!("{what}: declared {native:?}, called {guest:?}"),
            }
            let ok = if fused { fused_ok } else { unfused_ok };
            assert_eq!(native.is_ok(), ok, "{what}: {native:?}");
        }
    }
}
