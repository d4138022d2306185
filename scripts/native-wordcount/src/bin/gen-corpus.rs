//! Writes the benchmark corpus: `--lines` lines of words drawn from a
//! Zipf(1.0) distribution over a `--vocabulary` of synthetic words,
//! `--words-min`..=`--words-max` words a line (uniform), cut into files of
//! `--lines-per-file` lines named `part-NNNNNN.txt`, plus `manifest.txt`
//! (lines, words, bytes, files). Deterministic: the same flags give the
//! same bytes (SplitMix64 seeded with `--seed`, no library RNG whose stream
//! could change between versions).
//!
//! Usage: gen-corpus --out DIR [--lines 2000000] [--lines-per-file 10000]
//!        [--vocabulary 10000] [--words-min 8] [--words-max 12] [--seed 42]

use std::io::Write;
use std::path::PathBuf;

use weir_bench_native::{flag, flags};

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut x = *state;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Pronounceable word number `n` (distinct for distinct `n`), as weir's
/// generator source makes them.
fn word(n: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "go", "hi", "ju", "pe",
        "zo",
    ];
    let (mut s, mut x) = (String::new(), n);
    loop {
        s.push_str(SYL[x % 16]);
        x /= 16;
        if x == 0 {
            return s;
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gen-corpus: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let f = flags(&args)?;
    let out: PathBuf = flag(&f, "out", String::new())?.into();
    if out.as_os_str().is_empty() {
        return Err("--out DIR is required".into());
    }
    let lines: u64 = flag(&f, "lines", 2_000_000)?;
    let per_file: u64 = flag(&f, "lines-per-file", 10_000)?;
    let vocabulary: usize = flag(&f, "vocabulary", 10_000)?;
    let (wmin, wmax): (u64, u64) = (flag(&f, "words-min", 8)?, flag(&f, "words-max", 12)?);
    let mut state: u64 = flag(&f, "seed", 42)?;
    if per_file == 0 || vocabulary == 0 || wmin == 0 || wmax < wmin {
        return Err("need --lines-per-file > 0, --vocabulary > 0, 0 < --words-min <= --words-max".into());
    }

    let words: Vec<String> = (0..vocabulary).map(word).collect();
    let weights: Vec<f64> = (1..=vocabulary).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let cdf: Vec<f64> = weights.iter().map(|w| { acc += w / total; acc }).collect();

    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (mut n_words, mut n_bytes, mut n_files) = (0u64, 0u64, 0u64);
    let mut line_no = 0;
    while line_no < lines {
        let path = out.join(format!("part-{n_files:06}.txt"));
        let mut buf = Vec::with_capacity(per_file as usize * 80);
        for _ in 0..per_file.min(lines - line_no) {
            let n = wmin + splitmix(&mut state) % (wmax - wmin + 1);
            for i in 0..n {
                let u = (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                let rank = cdf.partition_point(|&c| c < u).min(vocabulary - 1);
                if i > 0 {
                    buf.push(b' ');
                }
                buf.extend_from_slice(words[rank].as_bytes());
            }
            buf.push(b'\n');
            n_words += n;
            line_no += 1;
        }
        std::fs::write(&path, &buf).map_err(|e| format!("{}: {e}", path.display()))?;
        n_bytes += buf.len() as u64;
        n_files += 1;
    }
    let mut m = std::fs::File::create(out.join("manifest.txt")).map_err(|e| e.to_string())?;
    writeln!(m, "lines {lines}\nwords {n_words}\nbytes {n_bytes}\nfiles {n_files}")
        .map_err(|e| e.to_string())?;
    println!("{lines} lines, {n_words} words, {n_bytes} bytes in {n_files} files under {}", out.display());
    Ok(())
}
