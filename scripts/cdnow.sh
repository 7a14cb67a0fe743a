#!/usr/bin/env bash
# The CDNOW purchase history as churnwatch events (JSON Lines), for
# `churnwatch backtest` on real data (docs/risk.md).
#
#   bash scripts/cdnow.sh OUT.jsonl
#
# Source: lifetimes/datasets/CDNOW_master.txt inside the PyPI wheel
# lifetimes==0.11.3 (package licence: MIT, per the wheel's METADATA and
# LICENSE.txt). The data is the CDNOW sample of Fader & Hardie (23,570
# customers who first bought at CDNOW in the first quarter of 1997, their
# purchases to the end of June 1998; columns: customer id, date YYYYMMDD,
# number of CDs, dollar value), distributed with the buy-till-you-die
# literature ("Counting your customers the easy way", Fader, Hardie & Lee
# 2005). The data is never committed: this script fetches it with pip
# into the cache and converts it.
#
# Each line becomes one purchase event at 12:00 UTC of its date (the data
# has dates only), customer `cdnow-<id>`, event and order id
# `cdnow-<line>`, amount in USD. Lines are written in date order.
set -euo pipefail

OUT="${1:?usage: scripts/cdnow.sh OUT.jsonl}"
CACHE="${CHURNWATCH_CACHE:-$HOME/.cache/churnwatch}/data/lifetimes-0.11.3"
WHEEL="$CACHE/Lifetimes-0.11.3-py3-none-any.whl"
mkdir -p "$CACHE"
if [ ! -f "$WHEEL" ]; then
  python3 -m pip download lifetimes==0.11.3 --no-deps --dest "$CACHE" --quiet
fi

python3 - "$WHEEL" "$OUT" <<'PY'
import json, sys, zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    text = z.read("lifetimes/datasets/CDNOW_master.txt").decode("ascii")
rows = []
for n, line in enumerate(text.splitlines()):
    f = line.split()
    if len(f) != 4 or not f[1].isdigit():
        continue  # the header
    cid, date, _cds, amount = f
    at = f"{date[0:4]}-{date[4:6]}-{date[6:8]}T12:00:00Z"
    rows.append((at, n, cid, float(amount)))
rows.sort()
with open(out, "w") as w:
    for at, n, cid, amount in rows:
        w.write(json.dumps({
            "eventId": f"cdnow-{n}",
            "customerId": f"cdnow-{cid}",
            "occurredAt": at,
            "purchase": {"orderId": f"cdnow-{n}", "amount": amount, "currency": "USD"},
        }, separators=(",", ":")) + "\n")
customers = len({r[2] for r in rows})
print(f"wrote {len(rows)} purchases of {customers} customers, {rows[0][0]} to {rows[-1][0]}, to {out}",
      file=sys.stderr)
PY
