#!/usr/bin/env bash
# Runs the Kafka Streams peer built by build.sh, in this process (exec: the
# harness measures the JVM's own pid). Arguments: see README.md.
# KSTREAMS_HEAP (default 512m) is the JVM's -Xmx; KSTREAMS_JAVA_OPTS adds flags.
set -euo pipefail
OUT="${KSTREAMS_PEER_HOME:-$HOME/.cache/churnwatch/kstreams-peer}"
[ -f "$OUT/target/kstreams-peer.jar" ] || { echo "run.sh: no $OUT/target/kstreams-peer.jar (run build.sh)" >&2; exit 1; }
# shellcheck disable=SC2086
exec "${JAVA:-java}" -Xms64m -Xmx"${KSTREAMS_HEAP:-512m}" -XX:+UseParallelGC -XX:ParallelGCThreads=2 \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.logFile=System.err \
  ${KSTREAMS_JAVA_OPTS:-} \
  -cp "$OUT/target/kstreams-peer.jar:$OUT/lib/*" churnwatch.peer.Main "$@"
