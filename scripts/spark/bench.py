#!/usr/bin/env python3
"""The driver of scripts/bench-vs-spark.sh: runs Spark's and weir's word
count on the same corpus and feeder, finds each one's max stable rate and
its capacity at 500 K-line batches, runs the native word count, and prints
the table. The shell script prepares everything and passes it in; the
sweep's length comes from environment variables (see the script).

An engine is *stable* at a rate when the 90th percentile of its batch
processing times over WINDOW batches, after WARMUP batches, is below the
batch interval.
"""

import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_float(name, default):
    return float(os.environ.get(name, default))


QUICK = os.environ.get("QUICK", "") not in ("", "0")
INTERVAL_MS = env_int("BATCH_MS", 1000)
WARMUP = env_int("WARMUP_BATCHES", 3 if QUICK else 10)
WINDOW = env_int("WINDOW_BATCHES", 6 if QUICK else 20)
BISECT = env_int("BISECT_STEPS", 1 if QUICK else 3)
MAX_PROBES = env_int("MAX_PROBES", 4 if QUICK else 10)
CAPACITY_LINES = env_int("CAPACITY_LINES", 500_000)
CAPACITY_BATCHES = env_int("CAPACITY_BATCHES", 3 if QUICK else 6)
CAPACITY_SKIP = env_int("CAPACITY_SKIP", 1 if QUICK else 4)
CAPACITY_EVERY = env_float("CAPACITY_EVERY_S", 3.0)
ABORT_DELAY_MS = env_float("ABORT_DELAY_MS", 10_000)
# First rate of each sweep, lines/s; by default START_FRACTION of the
# engine's capacity measured at 500 K-line batches.
START_RATE = {e: os.environ.get(f"START_RATE_{e.upper()}") for e in ("spark", "weir")}
START_FRACTION = env_float("START_FRACTION", 0.8)
ENGINES = os.environ.get("ENGINES", "spark,weir").split(",")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Args:
    """What the shell script passes in (as --name value pairs)."""

    def __init__(self, argv):
        pairs = dict(zip(argv[0::2], argv[1::2]))
        get = lambda k: pairs[f"--{k}"]
        self.work = get("work")  # scratch directory for runs
        self.corpus = get("corpus")
        self.lines_per_file = int(get("lines-per-file"))
        self.weir_bin = get("weir-bin")
        self.weir_plugin = get("weir-plugin")
        self.weir_partitions = int(get("weir-partitions"))
        self.weir_workers = int(get("weir-workers"))
        self.spark_home = get("spark-home")
        self.spark_jar = get("spark-jar")
        self.spark_master = get("spark-master")
        self.spark_memory = get("spark-memory")
        self.spark_partitions = int(get("spark-partitions"))
        self.native_bin = get("native-bin")
        self.feeder = get("feeder")
        self.results = get("results")
        manifest = dict(
            line.split() for line in open(os.path.join(self.corpus, "manifest.txt"))
        )
        self.total_words = int(manifest["words"])
        self.words_per_line = self.total_words / int(manifest["lines"])


def vm_hwm_kb(pid):
    """Peak resident set size of a live process (VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    """CPU time (user + system) a live process has used, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def stop(proc, grace=15):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Batches:
    """Completed batches as an engine reports them, read as they appear in
    a file: Spark's listener lines on stdout (`BATCH t lines proc sched`)
    or weir's stats file (JSON lines)."""

    def __init__(self, path, kind):
        self.path, self.kind, self.offset, self.partial = path, kind, 0, b""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        now = time.monotonic()
        out = []
        for line in lines:
            line = line.decode(errors="replace").strip()
            if self.kind == "spark":
                if not line.startswith("BATCH "):
                    continue
                _, t, n, proc, sched = line.split()
                out.append(dict(t=int(t), lines=int(n), proc=float(proc), sched=float(sched), at=now))
            elif line:
                s = json.loads(line)
                out.append(dict(t=s["batch_time_ms"], lines=s["input_records"],
                                proc=s["processing_ms"], sched=s["scheduling_delay_ms"], at=now))
        return out


