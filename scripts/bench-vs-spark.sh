#!/usr/bin/env bash
# weir vs Spark Streaming: the same word count on the same corpus, fed by
# the same process, on this machine's cores (issue 14). Takes 15-30
# minutes (QUICK=1: about 5); not part of `make test`.
#
# What it does:
#   1. installs Spark from PyPI (pyspark, which carries Spark's jars) into
#      a virtualenv in $BENCH_CACHE, once; compiles scripts/spark/WeirBenchWordCount.java
#   2. builds weir (cargo build --release -p weir), the wordcount plugin
#      (make plugins) and scripts/native-wordcount
#   3. generates the corpus once: 2 M lines, Zipf over 10 K words, 8-12
#      words a line, seed 42, in files of 10 K lines
#   4. scripts/spark/bench.py: for each engine (alternating Spark, weir)
#      finds the max stable rate, measures capacity at 500 K-line batches,
#      peak RSS and time to the first batch; feeds weir at Spark's max
#      stable rate to compare memory at one rate; runs the native word count;
#      prints the table (also saved in $BENCH_CACHE/results-*.txt/.json)
#
# Usage: scripts/bench-vs-spark.sh
# Environment (defaults in brackets):
#   QUICK=1               short sweep: 3+6 batches a probe, 1 bisection step
#   WEIR_BIN              weir binary to measure [this checkout's target/release/weir, built]
#   WEIR_PLUGIN           wordcount.wasm [this checkout's target/plugins/wordcount.wasm, built]
#   ENGINES               spark,weir
#   PYSPARK_VERSION       4.3.0
#   BENCH_CACHE           ~/.cache/weir-spark (venv, corpus, runs, results)
#   WARMUP_BATCHES, WINDOW_BATCHES   batches skipped, then judged, per probe [10, 20]
#   BISECT_STEPS, MAX_PROBES         rate search [3, 10]
#   START_RATE_SPARK, START_RATE_WEIR  first rate tried, lines/s [200000, 400000]
#   CAPACITY_LINES, CAPACITY_SKIP, CAPACITY_BATCHES   lines a batch; batches skipped (JIT warm-up), then measured [500000, 4, 6]
#   SPARK_MASTER [local[2]], SPARK_DRIVER_MEMORY [1g], SPARK_PARTITIONS [2]
#   WEIR_PARTITIONS [4], WEIR_WORKERS [2]
#   CORPUS_LINES [2000000], LINES_PER_FILE [10000]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${BENCH_CACHE:-$HOME/.cache/weir-spark}
pyspark_version=${PYSPARK_VERSION:-4.3.0}
corpus_lines=${CORPUS_LINES:-2000000}
lines_per_file=${LINES_PER_FILE:-10000}

die() { echo "bench-vs-spark: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 not found; install it with: $2"; }
need java "apt-get install openjdk-17-jdk-headless"
need javac "apt-get install openjdk-17-jdk-headless"
need jar "apt-get install openjdk-17-jdk-headless"
need python3 "apt-get install python3 python3-venv"
need cargo "rustup (https://rustup.rs), then scripts/setup.sh"
need make "apt-get install make"
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/.*java.specification.version = //p')
[ "${java_major%%.*}" -ge 17 ] 2>/dev/null ||
  die "Spark 4 needs Java 17 or newer, found ${java_major:-unknown}; install: apt-get install openjdk-17-jdk-headless"

mkdir -p "$cache"

# 1. Spark, from PyPI, into a virtualenv outside the repository.
venv=$cache/venv
spark_home() { "$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'; }
if [ "$("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null)" != "$pyspark_version" ]; then
  echo "installing pyspark $pyspark_version into $venv ..." >&2
  python3 -m venv "$venv" || die "python3 -m venv failed; install it with: apt-get install python3-venv"
  "$venv/bin/pip" install -q "pyspark==$pyspark_version" ||
    die "pip install pyspark==$pyspark_version failed (see above)"
fi
spark=$(spark_home)
jar=$cache/app/WeirBenchWordCount-$(sha256sum "$repo/scripts/spark/WeirBenchWordCount.java" | cut -c1-12)-$pyspark_version.jar
if [ ! -f "$jar" ]; then
  echo "compiling scripts/spark/WeirBenchWordCount.java ..." >&2
  classes=$(mktemp -d)
  javac -nowarn -d "$classes" -cp "$spark/jars/*" "$repo/scripts/spark/WeirBenchWordCount.java"
  mkdir -p "$cache/app"
  jar cf "$jar" -C "$classes" .
  rm -rf "$classes"
fi

# 2. weir, its plugin and the native helpers.
cd "$repo"
if [ -z "${WEIR_BIN:-}" ]; then
  cargo build --release -p weir
  WEIR_BIN=$repo/target/release/weir
fi
if [ -z "${WEIR_PLUGIN:-}" ]; then
  make plugins
  WEIR_PLUGIN=$repo/target/plugins/wordcount.wasm
fi
[ -x "$WEIR_BIN" ] || die "WEIR_BIN=$WEIR_BIN is not an executable"
[ -f "$WEIR_PLUGIN" ] || die "WEIR_PLUGIN=$WEIR_PLUGIN does not exist"
cargo build --release -q --manifest-path scripts/native-wordcount/Cargo.toml \
  --target-dir "$repo/target/native-wordcount"
native=$repo/target/native-wordcount/release

# 3. The corpus, once per shape.
corpus=$cache/corpus-$corpus_lines-$lines_per_file-seed42
if [ ! -f "$corpus/manifest.txt" ]; then
  rm -rf "$corpus"
  "$native/gen-corpus" --out "$corpus" --lines "$corpus_lines" --lines-per-file "$lines_per_file" \
    --vocabulary 10000 --words-min 8 --words-max 12 --seed 42
fi

# 4. The sweep.
echo "weir: $WEIR_BIN ($("$WEIR_BIN" --version 2>/dev/null || echo unknown version)); Spark $pyspark_version: $spark; $(java -version 2>&1 | head -1)" >&2
exec python3 "$repo/scripts/spark/bench.py" \
  --work "$cache/runs" --corpus "$corpus" --lines-per-file "$lines_per_file" \
  --weir-bin "$WEIR_BIN" --weir-plugin "$WEIR_PLUGIN" \
  --weir-partitions "${WEIR_PARTITIONS:-4}" --weir-workers "${WEIR_WORKERS:-2}" \
  --spark-home "$spark" --spark-jar "$jar" --spark-master "${SPARK_MASTER:-local[2]}" \
  --spark-memory "${SPARK_DRIVER_MEMORY:-1g}" --spark-partitions "${SPARK_PARTITIONS:-2}" \
  --native-bin "$native/native-wordcount" --feeder "$repo/scripts/spark/feeder.py" \
  --results "$cache/results-$(date +%Y%m%d-%H%M%S)"
