#!/usr/bin/env python3
"""The feeder of scripts/bench-vs-spark.sh, the same for both engines.

Moves corpus files into the watched directory, the way a file-stream job
is fed: each file is hard-linked under a fresh name into a staging
directory, its modification time set to now (Spark's textFileStream
ignores files older than the stream), and renamed into the watched
directory (atomic: an engine never sees a partial file). Hard links let
the 2 M-line corpus be fed again and again without copying it.

  --rate R          move files so that R lines a second arrive (on an
                    absolute schedule, so it does not drift)
  --burst N         instead: every --every seconds, at --phase seconds past
                    a whole second of wall time, move N files at once (a
                    batch of exactly N files for engines whose batches are
                    aligned to whole seconds, as Spark's and weir's are)

With --done-file (a file holding the wall-clock time in ms of the latest
batch the engine completed; the driver rewrites it), files moved in more
than --keep seconds before that batch time are deleted: both engines have
read them by then (a batch at time t lists the directory at t or later),
and the watched directory stays small. Runs until SIGTERM/SIGINT; then prints what it fed
and how late it ran behind its schedule at worst.
"""

import argparse
import collections
import os
import signal
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--watch", required=True)
    p.add_argument("--staging", required=True)
    p.add_argument("--lines-per-file", type=int, required=True)
    p.add_argument("--rate", type=float)
    p.add_argument("--burst", type=int)
    p.add_argument("--every", type=float, default=3.0)
    p.add_argument("--phase", type=float, default=0.4)
    p.add_argument("--done-file")
    p.add_argument("--keep", type=float, default=2.0)
    a = p.parse_args()
    if (a.rate is None) == (a.burst is None):
        sys.exit("feeder: give exactly one of --rate and --burst")

    corpus = sorted(f for f in os.listdir(a.corpus) if f.startswith("part-"))
    if not corpus:
        sys.exit(f"feeder: no part-* files in {a.corpus}")
    os.makedirs(a.watch, exist_ok=True)
    os.makedirs(a.staging, exist_ok=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    moved = collections.deque()  # (time moved, path)
    fed = 0
    worst_lag = 0.0

    def move_one():
        nonlocal fed
        src = os.path.join(a.corpus, corpus[fed % len(corpus)])
        name = f"f{fed:08d}.txt"
        staged = os.path.join(a.staging, name)
        os.link(src, staged)
        os.utime(staged)
        dst = os.path.join(a.watch, name)
        os.rename(staged, dst)
        moved.append((time.time(), dst))
        fed += 1

    def clean():
        if not a.done_file:
            return
        try:
            with open(a.done_file) as f:
                done = int(f.read()) / 1e3
        except (OSError, ValueError):
            return
        while moved and moved[0][0] < done - a.keep:
            try:
                os.unlink(moved.popleft()[1])
            except FileNotFoundError:
                pass

    start = time.monotonic()
    next_burst = None
    while not stop:
        if a.rate is not None:
            due = start + fed * a.lines_per_file / a.rate
            now = time.monotonic()
            if due > now:
                time.sleep(min(due - now, 0.05))
                clean()
                continue
            worst_lag = max(worst_lag, now - due)
            move_one()
        else:
            now = time.time()
            if next_burst is None:
                next_burst = int(now) + 1 + a.phase
            if now < next_burst:
                time.sleep(min(next_burst - now, 0.05))
                clean()
                continue
            worst_lag = max(worst_lag, now - next_burst)
            for _ in range(a.burst):
                move_one()
            next_burst += a.every
    lines = fed * a.lines_per_file
    secs = time.monotonic() - start
    print(f"feeder: {fed} files, {lines} lines in {secs:.1f} s; "
          f"worst lag behind schedule {worst_lag * 1e3:.0f} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