class Engine:
    """Launches one engine on a fresh watched directory."""

    def __init__(self, name, args, run_dir, job_extra=""):
        self.name, self.args, self.run_dir = name, args, run_dir
        self.job_extra = job_extra
        self.watch = os.path.join(run_dir, "watch")
        self.staging = os.path.join(run_dir, "staging")
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(self.watch)
        os.makedirs(self.staging)

    def start(self):
        a, d = self.args, self.run_dir
        if self.name == "spark":
            cmd = [os.path.join(a.spark_home, "bin", "spark-submit"),
                   "--master", a.spark_master, "--driver-memory", a.spark_memory,
                   "--conf", "spark.ui.enabled=false",
                   "--class", "WeirBenchWordCount", a.spark_jar,
                   self.watch, str(INTERVAL_MS), str(a.spark_partitions)]
            out = os.path.join(d, "spark.out")
            self.batches = Batches(out, "spark")
            env = dict(os.environ, SPARK_HOME=a.spark_home)
        else:
            pipeline = os.path.join(d, "wordcount.toml")
            with open(pipeline, "w") as f:
                f.write(WEIR_PIPELINE.format(
                    interval=INTERVAL_MS, partitions=a.weir_partitions,
                    workers=a.weir_workers, plugin=a.weir_plugin, watch=self.watch,
                    extra=self.job_extra))
            stats = os.path.join(d, "stats.jsonl")
            cmd = [a.weir_bin, "run", pipeline, "--stats-file", stats]
            out = os.path.join(d, "weir.out")
            self.batches = Batches(stats, "weir")
            env = dict(os.environ)
        self.log_path = os.path.join(d, f"{self.name}.err")
        self.done_file = os.path.join(d, "done_ms")
        self.launched = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=open(out, "wb"),
                                     stderr=open(self.log_path, "wb"), env=env)
        self.first_batch_s = None
        self.seen = []

    def poll(self):
        new = self.batches.poll()
        if new and self.first_batch_s is None:
            self.first_batch_s = new[0]["at"] - self.launched
        self.seen.extend(new)
        if new:
            # The feeder deletes files well before the latest completed batch.
            tmp = self.done_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(max(b["t"] for b in new)))
            os.replace(tmp, self.done_file)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}; "
                               f"see {self.log_path}:\n{tail(self.log_path)}")
        return new

    def wait_ready(self, timeout=180):
        """Waits for the first batch (its time is the start-up latency),
        then until two batches in a row start on time: an engine still
        catching up with its start-up (Spark's first jobs) is not fed yet."""
        deadline = time.monotonic() + timeout
        on_time = lambda: len(self.seen) >= 3 and all(
            b["sched"] < 0.2 * INTERVAL_MS for b in self.seen[-2:])
        while not on_time():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not running batches on time within {timeout} s; "
                                   f"see {self.log_path}")
            self.poll()
            time.sleep(0.02)

    def feed(self, *feeder_args):
        a = self.args
        self.feeder = subprocess.Popen(
            [sys.executable, a.feeder, "--corpus", a.corpus, "--watch", self.watch,
             "--staging", self.staging, "--lines-per-file", str(a.lines_per_file),
             "--done-file", self.done_file,
             *map(str, feeder_args)],
            stderr=open(os.path.join(self.run_dir, "feeder.err"), "wb"))
        self.fed_from_ms = time.time() * 1000
        self.cpu_at_feed = cpu_s(self.proc.pid)

    def finish(self):
        """Stops feeder and engine; returns the engine's peak RSS in MiB.
        Sets `cpu_per_line`: CPU seconds the engine used from the start of
        feeding, per line it reported processed since."""
        hwm = vm_hwm_kb(self.proc.pid)
        cpu, fed = cpu_s(self.proc.pid), getattr(self, "fed_from_ms", None)
        lines = sum(b["lines"] for b in self.seen if fed and b["t"] > fed)
        self.cpu_per_line = (cpu - self.cpu_at_feed) / lines if lines and cpu else None
        if getattr(self, "feeder", None):
            stop(self.feeder)
        stop(self.proc)
        return None if hwm is None else hwm / 1024


WEIR_PIPELINE = """\
# Written by scripts/spark/bench.py: the weir side of bench-vs-spark.sh.
[job]
name = "bench-wordcount"
batch_interval = "{interval}ms"
partitions = {partitions}
workers = {workers}
{extra}
[plugins]
wc = "{plugin}"

[[source]]
name = "lines"
type = "files"
dir = "{watch}"

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

# Spark's side ends in count() per batch; so does this.
[[stream]]
name = "distinct"
op = "count"
input = "counts"

[[output]]
stream = "distinct"
type = "print"
"""


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def p90_rank(n):
    """Index of the 90th percentile in n sorted values (nearest rank)."""
    return max(0, math.ceil(0.9 * n) - 1)


def p90(xs):
    return sorted(xs)[p90_rank(len(xs))]


def loadavg():
    return os.getloadavg()[0]


