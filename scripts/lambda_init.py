"""Cold-start figures of the Lambda bootstraps against a local Lambda runtime API.

    python3 scripts/lambda_init.py --api BOOTSTRAP --worker BOOTSTRAP [--runs N] [--out FILE.json]

For each run a fresh process is started the way Lambda starts a provided.al2023
runtime: `bootstrap` with the runtime's environment (AWS_LAMBDA_RUNTIME_API,
function name, memory, credentials in variables, the function's CHUNKSTREAM_*
configuration). This harness is that runtime API (the 2018-06-01 paths):

* init   = process start -> its first GET /runtime/invocation/next: what Lambda
           reports as "Init Duration" (config, SDK clients, tracing, runtime set-up);
* first  = event handed out -> POST .../response: the first invocation's duration
           (API: GET /api/health through lambda_http + the axum Router; worker: an
           empty SQS batch through the batch handler). Neither touches AWS.

Baseline in the same run: `curl` as the "bootstrap", making the same first
GET /next: the floor of starting a process and reaching the runtime API.

Each figure is measured twice: on a whole core, and in a CPU cgroup limited to
the share Lambda gives the function's memory size (1 vCPU at 1769 MB, so 128 MB
-> 7.2 %, 256 MB -> 14.5 %, 512 MB -> 28.9 %), when this machine allows cgroup v1 cpu quotas.
Prints a table; --out writes the rows as JSON. Standard library only.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CGROUP = "/sys/fs/cgroup/cpu/chunkstream-lambda-init"

API_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/api/health",
    "rawQueryString": "",
    "headers": {"host": "example.execute-api.us-east-1.amazonaws.com", "accept": "application/json"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "example",
        "domainName": "example.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "example",
        "http": {"method": "GET", "path": "/api/health", "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "lambda-init"},
        "requestId": "init-bench",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Dec/2026:00:00:00 +0000",
        "timeEpoch": 1796083200000,
    },
    "isBase64Encoded": False,
}
WORKER_EVENT = {"Records": []}


class Runtime:
    """One invocation's worth of the Lambda runtime API."""

    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.request_id = str(uuid.uuid4())
        self.first_next = None
        self.handed_out = None
        self.responded = None
        self.response = None
        self.error = None
        self.done = threading.Event()
        self.polled = threading.Event()

    def handler(self):
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self._reply(404)
                now = time.perf_counter()
                if runtime.first_next is not None:
                    # Second poll: the invocation is over; hold it until the process is killed.
                    runtime.done.wait(30)
                    return
                runtime.first_next = now
                runtime.polled.set()
                runtime.handed_out = time.perf_counter()
                self._reply(200, runtime.event, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": runtime.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30000),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:123456789012:function:chunkstream-bench",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                })

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.endswith("/response"):
                    runtime.responded = time.perf_counter()
                    runtime.response = body
                else:
                    runtime.error = f"{self.path}: {body[:500]!r}"
                self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
                runtime.done.set()

        return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The bootstrap is killed while its second poll is open: expected.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def lambda_env(port, name, memory_mb):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/01/[$LATEST]bench",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEEXAMPLE00",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_SESSION_TOKEN": "bench-token",
        "_HANDLER": "bootstrap",
        # What infra/template.yaml sets (values that are never contacted here).
        "CHUNKSTREAM_BUCKET": "chunkstream-123456789012-us-east-1",
        "CHUNKSTREAM_PRIORITY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/chunkstream-jobs-priority",
        "CHUNKSTREAM_NORMAL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/chunkstream-jobs-normal",
        "CHUNKSTREAM_PUBLIC_BASE_URL": "https://d111111abcdef8.cloudfront.net",
        "CHUNKSTREAM_SESSION_TTL_SECS": "86400",
        "RUST_LOG": "info",
    }
    return env


def cgroup_for(share):
    """A cgroup v1 cpu quota of `share` of one core, or None when not allowed here."""
    if share is None:
        return None
    try:
        os.makedirs(CGROUP, exist_ok=True)
        with open(f"{CGROUP}/cpu.cfs_period_us", "w") as f:
            f.write("100000")
        with open(f"{CGROUP}/cpu.cfs_quota_us", "w") as f:
            f.write(str(int(100000 * share)))
        return CGROUP
    except OSError:
        return None


