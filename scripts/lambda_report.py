"""Writes the '## Lambda functions (deploy profile)' section of docs/benchmarks.md
from target/lambda-figures/{sizes.json,init.json} (made by scripts/lambda_figures.sh).
Replaces that section if present, else appends it after the kept-sections marker."""
import datetime
import json
import os
import sys

MARKER = "<!-- sections below are kept by bench_report.py -->"
TITLE = "## Lambda functions (deploy profile)"
SIZE_TARGET_MB = 8.0
INIT_TARGET_MS = 50.0


def main():
    src, doc = sys.argv[1], sys.argv[2]
    sizes = json.load(open(os.path.join(src, "sizes.json")))
    init = json.load(open(os.path.join(src, "init.json")))
    build = open(os.path.join(src, "build.txt")).read().strip() if os.path.exists(os.path.join(src, "build.txt")) else ""
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
    lines = [TITLE, "",
             f"Made by `bash scripts/lambda_figures.sh` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
             f"({cpu} x {os.cpu_count()}, shared with other work). {build}".rstrip(), "",
             "Sizes: `target/lambda/{api,worker}/bootstrap` from `cargo lambda build --release` with the deploy",
             "profile (`[profile.release]`: opt-level \"z\", fat LTO, one codegen unit, panic=abort, stripped; the SDK crates without their default features) — what `sam build`",
             "puts in `.aws-sam/build/`; zipped as `sam deploy` uploads it.", "",
             "| function | bootstrap | zipped | target |", "|---|---|---|---|"]
    for s in sizes:
        mb = s["bytes"] / 1e6
        met = "met" if mb <= SIZE_TARGET_MB else "**not met**"
        lines.append(f"| {s['name']} | {mb:.2f} MB | {s['zip_bytes'] / 1e6:.2f} MB | {met}: ≤ {SIZE_TARGET_MB:g} MB |")
    lines += ["",
              "What makes up the size (symbol sizes of an unstripped build of the same profile, 2026-12-02):",
              "session 6 halved both bootstraps (20.75 / 19.33 MB before) by dropping the SDK's second HTTP/TLS",
              "stack (hyper 0.14 + rustls 0.21) and SigV4a/SSO, the log filter's regex engine, and by the size",
              "profile. Session 7 took another 0.68 / 0.63 MB off (9.61 / 8.23 MB before): the bootstraps build",
              "their SDK configuration from Lambda's own variables (`aws::sdk_config_from_lambda_env`) instead",
              "of aws-config's provider chain, and lambda_http takes only the HTTP API's event format. Session 9",
              "took 1.62 / 1.50 MB off (8.93 / 7.48 MB before), measured in two deploy builds:",
              "the SDK's HTTPS client runs rustls on ring instead of aws-lc (`aws::https_client`; the SDK crates",
              "without \"default-https-client\"), and jsonwebtoken verifies on ring too (`jwt_ring`), so aws-lc's",
              "C library (~1.2 MB with its tables and unwind info) is gone: 8.93 → 8.18 MB; the two bootstraps",
              "compile debug and trace events out (tracing/log `release_max_level_info` in functions/{api,worker}:",
              "the SDK, hyper, h2 and rustls call sites and their metadata; info and above still log), and the",
              "JWKS client reads the system's CA roots instead of a compiled-in copy: 8.18 → 7.31 MB. What is",
              "left in the API is mostly `crc-fast` (0.7 MB: all its CRC tables, reachable through its algorithm",
              "dispatch; a hard dependency of the S3 client's checksums), `h2` (a hard dependency of the SDK's",
              "HTTP client), the S3 client, rustls, axum, encoding_rs (lambda_http) and quick-xml (the MPD",
              "writer). `-C force-unwind-tables=no` was measured and changes nothing in this LTO build (the",
              "tables that remain come with the prebuilt std); a non-PIE link would drop ~0.5 MB of relocations",
              "at the cost of ASLR for the binary, which is not worth it.", "",
              "Cold start: each run starts a fresh bootstrap process against a local Lambda runtime API",
              "(`scripts/lambda_init.py`, the 2018-06-01 paths, Lambda's environment variables). *init* = process",
              "start → its first `GET /runtime/invocation/next` (what Lambda reports as Init Duration, minus",
              "fetching the code and starting the sandbox); *first invoke* = event handed out → response",
              "(API: `GET /api/health` as an HTTP API v2 event; worker: an empty SQS batch). Baseline, same run",
              "and same CPU setting: `curl` as the bootstrap making the same first `GET /next` (process start +",
              "connect). The CPU-limited rows run in a cgroup with the share of a core Lambda gives that memory",
              "size (1 vCPU at 1769 MB).", "",
              "| CPU | process | runs | init median | init p90 | first invoke median | vs baseline (init) | target |",
              "|---|---|---|---|---|---|---|---|"]
    base = {r["cpu"]: r for r in init if r["label"].startswith("baseline")}
    for r in init:
        b = base.get(r["cpu"])
        ratio = "" if r is b or not b else f"{r['init_median_ms'] / b['init_median_ms']:.2f}x"
        first = "" if r["first_median_ms"] is None else f"{r['first_median_ms']:.1f} ms"
        target = ""
        if r is not b:
            target = ("met" if r["init_median_ms"] <= INIT_TARGET_MS else "**not met**") + f": ≤ {INIT_TARGET_MS:g} ms"
        lines.append(f"| {r['cpu']} | {r['label']} | {r['runs']} | {r['init_median_ms']:.1f} ms | "
                     f"{r['init_p90_ms']:.1f} ms | {first} | {ratio} | {target} |")
    section = "\n".join(lines) + "\n\n"

    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    if TITLE in text:
        start = text.index(TITLE)
        nxt = text.find("\n## ", start + len(TITLE))
        text = text[:start] + section + (text[nxt + 1:] if nxt != -1 else "")
    else:
        if MARKER not in text:
            text = text.rstrip("\n") + "\n\n" + MARKER + "\n"
        text = text.rstrip("\n") + "\n\n" + section
    open(doc, "w").write(text)


main()