def probe(args, name, rate, n, job_extra="", keep_files=False):
    """One run at `rate` lines/s: stable or not, and the figures. With
    `keep_files` the feeder deletes nothing (a backpressured engine reads
    files long after they arrive)."""
    eng = Engine(name, args, os.path.join(args.work, f"{name}-{n:02d}-{int(rate)}"), job_extra)
    load0 = loadavg()
    eng.start()
    try:
        eng.wait_ready()
        eng.feed("--rate", rate, *(["--keep", 1e9] if keep_files else []))
        # Batches cut after the feeder started; the first WARMUP are warm-up.
        counted, reason = [], None
        deadline = time.monotonic() + (WARMUP + WINDOW) * INTERVAL_MS / 1e3 * 3 + 30
        while len(counted) < WARMUP + WINDOW:
            for b in eng.poll():
                if b["t"] > eng.fed_from_ms:
                    counted.append(b)
                    if b["sched"] > ABORT_DELAY_MS:
                        reason = f"scheduling delay {b['sched'] / 1e3:.1f} s"
            # Enough slow batches in the window that its p90 cannot pass.
            slow = sum(b["proc"] >= INTERVAL_MS for b in counted[WARMUP:WARMUP + WINDOW])
            if slow >= WINDOW - p90_rank(WINDOW):
                reason = reason or f"{slow} of {WINDOW} batches over the interval"
            if reason:
                break
            if time.monotonic() > deadline:
                reason = "batches too slow to complete"
                break
            time.sleep(0.05)
        rss = eng.finish()
    except BaseException:
        eng.finish()
        raise
    window = counted[WARMUP:WARMUP + WINDOW]
    procs = [b["proc"] for b in window] or [float("inf")]
    lines = [b["lines"] for b in window]
    r = dict(engine=name, rate=rate, p90_ms=p90(procs),
             mean_lines=statistics.mean(lines) if lines else 0,
             max_sched_ms=max((b["sched"] for b in counted), default=0),
             first_batch_s=eng.first_batch_s, rss_mb=rss, load=(load0 + loadavg()) / 2)
    r["stable"] = reason is None and r["p90_ms"] < INTERVAL_MS
    r["why"] = reason or f"p90 {r['p90_ms']:.0f} ms"
    log(f"  {name:5} {rate:>10,.0f} lines/s: {'stable  ' if r['stable'] else 'UNSTABLE'} "
        f"({r['why']}; {r['mean_lines']:,.0f} lines/batch, max sched "
        f"{r['max_sched_ms']:.0f} ms, first batch {eng.first_batch_s:.2f} s, "
        f"RSS {rss or 0:.0f} MiB, load {r['load']:.1f})")
    return r


def capacity(args, name):
    """Batches of exactly CAPACITY_LINES lines: words / processing time."""
    files = CAPACITY_LINES // args.lines_per_file
    eng = Engine(name, args, os.path.join(args.work, f"{name}-capacity"))
    load0 = loadavg()
    eng.start()
    try:
        eng.wait_ready()
        eng.feed("--burst", files, "--every", CAPACITY_EVERY)
        full, other = [], 0
        deadline = time.monotonic() + (CAPACITY_SKIP + CAPACITY_BATCHES) * CAPACITY_EVERY * 3 + 60
        while len(full) < CAPACITY_SKIP + CAPACITY_BATCHES and time.monotonic() < deadline:
            for b in eng.poll():
                if b["lines"] == files * args.lines_per_file:
                    full.append(b)
                elif b["lines"]:
                    other += 1
            time.sleep(0.05)
        rss = eng.finish()
    except BaseException:
        eng.finish()
        raise
    measured = full[CAPACITY_SKIP:]
    if not measured:
        raise RuntimeError(f"{name}: no batch of exactly {CAPACITY_LINES} lines; see {eng.run_dir}")
    proc = statistics.median(b["proc"] for b in measured)
    words_per_s = CAPACITY_LINES * args.words_per_line / (proc / 1e3)
    cpu_words = args.words_per_line / eng.cpu_per_line if eng.cpu_per_line else None
    r = dict(engine=name, proc_ms=proc, words_per_s=words_per_s, rss_mb=rss,
             words_per_cpu_s=cpu_words,
             first_batch_s=eng.first_batch_s, batches=len(measured), split_batches=other,
             all_proc_ms=[b["proc"] for b in full], load=(load0 + loadavg()) / 2)
    log(f"  {name:5} capacity: {words_per_s / 1e6:.2f} M words/s (median {proc:.0f} ms per "
        f"{CAPACITY_LINES:,}-line batch over {len(measured)}; all {r['all_proc_ms']}), "
        f"RSS {rss or 0:.0f} MiB, {(cpu_words or 0) / 1e6:.2f} M words per CPU-second, "
        f"load {r['load']:.1f}"
        + (f"; {other} batch(es) with a split burst ignored" if other else ""))
    return r


