"""The deploy/ YAML files parse, and the Grafana dashboard JSON is well formed
(unique panel ids, every panel with a query). Run by scripts/check-observability.sh:
    lint.py ROOT DASHBOARD
"""
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
