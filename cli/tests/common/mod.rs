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

pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chunkstream"))
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
}

impl Runner {
    pub fn start() -> Self {
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
        let child = Command::new(runner)
            .env("CHUNKSTREAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("CHUNKSTREAM_BUCKET", &name)
            .env("CHUNKSTREAM_QUEUE_PREFIX", &name)
            .env("CHUNKSTREAM_WEB_DIR", std::env::temp_dir())
            .env(
                "AWS_ENDPOINT_URL",
                std::env::var("AWS_ENDPOINT_URL")
                    .unwrap_or_else(|_| "http://127.0.0.1:4566".into()),
            )
            .env(
                "AWS_REGION",
                std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            )
            .env(
                "AWS_ACCESS_KEY_ID",
                std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let r = Runner { child, base };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if Command::new("curl")
                .args(["-fsS", "--max-time", "1", &format!("{}/api/health", r.base)])
                .output()
                .is_ok_and(|o| o.status.success())
            {
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
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10", &format!("{}{path}", self.base)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
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

/// Decoded video frames, counted by ffprobe (a file or the published MPD).
pub fn video_frames(input: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
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