class Sweep:
    """Doubling until unstable, then bisecting (geometric means)."""

    def __init__(self, start):
        self.rate, self.lo, self.hi, self.bisected, self.probes = start, None, None, 0, 0

    def done(self):
        return self.rate is None

    def record(self, stable):
        self.probes += 1
        if stable:
            self.lo = self.rate
        else:
            self.hi = self.rate
        if self.lo is not None and self.hi is not None:
            if self.bisected >= BISECT or self.probes >= MAX_PROBES:
                self.rate = None
                return
            self.bisected += 1
            self.rate = (self.lo * self.hi) ** 0.5
        elif self.probes >= MAX_PROBES:
            self.rate = None
        else:
            self.rate = self.rate * 2 if stable else self.rate / 2


def native(args):
    out = {}
    for threads in (1, 2):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run([args.native_bin, "--dir", args.corpus, "--threads", str(threads),
                              "--repeat", "3"], capture_output=True, text=True, check=True)
        last = res.stdout.strip().splitlines()[-1]
        out[threads] = float(last.split("words_per_s=")[1])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        out[f"cpu{threads}"] = 3 * args.total_words / cpu
        log(f"  native {threads} thread(s): {out[threads] / 1e6:.1f} M words/s "
            f"(median of 3), {out[f'cpu{threads}'] / 1e6:.2f} M words per CPU-second; "
            f"load {loadavg():.1f}")
    return out


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "—"


def fmt_rate(words):
    return f"{words / 1e6:.2f} M" if words else "—"


