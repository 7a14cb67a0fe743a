#!/usr/bin/env bash
# The end-to-end load harness (tools/loadtest, the `loadtest` binary of the
# churnwatch-loadtest package): ceiling, churnwatch,
# restore, the Quix Streams peer and latency, through one broker, one table.
#
#   bash scripts/perf.sh                                            # the issue's sizes
#   EVENTS=200000 CUSTOMERS=40000 LATENCY_SECS=20 bash scripts/perf.sh   # smoke, a few minutes
#   KAFKA_BOOTSTRAP=host:9092 bash scripts/perf.sh                  # any Kafka instead of our own
#   PEER=0 bash scripts/perf.sh                                     # without the peer
#   PERF_TMPDIR=/tmp bash scripts/perf.sh                           # the broker's log on disk
#
# Creates the peer's Python venv (pinned in benches/peer/requirements.txt)
# under the churnwatch cache when missing, resolves Apache Kafka's classpath
# once (scripts/kafka.sh install), builds the churnwatch binary (release)
# and runs the harness with `cargo run --release -p churnwatch-loadtest`,
# which measures that binary (or CW_BIN) and starts its own Apache Kafka
# node (one KRaft node on loopback, its CPU and memory in the table) unless
# KAFKA_BOOTSTRAP names a broker. The table is printed and written to
# $PERF_TABLE (default $CARGO_TARGET_DIR/perf-table.md).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${CHURNWATCH_CACHE:-$HOME/.cache/churnwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export EVENTS="${EVENTS:-5000000}"
export CUSTOMERS="${CUSTOMERS:-1000000}"
export PARTITIONS="${PARTITIONS:-8}"
export LATENCY_SECS="${LATENCY_SECS:-60}"
export PERF_TABLE="${PERF_TABLE:-$CARGO_TARGET_DIR/perf-table.md}"

# Where the harness's own broker keeps its log, and the run its files:
# memory (/dev/shm) by default. On this VM the kernel writes the broker's
# dirty pages back about every 30 s, ~450 MB at once, and fetches then wait:
# the bare consumer's p99 with churnwatch's write rate beside it was 283 ms
# on disk against 13 ms in memory (docs/performance.md). PERF_TMPDIR=/tmp
# measures on disk.
PERF_TMPDIR="${PERF_TMPDIR:-/dev/shm}"
if [ -d "$PERF_TMPDIR" ] && [ -w "$PERF_TMPDIR" ]; then
  export TMPDIR="$PERF_TMPDIR"
fi

# The broker: the harness starts its own Apache Kafka (`scripts/kafka.sh run`,
# so its CPU is reported per phase) unless KAFKA_BOOTSTRAP names one.
bash scripts/kafka.sh install >/dev/null

if [ "${PEER:-1}" != "0" ]; then
  VENV="$CACHE/peer-venv"
  REQ=benches/peer/requirements.txt
  # Reinstall when the pins change.
  if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/requirements.txt"; then
    echo "peer: creating $VENV from $REQ" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -r "$REQ"
    cp "$REQ" "$VENV/requirements.txt"
  fi
  export PEER_PYTHON="$VENV/bin/python"
fi

cargo build --release -p churnwatch --bin churnwatch
cargo run --release -p churnwatch-loadtest --
