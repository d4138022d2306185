#!/usr/bin/env bash
# The long crash test: SIGKILLs weir many times at random moments while a
# stateful, windowed job runs, and checks the outputs are byte-identical to
# an uninterrupted run.   scripts/kill-test.sh [KILLS=200] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
WEIR_KILLS="${1:-200}" WEIR_SEED="${2:-$RANDOM}" \
    cargo test -p weir --test it recovery::sigkill_at_random_moments -- --nocapture
