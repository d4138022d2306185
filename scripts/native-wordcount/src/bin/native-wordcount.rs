//! The native baseline: word count over the corpus files with
//! `str::split_whitespace` and a std `HashMap`, on `--threads` threads
//! (files dealt round-robin, one map per thread, merged at the end).
//! Reading the files (from the page cache after the first pass) is timed,
//! as the engines' batches include reading their files.
//!
//! Usage: native-wordcount --dir CORPUS [--threads 1] [--repeat 3]
//! Prints one line per run and a last `median` line:
//! `threads=T words=W distinct=D seconds=S words_per_s=R`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use weir_bench_native::{corpus_files, flag, flags};

fn count(files: &[PathBuf]) -> std::io::Result<HashMap<String, u64>> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for path in files {
        let data = std::fs::read_to_string(path)?;
        for w in data.split_whitespace() {
            match counts.get_mut(w) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(w.to_owned(), 1);
                }
            }
        }
    }
    Ok(counts)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("native-wordcount: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let f = flags(&args)?;
    let dir: PathBuf = flag(&f, "dir", String::new())?.into();
    let threads: usize = flag(&f, "threads", 1)?;
    let repeat: usize = flag(&f, "repeat", 3)?;
    let files = corpus_files(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if files.is_empty() || threads == 0 || repeat == 0 {
        return Err("need --dir with part-*.txt files, --threads > 0, --repeat > 0".into());
    }
    let mut rates = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        let shares: Vec<Vec<PathBuf>> = (0..threads)
            .map(|t| files.iter().skip(t).step_by(threads).cloned().collect())
            .collect();
        let maps = std::thread::scope(|s| {
            let handles: Vec<_> = shares.iter().map(|share| s.spawn(|| count(share))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("counting thread panicked"))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(|e| e.to_string())?;
        let mut maps = maps.into_iter();
        let mut total = maps.next().expect("one thread at least");
        for m in maps {
            for (w, c) in m {
                *total.entry(w).or_insert(0) += c;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let words: u64 = total.values().sum();
        let rate = words as f64 / seconds;
        println!(
            "threads={threads} words={words} distinct={} seconds={seconds:.3} words_per_s={rate:.0}",
            total.len()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median threads={threads} words_per_s={:.0}", rates[rates.len() / 2]);
    Ok(())
}
