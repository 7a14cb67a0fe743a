#!/usr/bin/env bash
# Installs the tansu broker (0.6.0, with its sqlite and memory storage) into
# the churnwatch cache once; later runs reuse it. About 12-18 minutes on 2 cores.
set -euo pipefail
CACHE="${CHURNWATCH_CACHE:-$HOME/.cache/churnwatch}"
BIN="$CACHE/tools/bin/tansu"
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q '0.6.0'; then
  echo "tansu: $("$BIN" --version) at $BIN"
  exit 0
fi
echo "tansu: installing 0.6.0 into $CACHE/tools (once)"
mkdir -p "$CACHE/tools"
# Build outside any project directory so no workspace config interferes.
(cd "$CACHE" && CARGO_TARGET_DIR="$CACHE/tansu-build" cargo install tansu --version 0.6.0 \
  --features dynostore,libsql --root "$CACHE/tools" --locked)
"$BIN" --version
