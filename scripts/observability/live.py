"""The live check: every expression of the dashboard and the rule files
evaluated by the Prometheus on PORT against a running churnwatch; each must
return series. Run by scripts/check-observability.sh:
    live.py PORT DASHBOARD RULE...
"""
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
# agree: the PromQL is the interval docs/uplift.md and the backtest state.
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
