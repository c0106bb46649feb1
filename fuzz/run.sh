#!/usr/bin/env bash
# fuzz/run.sh [SECONDS]: build every fuzz target and run each for SECONDS (default 60) from
# the seeded corpus (fuzz/seed.sh, run once when a corpus is empty). Exits non-zero on the
# first finding; the crashing input is left in fuzz/artifacts/TARGET/.
#
# cargo-fuzz needs nightly flags (-Zsanitizer); the machine has one stable toolchain, so they
# are allowed with RUSTC_BOOTSTRAP=1. cargo-fuzz sets RUSTFLAGS itself, which replaces the
# workspace's static-linking rustflags for these builds (ASan needs a dynamic binary).
set -euo pipefail
SECONDS_EACH=${1:-60}
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null \
    || { echo "fuzz/run.sh: cargo-fuzz missing (scripts/install-deps installs it)" >&2; exit 1; }
TARGETS=(record manifest tar_layer tar_header etc_merge)
for t in "${TARGETS[@]}"; do
    # seed.sh seeds every target; a target added since the corpus was made needs it too
    if [[ -z $(ls -A "corpus/$t" 2>/dev/null) ]]; then
        bash seed.sh
        break
    fi
done
# Only now: cargo fingerprints RUSTC_BOOTSTRAP, and seed.sh's release build must stay the one
# the tests already made.
export RUSTC_BOOTSTRAP=1
T0=$SECONDS
cargo fuzz build -O >&2
echo "fuzz: built ${#TARGETS[@]} targets in $((SECONDS - T0)) s"
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t"
    T1=$SECONDS
    # -rss_limit_mb: a target must stay bounded in memory whatever the input.
    cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 \
        -print_final_stats=1 2>"artifacts-$t.log" \
        || { tail -n 60 "artifacts-$t.log" >&2; echo "fuzz: $t found a problem (input in fuzz/artifacts/$t/)" >&2; exit 1; }
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "artifacts-$t.log" | tail -n1)
    echo "fuzz: $t: ${runs:-?} inputs in $((SECONDS - T1)) s, no finding"
    rm -f "artifacts-$t.log"
done
