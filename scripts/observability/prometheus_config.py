"""Writes a Prometheus configuration scraping TARGET every second with the
rule files given. Run by scripts/check-observability.sh:
    prometheus_config.py TARGET OUT RULE...
"""
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
