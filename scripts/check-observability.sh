#!/usr/bin/env bash
# Checks churnwatch's dashboards and Prometheus rules against a live target:
#
#   scripts/check-observability.sh http://127.0.0.1:PORT/metrics
#
# 1. Static: `promtool check rules` on deploy/prometheus/{recording,alerts}.yml,
#    `promtool check config` on deploy/prometheus/prometheus.yml, every YAML
#    file under deploy/ parses, the Grafana dashboard is well-formed JSON.
# 2. Live: a real Prometheus on a free loopback port scrapes the target every
#    second with both rule files loaded. Once it has a few scrapes, every
#    PromQL expression of the dashboard (targets[].expr, Grafana variables
#    replaced: $__rate_interval etc. by 1m, dashboard variables by .*) and of
#    the rule files is evaluated through /api/v1/query:
#      - dashboard and recording-rule expressions must return series;
#      - an alert expression is usually empty on a healthy system, so it need
#        only be valid; each side of its top-level comparisons and set
#        operators (and, or, unless) must return series instead, which
#        catches a misspelt metric or label that would keep it silent forever;
#      - every rule must evaluate without error in Prometheus (/api/v1/rules).
#    Expressions legitimately empty on a quiet system go in ALLOW_EMPTY
#    (in the Python below), with the reason.
#
# Installs Debian's `prometheus` package (promtool + prometheus) when either
# tool is missing; that needs root. Needs python3 with PyYAML (installs
# python3-yaml the same way). The live phase fails after 60 s.
# Exit status: 0 all good, 1 a check failed, 2 usage or setup problem.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${1:-}"
if [ -z "$TARGET" ] || [ "$#" -ne 1 ]; then
  echo "usage: $0 http://HOST:PORT/metrics" >&2
  exit 2
fi
RULES=("$ROOT/deploy/prometheus/recording.yml" "$ROOT/deploy/prometheus/alerts.yml")
DASHBOARD="$ROOT/deploy/grafana/churnwatch.json"

