//! The short fuzz run of `cargo test` (issue 15): for every target, the
//! committed corpus (`fuzz/corpus/TARGET/`, regression inputs included)
//! is replayed, then mutations of it run for a short time budget.
//!
//! `arbtest` drives the mutations: each run draws its random bytes from a
//! seed, printed when the property fails; `ARBTEST_BUDGET_MS` sets the
//! budget per target (default 1.5 s), `ARBTEST_SEED=0x...` replays one
//! failure. Long, coverage-guided runs use `fuzz/libfuzzer` (README,
//! "Fuzzing").

use std::path::PathBuf;

use arbtest::arbitrary::{Result, Unstructured};

// One allocation out of proportion to the input aborts the run.
#[global_allocator]
static ALLOC: weir_fuzz::LimitedAlloc = weir_fuzz::LimitedAlloc;

const DEFAULT_BUDGET_MS: u64 = 1500;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

/// Values that break length fields and counts.
const INTERESTING: [u32; 10] = [
    0,
    1,
    7,
    8,
    0x7F,
    0xFF,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFF8,
    0xFFFF_FFFF,
];

/// A seed from the corpus with a few random edits: byte flips, length
/// fields set to edge values, inserted, deleted, duplicated and spliced
/// ranges.
fn mutate(u: &mut Unstructured<'_>, seeds: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut data = if seeds.is_empty() {
        Vec::new()
    } else {
        u.choose(seeds)?.clone()
    };
    for _ in 0..u.int_in_range(1..=6)? {
        let len = data.len();
        let at = if len == 0 { 0 } else { u.choose_index(len)? };
        match u.int_in_range(0..=6)? {
            0 if len > 0 => data[at] ^= 1 << u.int_in_range(0..=7)?,
            1 if len > 0 => data[at] = u.arbitrary()?,
            2 if len >= 8 && u.arbitrary()? => {
                // A 64-bit field (bincode's lengths, sequence numbers).
                let at = at.min(len - 8);
                let v = u64::from(*u.choose(&INTERESTING)?);
                let v = if u.arbitrary()? { !v } else { v };
                data[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            2 if len >= 4 => {
                let at = at.min(len - 4);
                let v = *u.choose(&INTERESTING)?;
                data[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            3 => {
                let n = u.int_in_range(1..=16)?;
                let bytes: Vec<u8> = (0..n).map(|_| u.arbitrary()).collect::<Result<_>>()?;
                data.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let end = at + u.int_in_range(1..=(len - at).min(64))?;
                data.drain(at..end);
            }
            5 if len > 0 => {
                let end = at + u.int_in_range(1..=(len - at).min(64))?;
                let copy = data[at..end].to_vec();
                let to = u.int_in_range(0..=len)?;
                data.splice(to..to, copy);
            }
            6 if !seeds.is_empty() => {
                let other = u.choose(seeds)?;
                if !other.is_empty() {
                    let from = u.choose_index(other.len())?;
                    let end = from + u.int_in_range(1..=(other.len() - from).min(256))?;
                    data.splice(at..at, other[from..end].iter().copied());
                }
            }
            _ => data.push(u.arbitrary()?),
        }
    }
    Ok(data)
}

fn short_run(target: &str) {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "the corpus of `{target}` is empty");
    for seed in &seeds {
        weir_fuzz::run(target, seed);
    }
    if let Some(n) = std::env::var("WEIR_FUZZ_INPUTS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return counted_run(target, &seeds, n);
    }
    let budget = std::env::var("ARBTEST_BUDGET_MS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(DEFAULT_BUDGET_MS);
    let started = std::time::Instant::now();
    let mut inputs = 0u64;
    arbtest::arbtest(|u| {
        let input = mutate(u, &seeds)?;
        weir_fuzz::run(target, &input);
        inputs += 1;
        Ok(())
    })
    .budget_ms(budget)
    .run();
    eprintln!(
        "{target}: {} corpus inputs, then {inputs} mutated inputs in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

/// `WEIR_FUZZ_INPUTS=N`: exactly `n` mutated inputs, each from its own
/// arbtest seed (random bytes of 16 B to 4 KiB), printed on failure.
fn counted_run(target: &str, seeds: &[Vec<u8>], n: u64) {
    let started = std::time::Instant::now();
    let mut x = target.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    for _ in 0..n {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // arbtest's seed: random bits above, buffer size below.
        let seed = (z & !0xFFFF_FFFF) | (16 + (z & 0xFFF));
        arbtest::arbtest(|u| {
            weir_fuzz::run(target, &mutate(u, seeds)?);
            Ok(())
        })
        .seed(seed)
        .run();
    }
    eprintln!(
        "{target}: {} corpus inputs, then {n} mutated inputs in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn issue_15_fuzz_pipeline() {
    short_run("pipeline");
}

#[test]
fn issue_15_fuzz_abi_output() {
    short_run("abi_output");
}

#[test]
fn issue_15_fuzz_checkpoint() {
    short_run("checkpoint");
}

#[test]
fn issue_15_fuzz_serve_api() {
    short_run("serve_api");
}

#[test]
fn issue_15_fuzz_guest_call() {
    short_run("guest_call");
}

/// The harness itself: an allocation far larger than its input is caught
/// (in a child process, since it aborts).
#[test]
fn an_allocation_out_of_proportion_aborts() {
    if std::env::var_os("WEIR_FUZZ_ALLOC_CHILD").is_some() {
        weir_fuzz::with_alloc_limit(weir_fuzz::alloc_limit(4), || {
            std::hint::black_box(vec![0u8; 64 << 20]);
        });
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "an_allocation_out_of_proportion_aborts",
            "--nocapture",
        ])
        .env("WEIR_FUZZ_ALLOC_CHILD", "1")
        .output()
        .expect("the child runs");
    assert!(!out.status.success(), "the child was not stopped");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("over the limit"),
        "unexpected stderr: {stderr}"
    );
}

/// A long chain of streams, each the input of the next, as a tenant of
/// `weir serve` may submit: the parser's checks must not recurse once per
/// stream (a stack overflow aborts the whole server).
#[test]
fn issue_15_a_long_chain_of_streams_does_not_overflow_the_stack() {
    let mut src = String::from(
        "[plugins]\nwc = \"wc.wasm\"\n[[source]]\nname = \"s0\"\ntype = \"generator\"\n",
    );
    let n = 20_000;
    // Last first: the first stream checked needs every other before it.
    for i in (1..=n).rev() {
        src.push_str(&format!(
            "[[stream]]\nname = \"s{i}\"\nop = \"filter\"\ninput = \"s{}\"\nfunction = \"wc:f\"\n",
            i - 1
        ));
    }
    src.push_str(&format!(
        "[[output]]\nstream = \"s{n}\"\ntype = \"print\"\n"
    ));
    // The stack of a request thread of `weir serve` (tokio's blocking
    // threads, like any spawned thread, get 2 MiB).
    weir_fuzz::setup();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let p = weir::config::Pipeline::parse(std::path::Path::new("p.toml"), &src)
                .expect("the chain parses");
            assert_eq!(p.streams.len(), n);
            // And builds (the target builds a pipeline like this one).
            weir_fuzz::pipeline(src.as_bytes());
        })
        .expect("a thread")
        .join()
        .expect("parsing finished");
}

/// Deeply nested values in a pipeline file or a request body are refused
/// by the parsers' depth limits, not by the stack.
#[test]
fn issue_15_deep_nesting_does_not_overflow_the_stack() {
    let depth = 100_000;
    let toml = format!("x = {}{}", "[".repeat(depth), "]".repeat(depth));
    let inline = format!("x = {}{}", "{a=".repeat(depth), "}".repeat(depth));
    let json = format!(
        "{{\"pipeline\": \"\", \"modules\": {}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            weir_fuzz::pipeline(toml.as_bytes());
            weir_fuzz::pipeline(inline.as_bytes());
            weir_fuzz::serve_api(json.as_bytes());
        })
        .expect("a thread")
        .join()
        .expect("parsing finished");
}
