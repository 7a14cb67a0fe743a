#!/usr/bin/env bash
# Builds the Kafka Streams peer into a cache outside the clone (Maven, Maven
# Central): $KSTREAMS_PEER_HOME (default ~/.cache/churnwatch/kstreams-peer)
# gets kstreams-peer.jar and lib/ (every runtime jar). Prints the directory.
# Rebuilds only when a source (pom, Java, proto, this script) is newer than the jar.
# The unit tests (TopologyTestDriver, about 20 s) run as part of the build;
# KSTREAMS_SKIP_TESTS=1 leaves them out.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${KSTREAMS_PEER_HOME:-$HOME/.cache/churnwatch/kstreams-peer}"
JAR="$OUT/target/kstreams-peer.jar"
command -v mvn >/dev/null || { echo "build.sh: mvn not found (Apache Maven 3.8+ and a JDK 17+ are needed)" >&2; exit 1; }
if [ -f "$JAR" ] && [ -z "$(find "$HERE/pom.xml" "$HERE/build.sh" "$HERE/src" "$HERE/../../../proto/churnwatch/v1/events.proto" -newer "$JAR" -print -quit)" ]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$OUT"
rm -rf "$OUT/lib"
# -q: only errors; run from $OUT so nothing (not even a build log) lands in the clone.
skip=()
[ "${KSTREAMS_SKIP_TESTS:-0}" = 1 ] && skip=(-DskipTests)
(cd "$OUT" && mvn -q -B -f "$HERE/pom.xml" -Dpeer.out="$OUT" "${skip[@]}" package) >&2
[ -f "$JAR" ] || { echo "build.sh: $JAR missing after mvn package" >&2; exit 1; }
echo "$OUT"
