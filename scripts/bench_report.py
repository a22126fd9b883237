"""Merges the benchmark JSON files into docs/benchmarks.md with a machine description.

Each JSON file is a list of rows: {id, name, value, unit, baseline, ratio, target, met, note?,
table?} (`baseline`, `ratio`, `target`, `met` may be null; `table` = {name, cols} also shows the
row in a side-by-side table). Everything in OUT.md after the MARKER line is kept as it is.

Usage: bench_report.py DIR OUT.md [--keep-missing 6,7]
  --keep-missing: result rows of OUT.md whose id starts with one of these groups, and that this
  run did not produce (e.g. `scripts/bench.sh --browser-only`), are kept, labelled with their date.
"""
import datetime
import json
import os
import platform
import re
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
        f"- load average at the end of the run (1/5/15 min): {' / '.join(f'{x:.1f}' for x in os.getloadavg())}"
        " (the machine is shared: other sessions' builds compete for the 2 cores)",
        "- LocalStack 4.13.1 (native, S3 + SQS) on the same machine; the runner and LocalStack on the host;",
        "  the uploader's Chromium behind a shaped uplink (see the link self-check rows `0.*` and web/bench/README.md)",
    ]


MARKER = "<!-- sections below are kept by bench_report.py -->"


def previous(dst):
    """(results table lines by id, date, the kept tail) of the existing report."""
    try:
        with open(dst) as f:
            text = f.read()
    except FileNotFoundError:
        return {}, "", MARKER + "\n"
    head, sep, tail = text.partition(MARKER)
    date = (re.search(r"^- date: (.*)$", head, re.M) or [None, "an earlier run"])[1]
    table = {}
    results = head.partition("## Results")[2].split("\n## ")[0]
    for line in results.splitlines():
        m = re.match(r"^\| ([^|]+?) \| (.*)$", line)
        if m and m.group(1) not in ("#", "---"):
            table.setdefault(m.group(1), []).append(line)
    return table, date, (sep + tail) if sep else MARKER + "\n"


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, (int, float)):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    keep = []
    if "--keep-missing" in sys.argv:
        keep = sys.argv[sys.argv.index("--keep-missing") + 1].split(",")
    old_table, old_date, tail = previous(dst)
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
    ids = {str(r.get("id", "")) for r in rows}
    kept = []
    for rid, old_lines in old_table.items():
        group = rid.split(".")[0]
        if group in keep and rid not in ids:
            for line in old_lines:
                cells = line.split(" | ")
                if len(cells) > 2 and "(previous run" not in cells[1]:
                    cells[1] += f" (previous run, {old_date})"
                kept.append((rid, " | ".join(cells)))
    for r in rows:
        target = r.get("target") or ""
        if target:
            target = ("met: " if r.get("met") else "**not met**: ") + target
        unit = r.get("unit") or ""
        lines.append(
            f"| {r.get('id', '')} | {r.get('name', '')} | {fmt(r.get('value'))} {unit} | "
            f"{fmt(r.get('baseline'))} | {fmt(r.get('ratio'))} | {target} |"
        )
    lines += [line for _, line in kept]
    tables = {}
    for r in rows:
        if r.get("table"):
            tables.setdefault(r["table"]["name"], []).append(r["table"]["cols"])
    for name, trs in tables.items():
        cols = list(dict.fromkeys(k for t in trs for k in t))
        lines += ["", f"## {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(t.get(c, "") for c in cols) + " |" for t in trs]
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {r['name']}: {r['note']}" for r in notes]
    with open(dst, "w") as f:
        f.write("\n".join(lines) + "\n\n" + tail.rstrip("\n") + "\n")


main()