TMP="$(mktemp -d)"
PROM_PID=""
POLICY_RC_ADDED=""
cleanup() {
  if [ -n "$PROM_PID" ] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
  fi
  if [ -n "$POLICY_RC_ADDED" ]; then rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $* (install with: apt-get install $*; needs root)" >&2
    exit 2
  fi
  # Debian packages with a daemon start it on install where systemd runs; a
  # check must not leave a system Prometheus behind, so forbid it meanwhile.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    POLICY_RC_ADDED=1
  fi
  echo "== installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt_install prometheus
fi
PY=python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  if ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    apt_install python3 python3-yaml
  fi
  PY=/usr/bin/python3
fi
echo "== $(prometheus --version 2>&1 | head -n1)"

echo "== promtool check rules"
promtool check rules "${RULES[@]}"

echo "== promtool check config (deploy/prometheus/prometheus.yml, rule paths pointed at the repository)"
sed -e "s#/etc/prometheus/#$ROOT/deploy/prometheus/#" "$ROOT/deploy/prometheus/prometheus.yml" >"$TMP/compose-prometheus.yml"
promtool check config "$TMP/compose-prometheus.yml"

echo "== YAML and dashboard JSON"
"$PY" - "$ROOT" "$DASHBOARD" <<'PYEOF'
import glob, json, sys, yaml

root, dashboard = sys.argv[1], sys.argv[2]
bad = 0
files = sorted(glob.glob(f"{root}/deploy/**/*.yml", recursive=True) + glob.glob(f"{root}/deploy/**/*.yaml", recursive=True))
for f in files:
    try:
        docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
        print(f"  ok    {f[len(root) + 1:]} ({len(docs)} document{'s' if len(docs) != 1 else ''})")
    except Exception as e:  # report every file, then fail
        bad += 1
        print(f"  FAIL  {f[len(root) + 1:]}: {e}")

kust = f"{root}/deploy/k8s/kustomization.yaml"
k = yaml.safe_load(open(kust))
for res in k.get("resources", []) + [f for g in k.get("configMapGenerator", []) for f in g.get("files", [])]:
    try:
        open(f"{root}/deploy/k8s/{res}").close()
    except OSError as e:
        bad += 1
        print(f"  FAIL  kustomization names {res}: {e}")

try:
    d = json.load(open(dashboard))
except Exception as e:
    print(f"  FAIL  {dashboard}: {e}")
    sys.exit(1)
ids, n = set(), 0
def walk(panels):
    global bad, n
    for p in panels:
        if p.get("id") in ids:
            bad += 1
            print(f"  FAIL  duplicate panel id {p.get('id')}")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            bad += 1
            print(f"  FAIL  panel {p.get('title')!r} has no gridPos")
        if p.get("type") == "row":
            walk(p.get("panels", []))
            continue
        ts = p.get("targets") or []
        if not ts or not all(t.get("expr") and t.get("refId") for t in ts):
            bad += 1
            print(f"  FAIL  panel {p.get('title')!r} lacks targets with expr and refId")
        n += len(ts)
walk(d.get("panels", []))
if not bad:
    print(f"  ok    dashboard: {len(ids)} panels, {n} queries")
sys.exit(1 if bad else 0)
PYEOF

echo "== live: Prometheus scraping $TARGET every 1s"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
"$PY" - "$TARGET" "$TMP/prometheus.yml" "${RULES[@]}" <<'PYEOF'
import sys, urllib.parse, yaml
target, out, rules = sys.argv[1], sys.argv[2], sys.argv[3:]
u = urllib.parse.urlsplit(target)
if u.scheme not in ("http", "https") or not u.netloc:
    sys.exit(f"not an http(s) URL: {target}")
cfg = {
    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
    "rule_files": rules,
    "scrape_configs": [{
        "job_name": "churnwatch",
        "scheme": u.scheme,
        "metrics_path": u.path or "/metrics",
        "static_configs": [{"targets": [u.netloc]}],
    }],
}
yaml.safe_dump(cfg, open(out, "w"))
PYEOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!

status=0
timeout 60 "$PY" - "$PORT" "$DASHBOARD" "${RULES[@]}" <<'PYEOF' || status=$?
import json, re, sys, time, urllib.error, urllib.parse, urllib.request
import yaml

port, dashboard, rule_files = sys.argv[1], sys.argv[2], sys.argv[3:]
BASE = f"http://127.0.0.1:{port}"
DEADLINE = time.monotonic() + 45

# Expressions (whitespace collapsed) allowed to return no series on a quiet
# system, with the reason. Keep it short: every entry is a blind spot.
ALLOW_EMPTY = {
}


def api(path, **params):
    url = f"{BASE}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
        try:
            return json.loads(body)
        except ValueError:  # /-/ready and friends answer in plain text
            return {"status": "success", "text": body.decode(errors="replace")}
    except urllib.error.HTTPError as e:
        try:
            return json.loads(e.read())
        except ValueError:
            return {"status": "error", "error": f"HTTP {e.code}"}
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        return {"status": "error", "error": f"unreachable: {e}"}


def query(expr):
    """(number of series or None, error text)."""
    r = api("/api/v1/query", query=expr)
    if r.get("status") != "success":
        return None, r.get("error", "unknown error")
    data = r["data"]
    if data["resultType"] in ("vector", "matrix"):
        return len(data["result"]), ""
    return 1, ""  # scalar or string


def wait_for(what, check, explain=lambda: ""):
    while time.monotonic() < DEADLINE:
        if check():
            return
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}{explain()}")


def target_errors():
    r = api("/api/v1/targets")
    ts = r.get("data", {}).get("activeTargets", [])
    return "".join(f"\n  {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}" for t in ts)


def one_line(expr):
    return " ".join(expr.split())


def value(expr):
    """The value of the first series of an instant query, or None."""
    r = api("/api/v1/query", query=expr)
    if r.get("status") != "success" or not r["data"]["result"]:
        return None
    return float(r["data"]["result"][0]["value"][1])


