//! Word count in every plugin language: `cargo bench -p weir-tests --bench languages`.
//!
//! 1. **Throughput.** Each language's `map:split` over batches of 10 K lines
//!    (8-12 words a line from a 10 K-word Zipf vocabulary, fixed seed),
//!    through the runtime (a fresh instance per call, fuel on, a reactor's
//!    `_initialize` included), against the Rust function run natively through
//!    the SDK glue. Outputs are checked byte-identical to the Rust plugin's
//!    before timing. Then `reduce:sum` over the grouped words.
//! 2. **Per-call cost.** A call on an empty batch: instantiation, a
//!    reactor's `_initialize` (a language runtime's start-up: Go's scheduler
//!    and heap, wasi-libc's constructors), and the call. This is the price
//!    of WASI and a language runtime over a core module.
//!
//! Medians of samples interleaved across languages, so a busy machine slows
//! all alike. `WEIR_BENCH_SECS` sets each measurement's budget (default 1 s);
//! `WEIR_BENCH_LINES` the batch size (default 10000).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use weir::wasm::{Invocation, Plugin, Runtime, RuntimeConfig};
use weir_abi::{CallHeader, GroupsWriter, RecordBatch};
use weir_tests::corpus::Vocabulary;
use weir_tests::{guest, guests, workspace_root};

const SEED: u64 = 0x6c61_6e67; // "lang"

fn languages() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("Rust (SDK)", guest(guests::WORDCOUNT)),
        ("C (freestanding)", guest(guests::WORDCOUNT_C)),
        (
            "WAT",
            workspace_root().join("plugins/wordcount-wat/wordcount.wat"),
        ),
        ("C (wasi-libc)", guest(guests::WORDCOUNT_CWASI)),
        ("C++ (wasi-libc)", guest(guests::WORDCOUNT_CPP)),
        ("Zig", guest(guests::WORDCOUNT_ZIG)),
        ("AssemblyScript", guest(guests::WORDCOUNT_AS)),
        ("Go (wasip1)", guest(guests::WORDCOUNT_GO)),
        ("JavaScript (QuickJS)", guest(guests::WORDCOUNT_JS)),
    ]
}

fn main() {
    let secs = env_f64("WEIR_BENCH_SECS", 1.0);
    let lines = env_f64("WEIR_BENCH_LINES", 10_000.0) as usize;
    let budget = Duration::from_secs_f64(secs);
    println!("weir word count per plugin language");
    println!(
        "  {} CPU(s); {lines}-line batches; budget {secs:.1} s per measurement",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let rt = Runtime::new(&RuntimeConfig::default()).expect("runtime");
    let plugins: Vec<(&str, Plugin, u64)> = languages()
        .into_iter()
        .map(|(name, path)| {
            let size = std::fs::metadata(&path).expect("module").len();
            let plugin = rt
                .load_file(&path)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, plugin, size)
        })
        .collect();
    let vocab = Vocabulary::new(10_000, &mut StdRng::seed_from_u64(SEED));
    let batch = vocab.batch(lines, &mut StdRng::seed_from_u64(SEED + 1));
    let inv = Invocation {
        header: CallHeader {
            batch_time_ms: 1_700_000_000_000,
            partition: 0,
            num_partitions: 1,
        },
        ..Default::default()
    };

    let reference = plugins[0].1.map("split", &inv, &batch).expect("Rust split");
    let words = reference.len();
    for (name, plugin, _) in &plugins[1..] {
        let out = plugin.map("split", &inv, &batch).expect(name);
        assert!(
            out.as_bytes() == reference.as_bytes(),
            "{name}: split output differs from the Rust plugin's"
        );
    }
    let groups = group(&reference);

    let split = interleaved(&plugins, budget, |p| {
        black_box(p.map("split", &inv, &batch).expect("split"));
    });
    let sum = interleaved(&plugins, budget, |p| {
        black_box(p.reduce("sum", &inv, groups.clone()).expect("sum"));
    });
    let empty = RecordBatch::new();
    let call = interleaved(&plugins, budget, |p| {
        black_box(p.map("split", &inv, &empty).expect("empty split"));
    });
    let native = native_split(&batch, &inv.header, budget);

    println!(
        "\n  native Rust split (SDK glue, no wasm): {}",
        rate(words as f64 / native)
    );
    println!(
        "\n  {:<18} {:>9} {:>14} {:>9} {:>14} {:>12}",
        "language", "module", "split words/s", "t÷native", "sum groups/s", "empty call"
    );
    for (name, _, size) in &plugins {
        let s = split[name];
        println!(
            "  {:<18} {:>9} {:>14} {:>8.2}× {:>14} {:>12}",
            name,
            kib(*size),
            rate(words as f64 / s),
            s / native,
            rate(groups.len() as f64 / sum[name]),
            micros(call[name]),
        );
    }
    let core = call["Rust (SDK)"];
    println!("\n  per-call cost over the Rust core module (instantiate + _initialize + call):");
    for (name, _, _) in &plugins[1..] {
        println!("    {:<18} +{}", name, micros((call[name] - core).max(0.0)));
    }
}

/// The split output grouped by word, as `reduce_by_key` hands it over.
fn group(split: &RecordBatch) -> GroupsWriter {
    let mut by_word: BTreeMap<&[u8], Vec<&[u8]>> = BTreeMap::new();
    for (k, v) in split.iter() {
        by_word.entry(k).or_default().push(v);
    }
    let mut groups = GroupsWriter::new();
    for (k, vs) in by_word {
        groups.push(k, vs.into_iter());
    }
    groups
}

/// Median seconds per call of `f` for each plugin, samples taken in turns.
fn interleaved(
    plugins: &[(&'static str, Plugin, u64)],
    budget: Duration,
    f: impl Fn(&Plugin),
) -> BTreeMap<&'static str, f64> {
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let deadline = Instant::now() + budget * plugins.len() as u32;
    while Instant::now() < deadline || samples.values().all(|s| s.len() < 3) {
        for (name, plugin, _) in plugins {
            let start = Instant::now();
            f(plugin);
            samples
                .entry(name)
                .or_default()
                .push(start.elapsed().as_secs_f64());
        }
    }
    samples.into_iter().map(|(n, s)| (n, median(s))).collect()
}

fn native_split(batch: &RecordBatch, header: &CallHeader, budget: Duration) -> f64 {
    let mut input = header.encode().to_vec();
    input.extend_from_slice(batch.as_bytes());
    let mut samples = Vec::new();
    let deadline = Instant::now() + budget;
    while Instant::now() < deadline || samples.len() < 3 {
        let start = Instant::now();
        black_box(weir_sdk::invoke::map_values(&input, wordcount::split).expect("native"));
        samples.push(start.elapsed().as_secs_f64());
    }
    median(samples)
}

fn median(mut s: Vec<f64>) -> f64 {
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(per_sec: f64) -> String {
    format!("{:.1} M", per_sec / 1e6)
}

fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

fn micros(secs: f64) -> String {
    format!("{:.0} µs", secs * 1e6)
}