def main():
    args = Args(sys.argv[1:])
    os.makedirs(args.work, exist_ok=True)
    log(f"corpus: {args.corpus} ({args.words_per_line:.2f} words/line); "
        f"warm-up {WARMUP} + window {WINDOW} batches of {INTERVAL_MS} ms")

    log(f"capacity at {CAPACITY_LINES:,}-line batches:")
    caps = {e: capacity(args, e) for e in ENGINES}

    log("max stable rate (alternating engines):")
    start = {e: float(START_RATE[e]) if START_RATE[e] else
             START_FRACTION * caps[e]["words_per_s"] / args.words_per_line for e in ENGINES}
    sweeps = {e: Sweep(start[e]) for e in ENGINES}
    probes = {e: [] for e in ENGINES}
    n = 0
    while not all(s.done() for s in sweeps.values()):
        for e in ENGINES:
            if not sweeps[e].done():
                n += 1
                r = probe(args, e, sweeps[e].rate, n)
                probes[e].append(r)
                sweeps[e].record(r["stable"])

    # Memory at the same input rate: weir fed at Spark's max stable rate.
    same_rate = None
    if "spark" in ENGINES and "weir" in ENGINES:
        spark_best = [r for r in probes["spark"] if r["stable"]]
        if spark_best:
            best = max(spark_best, key=lambda r: r["rate"])
            log(f"weir at Spark's max stable rate ({best['rate']:,.0f} lines/s), for memory:")
            n += 1
            w = probe(args, "weir", best["rate"], n)
            same_rate = dict(rate=best["rate"], spark_rss_mb=best["rss_mb"], weir_rss_mb=w["rss_mb"],
                             weir_stable=w["stable"])

    # Past the stable rate with backpressure on: bounded batches, memory
    # and delay (weir's files source takes what the rate estimate allows).
    overload = None
    if "weir" in ENGINES:
        weir_best = [r for r in probes["weir"] if r["stable"]]
        if weir_best:
            rate = 2 * max(r["rate"] for r in weir_best)
            log(f"weir at twice its max stable rate ({rate:,.0f} lines/s) with backpressure:")
            n += 1
            o = probe(args, "weir", rate, n, job_extra="backpressure = true\n", keep_files=True)
            overload = dict(rate=rate, rss_mb=o["rss_mb"], mean_lines=o["mean_lines"],
                            max_sched_ms=o["max_sched_ms"], p90_ms=o["p90_ms"])

    log("native word count:")
    nat = native(args)

    rows = {}
    for e in ENGINES:
        stable = [r for r in probes[e] if r["stable"]]
        best = max(stable, key=lambda r: r["rate"]) if stable else None
        firsts = [r["first_batch_s"] for r in probes[e] + [caps[e]] if r["first_batch_s"]]
        rows[e] = dict(
            max_stable_lines=best["rate"] if best else 0,
            max_stable_words=best["rate"] * args.words_per_line if best else 0,
            p90_at_max_ms=best["p90_ms"] if best else None,
            rss_at_max_mb=best["rss_mb"] if best else None,
            capacity_words=caps[e]["words_per_s"],
            capacity_ms=caps[e]["proc_ms"],
            words_per_cpu_s=caps[e]["words_per_cpu_s"],
            rss_capacity_mb=caps[e]["rss_mb"],
            first_batch_s=statistics.median(firsts),
            lowest_unstable_lines=min((r["rate"] for r in probes[e] if not r["stable"]), default=None),
        )

    lines = [
        f"weir vs Spark word count, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; "
        f"{INTERVAL_MS} ms batches; stable = p90 processing < interval over {WINDOW} batches "
        f"after {WARMUP}",
        "",
        f"| engine | max stable rate | capacity at {CAPACITY_LINES // 1000} K-line batches "
        f"| words per CPU-second (500 K run) | peak RSS (at 500 K / at max stable) "
        f"| first batch after launch |",
        "|---|---|---|---|---|---|",
    ]
    for e in ENGINES:
        r = rows[e]
        lines.append(
            f"| {e} | {fmt_rate(r['max_stable_words'])} words/s ({r['max_stable_lines']:,.0f} lines/s; "
            f"first unstable {r['lowest_unstable_lines'] or 0:,.0f}) "
            f"| {fmt_rate(r['capacity_words'])} words/s ({r['capacity_ms']:.0f} ms/batch) "
            f"| {fmt_rate(r['words_per_cpu_s'])} "
            f"| {r['rss_capacity_mb'] or 0:.0f} MiB / {r['rss_at_max_mb'] or 0:.0f} MiB "
            f"| {r['first_batch_s']:.2f} s |")
    for t in (1, 2):
        lines.append(f"| native, {t} thread(s) | — | {fmt_rate(nat[t])} words/s (whole corpus) "
                     f"| {fmt_rate(nat[f'cpu{t}'])} | — | — |")
    lines.append("")
    if "spark" in rows and "weir" in rows:
        s, w = rows["spark"], rows["weir"]
        lines.append(f"weir/Spark: max stable rate {ratio(w['max_stable_words'], s['max_stable_words'])}, "
                     f"capacity {ratio(w['capacity_words'], s['capacity_words'])}, "
                     f"words per CPU-second {ratio(w['words_per_cpu_s'], s['words_per_cpu_s'])}, "
                     f"peak RSS at 500 K {ratio(w['rss_capacity_mb'], s['rss_capacity_mb'])}, "
                     f"first batch {ratio(w['first_batch_s'], s['first_batch_s'])}")
        if same_rate:
            lines.append(f"at Spark's max stable rate ({same_rate['rate']:,.0f} lines/s) peak RSS: "
                         f"weir {same_rate['weir_rss_mb'] or 0:.0f} MiB, Spark "
                         f"{same_rate['spark_rss_mb'] or 0:.0f} MiB, weir/Spark "
                         f"{ratio(same_rate['weir_rss_mb'], same_rate['spark_rss_mb'])}")
    if overload:
        lines.append(f"weir offered twice its max stable rate ({overload['rate']:,.0f} lines/s) with "
                     f"backpressure = true: {overload['mean_lines']:,.0f} lines a batch taken, "
                     f"p90 processing {overload['p90_ms']:.0f} ms, max scheduling delay "
                     f"{overload['max_sched_ms']:.0f} ms, peak RSS {overload['rss_mb'] or 0:.0f} MiB")
    if "weir" in rows:
        w = rows["weir"]
        lines.append(f"native/weir: capacity vs native 1 thread {ratio(nat[1], w['capacity_words'])}, "
                     f"vs 2 threads {ratio(nat[2], w['capacity_words'])}; "
                     f"words per CPU-second vs native 1 thread {ratio(nat['cpu1'], w['words_per_cpu_s'])}")
    table = "\n".join(lines)
    print(table)
    with open(args.results + ".txt", "w") as f:
        f.write(table + "\n")
    with open(args.results + ".json", "w") as f:
        json.dump(dict(probes=probes, capacity=caps, native=nat, rows=rows, same_rate=same_rate,
                       overload=overload),
                  f, indent=1)
    log(f"results: {args.results}.txt and .json; run directories under {args.work}")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"bench-vs-spark: {e}")