wait_for("Prometheus to start", lambda: api("/-/ready").get("status") != "error")
wait_for("4 successful scrapes of the target",
         lambda: value('up{job="churnwatch"}') == 1
         and (value('count_over_time(up{job="churnwatch"}[1m])') or 0) >= 4,
         target_errors)
# Recording rules run every second; the last one in the file reads another
# recorded series. Once it exists, give every rule two more rounds.
wait_for("the recording rules", lambda: value("churnwatch:outreach_emitted:rate1h:avg1d") is not None)
time.sleep(2)

targets = api("/api/v1/targets")["data"]["activeTargets"]
for t in targets:
    if t["health"] != "up":
        sys.exit(f"target {t['scrapeUrl']} is {t['health']}: {t.get('lastError')}")


def dashboard_exprs():
    d = json.load(open(dashboard))
    out = []
    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((f"dashboard: {p.get('title')}", t["expr"]))
    walk(d.get("panels", []))
    for v in d.get("templating", {}).get("list", []):
        m = re.match(r"\s*label_values\((.*),\s*(\w+)\)\s*$", v.get("definition", ""))
        if m:  # the variable's values come from this selector's label
            out.append((f"dashboard variable ${v['name']}", f"group by ({m.group(2)}) ({m.group(1)})"))
    return out


def grafana_to_promql(expr):
    expr = re.sub(r"\$\{?__(range|interval)_ms\}?", "60000", expr)
    expr = re.sub(r"\$\{?__(range|interval)_s\}?", "60", expr)
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "1m", expr)
    # Dashboard variables are used in regex matchers: `.*` is "All".
    return re.sub(r"\$\{(\w+)(:\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", ".*", expr)


