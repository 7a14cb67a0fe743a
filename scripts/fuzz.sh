#!/usr/bin/env bash
# Coverage-guided fuzzing of churnwatch's untrusted inputs (cargo-fuzz,
# libFuzzer). See fuzz/README.md.
#
#   bash scripts/fuzz.sh [TOTAL_SECONDS] [TARGET ...]
#
# Runs each target in turn for TOTAL_SECONDS / number of targets (default
# 600 seconds in all; targets: decode_fold snapshot model). Installs
# cargo-fuzz (and the nightly toolchain it needs) when missing. The corpus
# grows in fuzz/corpus/TARGET, from the committed seeds in fuzz/seeds/TARGET;
# crashes, timeouts and out-of-memory inputs land in fuzz/artifacts/TARGET.
# Exits with status 1 if any target found something.
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/churnwatch/target-fuzz),
# FUZZ_SANITIZER (default none: safe Rust, so speed over ASan; "address" to
# use it), FUZZ_JOBS (default 1: one process per target).
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL="${1:-600}"
shift || true
TARGETS=("$@")
if [ "${#TARGETS[@]}" -eq 0 ]; then
    TARGETS=(decode_fold snapshot model)
fi
PER=$((TOTAL / ${#TARGETS[@]}))
if [ "$PER" -lt 1 ]; then
    echo "fuzz.sh: $TOTAL seconds is too short for ${#TARGETS[@]} targets" >&2
    exit 2
fi

CACHE="${CHURNWATCH_CACHE:-$HOME/.cache/churnwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target-fuzz}"
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    CARGO_TARGET_DIR="$CACHE/target-tools" cargo install cargo-fuzz --locked
fi

# One build for all targets (the first one compiles librdkafka and OpenSSL:
# several minutes). Debug assertions on, so integer overflow is a crash.
FLAGS=(--sanitizer "$SANITIZER" --release --debug-assertions)
echo "== build (${FLAGS[*]})"
cargo +nightly fuzz build "${FLAGS[@]}"

found=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/last-run.log"
    echo "== $t: ${PER}s, log in $log"
    status=0
    cargo +nightly fuzz run "${FLAGS[@]}" --jobs "$JOBS" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$PER" -rss_limit_mb=2048 -max_len=8192 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+DONE|^#[0-9]+[[:space:]]+INITED|^stat::|^SUMMARY|panicked at|Test unit written' "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "!! $t found something (status $status): see $log and fuzz/artifacts/$t"
        found=1
    fi
done
exit "$found"
