//! Harness for the CLI's end-to-end tests: the real runner (target/debug/runner) on
//! the shared LocalStack with its own bucket and queues and port, real media made by
//! ffmpeg, the real `chunkstream` binary, ffprobe as the independent reader.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chunkstream"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `chunkstream` binary; tests pass keys explicitly, never the caller's.
pub fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chunkstream"));
    c.env_remove("CHUNKSTREAM_KEY")
        .env_remove("CHUNKSTREAM_API");
    c
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:08x}", std::process::id())
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The local runner (API + worker poller) with a private bucket, queues and port.
pub struct Runner {
    child: Child,
    pub base: String,
    /// its bucket (and queue prefix)
    pub bucket: String,
    /// the development API key it printed (runners started with credentials on)
    pub dev_key: Option<String>,
}

/// The AWS settings of the shared LocalStack (scripts/env.sh), for the runner and
/// chunkstream-admin.
pub fn aws_env(cmd: &mut Command) -> &mut Command {
    for (name, default) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        cmd.env(name, std::env::var(name).unwrap_or_else(|_| default.into()));
    }
    cmd
}

impl Runner {
    /// With the auth mode the environment says (scripts/test.sh: open).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With API keys required (`CHUNKSTREAM_AUTH=keys`), whatever the environment says.
    pub fn start_with_keys() -> Self {
        let r = Self::start_with(&[("CHUNKSTREAM_AUTH", "keys")]);
        assert!(r.dev_key.is_some(), "the runner printed no development key");
        r
    }

    /// Issues an API key for `owner` in this runner's bucket with `chunkstream-admin`.
    pub fn issue_key(&self, owner: &str) -> String {
        let admin = bin_dir().join("chunkstream-admin");
        let out = aws_env(&mut Command::new(&admin))
            .args(["--bucket", &self.bucket, "issue", owner])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", admin.display()));
        assert!(
            out.status.success(),
            "chunkstream-admin issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let runner = bin_dir().join("runner");
        assert!(
            runner.exists(),
            "{} is missing: build it first (cargo build -p chunkstream-runner; scripts/test.sh does)",
            runner.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = unique("cs-cli-test").to_lowercase();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(runner);
        aws_env(&mut cmd)
            .env("CHUNKSTREAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("CHUNKSTREAM_BUCKET", &name)
            .env("CHUNKSTREAM_QUEUE_PREFIX", &name)
            .env("CHUNKSTREAM_WEB_DIR", std::env::temp_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        // the runner prints its development key (if any) on stdout before it serves
        let (key_tx, key_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(key) = line.split_whitespace().find(|w| w.starts_with("csk_")) {
                    let _ = key_tx.send(key.to_owned());
                }
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let mut r = Runner {
            child,
            base,
            bucket: name,
            dev_key: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if Command::new("curl")
                .args(["-fsS", "--max-time", "1", &format!("{}/api/health", r.base)])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                r.dev_key = key_rx.recv_timeout(Duration::from_millis(500)).ok();
                return r;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the runner did not come up (log in {})",
            std::env::temp_dir().display()
        );
    }

    pub fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path)).unwrap()
    }

    pub fn get_text(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10", &format!("{}{path}", self.base)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn post_json(&self, path: &str, body: &str) -> Value {
        let out = Command::new("curl")
            .args([
                "-fsS",
                "--max-time",
                "10",
                "-H",
                "content-type: application/json",
                "-d",
                body,
                &format!("{}{path}", self.base),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "POST {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// POSTs with no body (as a watch page's `watching`); the HTTP status.
    pub fn post_empty(&self, path: &str) -> u16 {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-X",
                "POST",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}{path}", self.base),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("POST {path}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs ffmpeg with `args` (after `-v error -y`), writing `out`.
pub fn ffmpeg(out: &Path, args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg installed (scripts/setup.sh)");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Video packets (frames, without decoding them), counted by ffprobe: the check
/// for files too big to decode in a test.
pub fn video_packets(input: &str) -> u64 {
    ffprobe_count(input, "-count_packets", "stream=nb_read_packets")
}

/// Decoded video frames, counted by ffprobe (a file or the published MPD).
pub fn video_frames(input: &str) -> u64 {
    ffprobe_count(input, "-count_frames", "stream=nb_read_frames")
}

fn ffprobe_count(input: &str, count: &str, entry: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            count,
            "-select_streams",
            "v:0",
            "-show_entries",
            entry,
            "-of",
            "csv=p=0",
            input,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "ffprobe {input}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// A running `chunkstream upload --json`: its events as they come.
pub struct Upload {
    pub child: Child,
    events: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Upload {
    pub fn start(runner: &Runner, file: &Path, state_dir: &Path, extra: &[&str]) -> Self {
        let mut child = cli()
            .args(["upload", "--json", "--api", &runner.base])
            .arg(file)
            .args(extra)
            .env("CHUNKSTREAM_STATE_DIR", state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event: {line}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Upload {
            child,
            events: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred` (keeping every event in `seen`).
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no {what} event within {timeout:?}; saw {:?}",
                    self.seen.iter().rev().take(5).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Collects every event until the process exits; returns its exit code.
    pub fn finish(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(v) = self.events.try_recv() {
                self.seen.push(v);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                while let Ok(v) = self.events.try_recv() {
                    self.seen.push(v);
                }
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "upload did not finish within {timeout:?}; last events {:?}",
                    self.seen.iter().rev().take(5).collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn event(&self, kind: &str) -> Option<&Value> {
        self.seen.iter().find(|e| e["event"] == kind)
    }
}

impl Drop for Upload {
    /// A failing test must not leave its CLI retrying against a runner that is gone.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page's planner, run by node on `file`'s sample tables as the CLI read them
/// (`chunkstream plan --json` into testdata/planner/check.ts), plans exactly what the CLI
/// plans with its default options. Panics with the first difference otherwise.
pub fn assert_page_plans_like_the_cli(file: &Path) {
    let plan = cli()
        .args(["plan", "--json"])
        .arg(file)
        .output()
        .expect("chunkstream plan");
    assert!(
        plan.status.success(),
        "chunkstream plan {}: {}",
        file.display(),
        String::from_utf8_lossy(&plan.stderr)
    );
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    assert!(
        web.join("node_modules/tsx").is_dir(),
        "web/node_modules is missing: run scripts/setup.sh"
    );
    let mut node = Command::new("node")
        .args(["--import", "tsx", "../testdata/planner/check.ts"])
        .current_dir(&web)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (scripts/setup.sh)");
    {
        use std::io::Write;
        let mut stdin = node.stdin.take().unwrap();
        stdin.write_all(&plan.stdout).unwrap();
    }
    let out = node.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}: the page plans differently from the CLI: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