def operands(expr):
    """The sides of the top-level comparison and set operators, recursively
    through enclosing parentheses; numbers are dropped."""
    parts, buf, depth, quote, i = [], [], 0, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            buf.append(c)
            if c == "\\" and i + 1 < len(expr):
                buf.append(expr[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            m = re.match(r"==|!=|>=|<=|>|<", expr[i:])
            w = re.match(r"(and|or|unless)\b", expr[i:])
            if w and i > 0 and (expr[i - 1].isalnum() or expr[i - 1] in "_:"):
                w = None
            if m or w:
                parts.append("".join(buf))
                buf = []
                i += len((m or w).group(0))
                continue
        buf.append(c)
        i += 1
    parts.append("".join(buf))
    out = []
    for p in parts:
        p = re.sub(r"^\s*bool\b", "", p)
        p = re.sub(r"^\s*(on|ignoring)\s*\([^)]*\)", "", p)
        p = re.sub(r"^\s*(group_left|group_right)\s*(\([^)]*\))?", "", p).strip()
        if not p or re.fullmatch(r"[-+]?[0-9.]+([eE][-+]?[0-9]+)?", p):
            continue
        if len(parts) == 1:
            return [p]
        if p.startswith("(") and p.endswith(")") and balanced(p[1:-1]):
            out.extend(operands(p[1:-1]))
        else:
            out.extend(operands(p))
    return out


def balanced(s):
    depth = 0
    for c in s:
        depth += c == "("
        depth -= c == ")"
        if depth < 0:
            return False
    return depth == 0


rows = []  # (source, expr, series, status)
failed = 0
def check(source, expr, must_have_series):
    global failed
    n, err = query(expr)
    key = one_line(expr)
    if n is None:
        status = "ERROR"
    elif n == 0 and must_have_series and key not in ALLOW_EMPTY:
        status = "EMPTY"
    elif n == 0 and must_have_series:
        status = "empty (allowed)"
    else:
        status = "ok"
    if status in ("ERROR", "EMPTY"):
        failed += 1
    rows.append((source, key, "-" if n is None else str(n), status, err))


for source, expr in dashboard_exprs():
    check(source, grafana_to_promql(expr), True)

for f in rule_files:
    for group in yaml.safe_load(open(f))["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                check(f"record {rule['record']}", rule["expr"], True)
                check(f"record {rule['record']} (stored)", rule["record"], True)
            else:
                name = rule["alert"]
                check(f"alert {name}", rule["expr"], False)
                for op in operands(rule["expr"]):
                    check(f"alert {name} (operand)", op, True)

for group in api("/api/v1/rules")["data"]["groups"]:
    for rule in group["rules"]:
        if rule.get("health") != "ok":
            failed += 1
            rows.append((f"rule {rule.get('name')} in Prometheus", one_line(rule["query"]), "-", "ERROR",
                         f"{rule.get('health')}: {rule.get('lastError')}"))

# The uplift interval of the recording rules, recomputed here from the two
# stored counts per arm (Wilson per arm, Newcombe's square-and-add), must
# agree: the PromQL is the interval README and the backtest state.
AT = f"{time.time() - 1.5:.3f}"  # one past rule evaluation for all of them


def series(expr):
    r = api("/api/v1/query", query=expr, time=AT)
    if r.get("status") != "success":
        return {}
    return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")): float(s["value"][1])
            for s in r["data"]["result"]}


def wilson(k, n, z=1.959963984540054):
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z / d * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return c - h, c + h


decided = series("churnwatch:uplift_decided:increase30d")
churned = series("churnwatch:uplift_churned:increase30d")
lows = series("churnwatch:uplift_difference_low:ratio30d")
highs = series("churnwatch:uplift_difference_high:ratio30d")
for key, low in sorted(lows.items()):
    if low != low:  # NaN: an arm is empty
        continue
    labels = dict(key)
    arm = lambda a: tuple(sorted({**labels, "arm": a}.items()))
    n1, k1 = decided.get(arm("held_out")), churned.get(arm("held_out"))
    n2, k2 = decided.get(arm("contacted")), churned.get(arm("contacted"))
    if None in (n1, k1, n2, k2) or key not in highs:
        failed += 1
        rows.append((f"uplift {labels.get('playbook')}", "counts missing", "-", "ERROR", str(labels)))
        continue
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
    want_low = p1 - p2 - ((p1 - l1) ** 2 + (u2 - p2) ** 2) ** 0.5
    want_high = p1 - p2 + ((u1 - p1) ** 2 + (p2 - l2) ** 2) ** 0.5
    ok = abs(want_low - low) < 1e-9 and abs(want_high - highs[key]) < 1e-9
    status = "ok" if ok else "WRONG"
    failed += 0 if ok else 1
    rows.append((f"uplift {labels.get('playbook')}", f"[{low:.4f}, {highs[key]:.4f}] vs Newcombe [{want_low:.4f}, {want_high:.4f}]", "1", status, ""))
    if ok:
        print(f"uplift interval of {labels.get('playbook')} matches Newcombe: "
              f"difference {p1 - p2:.4f}, 95% CI [{low:.4f}, {highs[key]:.4f}] "
              f"(held out {k1:.1f}/{n1:.1f} churned, contacted {k2:.1f}/{n2:.1f})")

width = max(len(r[0]) for r in rows)
print(f"{'source':<{width}}  {'series':>6}  {'status':<6}  expression")
for source, expr, n, status, err in rows:
    shown = expr if len(expr) <= 110 else expr[:107] + "..."
    print(f"{source:<{width}}  {n:>6}  {status:<6}  {shown}")
    if err:
        print(f"{'':<{width}}  {'':>6}  {'':<6}  -> {err}")
print(f"{len(rows)} expressions, {failed} failed")
sys.exit(1 if failed else 0)
PYEOF

if [ "$status" -ne 0 ]; then
  if [ "$status" -eq 124 ]; then echo "live check timed out after 60 s" >&2; fi
  echo "== Prometheus log" >&2
  tail -n 20 "$TMP/prometheus.log" >&2 || true
  exit 1
fi
echo "observability checks passed"