def run_once(argv, event, name, memory_mb, cgroup, invocation=True):
    runtime = Runtime(event)
    server = QuietServer(("127.0.0.1", 0), runtime.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    argv = [a.replace("{API}", f"127.0.0.1:{port}") for a in argv]

    def enter_cgroup():
        if cgroup:
            with open(f"{cgroup}/tasks", "w") as f:
                f.write(str(os.getpid()))

    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=lambda_env(port, name, memory_mb), preexec_fn=enter_cgroup,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished = runtime.done.wait(30) if invocation else runtime.polled.wait(30)
    if not invocation:
        proc.wait(10)
    proc.kill()
    _, stderr = proc.communicate()
    server.shutdown()
    server.server_close()
    if runtime.first_next is None:
        raise RuntimeError(f"{argv[0]} never polled the runtime API: {stderr[-2000:]!r}")
    init_ms = (runtime.first_next - start) * 1000
    if not finished:
        raise RuntimeError(f"{argv[0]} did not answer its first invocation: {stderr[-2000:]!r}")
    if runtime.error:
        raise RuntimeError(f"{argv[0]} reported an error: {runtime.error}")
    if not invocation:
        return init_ms, None, None
    first_ms = (runtime.responded - runtime.handed_out) * 1000
    return init_ms, first_ms, runtime.response


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


def measure(label, argv, event, name, memory_mb, runs, cgroup, check=None):
    """`check` None: a baseline that makes one request and exits (no invocation)."""
    inits, firsts = [], []
    for _ in range(runs):
        init_ms, first_ms, response = run_once(argv, event, name, memory_mb, cgroup,
                                               invocation=check is not None)
        if check:
            check(response)
            firsts.append(first_ms)
        inits.append(init_ms)
    return {"label": label, "runs": runs, "memory_mb": memory_mb,
            "init_median_ms": statistics.median(inits), "init_p90_ms": p90(inits),
            "first_median_ms": statistics.median(firsts) if firsts else None,
            "first_p90_ms": p90(firsts) if firsts else None}


def check_api(response):
    body = json.loads(response)
    if body.get("statusCode") != 200:
        raise RuntimeError(f"GET /api/health through the API bootstrap answered {body}")


def check_worker(response):
    body = json.loads(response)
    if body.get("batchItemFailures") != []:
        raise RuntimeError(f"the worker answered an empty batch with {body}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--feed-mb", type=int, default=128, help="PriorityFeedFunction's MemorySize")
    ap.add_argument("--out")
    args = ap.parse_args()
    curl = shutil.which("curl")
    if not curl:
        sys.exit("curl is needed for the baseline")
    baseline_argv = [curl, "-sS", "-o", "/dev/null", "http://{API}/2018-06-01/runtime/invocation/next"]

    rows = []
    api = ("api bootstrap", [args.api], API_EVENT, "chunkstream-api", 256, check_api)
    # The same bootstrap as PriorityFeedFunction (infra/template.yaml: 128 MB, the uploaders' long poll).
    feed = ("api bootstrap as the priority feed", [args.api], API_EVENT, "chunkstream-priority-feed", args.feed_mb, check_api)
    worker = ("worker bootstrap", [args.worker], WORKER_EVENT, "chunkstream-worker", 512, check_worker)
    baseline = ("baseline: curl's first GET /next", baseline_argv, WORKER_EVENT, "baseline", 256, None)
    # (cpu setting, share of a core or None, cases)
    settings = [("whole core", None, [baseline, api, worker])]
    for case in (api, feed, worker):
        share = case[4] / 1769
        if cgroup_for(share):
            settings.append((f"{share:.1%} of a core ({case[4]} MB)", share, [baseline, case]))
    for setting, share, cases in settings:
        cgroup = cgroup_for(share)
        for label, argv, event, name, mem, check in cases:
            row = measure(label, argv, event, name, mem, args.runs, cgroup, check)
            row["cpu"] = setting
            rows.append(row)
            first = "" if row["first_median_ms"] is None else \
                f"  first invoke median {row['first_median_ms']:6.2f} ms"
            print(f"{setting:26} {label:34} init median {row['init_median_ms']:7.2f} ms"
                  f"  p90 {row['init_p90_ms']:7.2f} ms{first}", flush=True)
    if os.path.isdir(CGROUP):
        try:
            os.rmdir(CGROUP)
        except OSError:
            pass
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


main()
