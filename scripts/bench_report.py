"""Merges the benchmark JSON files into docs/benchmarks.md with a machine description.

Each JSON file is a list of rows: {id, name, value, unit, baseline, ratio, target, met}
(`baseline`, `ratio`, `target`, `met` may be null). Usage: bench_report.py DIR OUT.md
"""
import datetime
import json
import os
import platform
import subprocess
import sys


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001 - a missing tool just leaves the line empty
        return ""


def machine():
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("free -g | awk '/Mem:/ {print $2\" GiB\"}'")
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu or platform.processor()} × {os.cpu_count()} cores; memory {mem}",
        f"- OS: {sh('. /etc/os-release && echo $PRETTY_NAME')}, kernel {platform.release()}",
        f"- {sh('rustc --version')}; node {sh('node --version')}; {sh('chromium --version')}",
        f"- {sh('ffmpeg -version | head -1')}",
        "- LocalStack 4.13.1 (native, S3 + SQS) on the same machine; everything on loopback",
    ]


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, (int, float)):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    rows = []
    for name in sorted(os.listdir(src)):
        if name.endswith(".json"):
            with open(os.path.join(src, name)) as f:
                rows.extend(json.load(f))
    rows.sort(key=lambda r: str(r.get("id", "")))
    lines = [
        "# Benchmarks",
        "",
        "Made by `scripts/bench.sh` (see `web/bench/README.md` and",
        "`functions/service/benches/backend.rs` for how each figure is measured).",
        "Every figure comes with a baseline measured in the same run on the same machine.",
        "",
        "## Machine",
        *machine(),
        "",
        "## Results",
        "",
        "| # | figure | value | baseline | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = r.get("target") or ""
        if target:
            target = ("met: " if r.get("met") else "**not met**: ") + target
        unit = r.get("unit") or ""
        lines.append(
            f"| {r.get('id', '')} | {r.get('name', '')} | {fmt(r.get('value'))} {unit} | "
            f"{fmt(r.get('baseline'))} | {fmt(r.get('ratio'))} | {target} |"
        )
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {r['name']}: {r['note']}" for r in notes]
    with open(dst, "w") as f:
        f.write("\n".join(lines) + "\n")


main()
