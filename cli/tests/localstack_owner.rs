//! End to end with credentials on: the real runner on LocalStack requiring API keys
//! (`CHUNKSTREAM_AUTH=keys`, whatever scripts/test.sh exports), the `chunkstream`
//! binary uploading, listing, keeping and deleting, keys issued by `chunkstream-admin`,
//! and the bucket read back with the AWS SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{cli, ffmpeg, scratch, Runner, Upload};
use serde_json::Value;

/// One real upload at a time (ffmpeg, the CLI, the runner share two cores), as in
/// localstack_upload.rs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exit codes documented in the README ("CLI") and cli/src/error.rs.
const CREDENTIAL: i32 = 6;
const UNKNOWN_VIDEO: i32 = 7;
const USAGE: i32 = 2;
const UNAVAILABLE: i32 = 5;

fn run(args: &[&str]) -> Output {
    cli().args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn list_json(runner: &Runner, key: &str) -> Vec<Value> {
    let o = run(&["list", "--json", "--api", &runner.base, "--key", key]);
    assert_eq!(code(&o), 0, "list: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["videos"].as_array().unwrap().clone()
}

/// Keys of the objects under `prefix` in the runner's bucket (the SDK, against LocalStack).
fn objects(runner: &Runner, prefix: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // the SDK crates come without a default HTTP client (Cargo.toml): rustls on ring
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https)
            .load()
            .await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .endpoint_url(
                std::env::var("AWS_ENDPOINT_URL")
                    .unwrap_or_else(|_| "http://127.0.0.1:4566".into()),
            )
            .force_path_style(true)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(conf);
        let mut keys = Vec::new();
        let mut pages = s3
            .list_objects_v2()
            .bucket(&runner.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.unwrap()
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys
    })
}

fn http_status(url: &str) -> u16 {
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).parse().unwrap_or(0)
}

/// Runs `command` on a pseudo-terminal (util-linux `script`), typing `input`; the
/// terminal's output is the Output's stdout.
fn on_a_terminal(command: &str, input: &str) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env_remove("CHUNKSTREAM_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    // type once the CLI is at its prompt: some versions of `script` end the session when
    // their input ends
    std::thread::sleep(Duration::from_millis(1500));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn small_video(dir: &Path, name: &str) -> std::path::PathBuf {
    video(dir, name, 8)
}

fn video(dir: &Path, name: &str, seconds: u32) -> std::path::PathBuf {
    let file = dir.join(name);
    let seconds = seconds.to_string();
    ffmpeg(
        &file,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            &seconds,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "50",
            "-c:a",
            "aac",
        ],
    );
    file
}

#[test]
fn an_owner_lists_keeps_and_deletes_its_upload_and_another_owner_cannot() {
    let _serial = one_at_a_time();
    let runner = Runner::start_with_keys();
    let key = runner.dev_key.clone().unwrap();
    let other = runner.issue_key("someone-else");
    let dir = scratch("cli-owner");
    let file = small_video(&dir, "Demo day.mp4");

    let mut up = Upload::start(&runner, &file, &dir.join("state"), &["--key", &key]);
    let exit = up.finish(Duration::from_secs(120));
    assert_eq!(exit, 0, "upload with a valid key; events {:?}", up.seen);
    let link = up.event("link").unwrap().clone();
    let id = link["video_id"].as_str().unwrap().to_owned();

    // listed with the title from the file name and the planned size
    let videos = list_json(&runner, &key);
    let v = videos
        .iter()
        .find(|v| v["video_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {videos:?}"));
    assert_eq!(v["title"], "Demo day");
    assert_eq!(v["size_bytes"], link["bytes_total"], "{v}");
    let secs = v["duration_secs"].as_f64().unwrap();
    assert!((secs - 8.0).abs() < 0.2, "duration {secs}");
    assert_eq!(v["state"], "ready", "{v}");
    assert!(
        v["watch_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("?v={id}")),
        "{v}"
    );
    let table = run(&["list", "--api", &runner.base, "--key", &key]);
    assert_eq!(code(&table), 0, "{}", stderr(&table));
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
    assert!(
        row.contains("Demo day") && row.contains("0:08") && row.contains("ready"),
        "{row}"
    );

    // keep, then let it expire again (the runner's default retention: 30 days)
    let kept = run(&["keep", &id, "--json", "--api", &runner.base, "--key", &key]);
    assert_eq!(code(&kept), 0, "{}", stderr(&kept));
    let kept: Value = serde_json::from_slice(&kept.stdout).unwrap();
    assert_eq!(kept["kept"], true, "{kept}");
    assert!(kept.get("expires_ms").is_none(), "{kept}");
    let off = run(&[
        "keep",
        &id,
        "--off",
        "--json",
        "--api",
        &runner.base,
        "--key",
        &key,
    ]);
    let off: Value = serde_json::from_slice(&off.stdout).unwrap();
    assert_eq!(off["kept"], false, "{off}");
    assert!(off["expires_ms"].as_u64().is_some(), "{off}");

    // another owner neither sees nor deletes it
    assert!(
        list_json(&runner, &other)
            .iter()
            .all(|v| v["video_id"] != id.as_str()),
        "another owner's list shows {id}"
    );
    let theirs = run(&[
        "delete",
        &id,
        "--yes",
        "--api",
        &runner.base,
        "--key",
        &other,
    ]);
    assert_eq!(code(&theirs), UNKNOWN_VIDEO, "{}", stderr(&theirs));
    assert!(
        stderr(&theirs).contains("another owner"),
        "{}",
        stderr(&theirs)
    );
    let manifest = format!("{}/v/{id}/manifest.mpd", runner.base);
    assert_eq!(http_status(&manifest), 200);
    let before = objects(&runner, &format!("v/{id}/"));
    assert!(
        before.iter().any(|k| k.ends_with("manifest.mpd")),
        "{before:?}"
    );

    // without --yes and without a terminal: refused, nothing deleted
    let unasked = run(&["delete", &id, "--api", &runner.base, "--key", &key]);
    assert_eq!(code(&unasked), USAGE, "{}", stderr(&unasked));
    assert!(stderr(&unasked).contains("--yes"), "{}", stderr(&unasked));
    assert_eq!(http_status(&manifest), 200);

    // on a terminal it names the video and asks; anything but yes deletes nothing
    let prompt = on_a_terminal(
        &format!(
            "{} delete {id} --api {} --key {key}",
            env!("CARGO_BIN_EXE_chunkstream"),
            runner.base
        ),
        "n\n",
    );
    assert_eq!(
        code(&prompt),
        0,
        "{}",
        String::from_utf8_lossy(&prompt.stdout)
    );
    let shown = String::from_utf8_lossy(&prompt.stdout);
    assert!(
        shown.contains("Delete \"Demo day\"") && shown.contains("[y/N]"),
        "{shown}"
    );
    assert!(shown.contains("Nothing deleted."), "{shown}");
    assert_eq!(http_status(&manifest), 200);

    let deleted = run(&[
        "delete",
        &id,
        "--yes",
        "--json",
        "--api",
        &runner.base,
        "--key",
        &key,
    ]);
    assert_eq!(code(&deleted), 0, "{}", stderr(&deleted));
    let deleted: Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(deleted["video_id"], id.as_str());
    assert!(
        deleted["deleted_objects"].as_u64().unwrap() >= before.len() as u64,
        "{deleted} vs {} objects before",
        before.len()
    );
    assert!(list_json(&runner, &key)
        .iter()
        .all(|v| v["video_id"] != id.as_str()));
    assert_eq!(http_status(&manifest), 404);
    assert_eq!(objects(&runner, &format!("v/{id}/")), Vec::<String>::new());
    assert_eq!(
        objects(&runner, &format!("incoming/{id}/")),
        Vec::<String>::new()
    );
    let again = run(&["delete", &id, "--yes", "--api", &runner.base, "--key", &key]);
    assert_eq!(code(&again), UNKNOWN_VIDEO, "{}", stderr(&again));
}

#[test]
fn without_a_valid_key_nothing_is_created_and_the_message_says_where_the_key_goes() {
    let _serial = one_at_a_time();
    let runner = Runner::start_with_keys();
    let dir = scratch("cli-nokey");
    let file = small_video(&dir, "nokey.mp4");
    let state = dir.join("state");

    for (extra, expected) in [
        (&[][..], "missing_credential"),
        (&["--key", "csk_notakey_000000"][..], "invalid_api_key"),
    ] {
        let mut up = Upload::start(&runner, &file, &state, extra);
        let exit = up.finish(Duration::from_secs(60));
        assert_eq!(exit, CREDENTIAL, "{extra:?}: events {:?}", up.seen);
        let err = up.event("error").expect("an error event");
        assert_eq!(err["code"], expected, "{err}");
        assert_eq!(err["exit_code"], CREDENTIAL);
        assert!(
            up.event("link").is_none(),
            "a link without a session: {:?}",
            up.seen
        );
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("CHUNKSTREAM_KEY"), "{message}");
    }
    // no session on the server, none remembered for resuming
    for prefix in ["v/", "incoming/", "owners/o/"] {
        assert_eq!(objects(&runner, prefix), Vec::<String>::new(), "{prefix}");
    }
    let remembered = std::fs::read_dir(&state).map_or(0, |d| d.count());
    assert_eq!(remembered, 0, "session files in {}", state.display());

    // the same words from the owner commands, human-readable
    let none = run(&["list", "--api", &runner.base]);
    assert_eq!(code(&none), CREDENTIAL, "{}", stderr(&none));
    assert!(
        stderr(&none).contains("requires an API key"),
        "{}",
        stderr(&none)
    );
    let wrong = run(&[
        "delete",
        "abc",
        "--yes",
        "--api",
        &runner.base,
        "--key",
        "csk_x_y",
    ]);
    assert_eq!(code(&wrong), CREDENTIAL, "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("refused the API key"),
        "{}",
        stderr(&wrong)
    );

    // a server that is not there: unavailable, after a few seconds of retries
    let started = Instant::now();
    let gone = run(&["list", "--api", "http://127.0.0.1:9", "--key", "csk_x_y"]);
    assert_eq!(code(&gone), UNAVAILABLE, "{}", stderr(&gone));
    assert!(stderr(&gone).contains("cannot reach"), "{}", stderr(&gone));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn deleting_a_video_while_its_upload_runs_stops_the_cli_with_a_clear_error() {
    let _serial = one_at_a_time();
    let runner = Runner::start_with_keys();
    let key = runner.dev_key.clone().unwrap();
    let dir = scratch("cli-delete-running");
    let file = video(&dir, "running.mp4", 40);
    // slow enough that the upload is still running when the owner deletes it
    let slow = [
        "--key",
        &key,
        "--max-rate",
        "40000",
        "--parallel",
        "1",
        "--segment-secs",
        "2",
    ];
    let state = dir.join("state");
    let mut up = Upload::start(&runner, &file, &state, &slow);
    let link = up.wait_for("link", Duration::from_secs(30), |e| e["event"] == "link");
    let id = link["video_id"].as_str().unwrap().to_owned();
    up.wait_for("a part uploaded", Duration::from_secs(60), |e| {
        e["event"] == "part" && e["state"] == "uploaded"
    });
    let deleted = run(&["delete", &id, "--yes", "--api", &runner.base, "--key", &key]);
    assert_eq!(code(&deleted), 0, "{}", stderr(&deleted));

    let exit = up.finish(Duration::from_secs(90));
    let err = up
        .event("error")
        .unwrap_or_else(|| panic!("no error event: {:?}", up.seen))
        .clone();
    assert_eq!(exit, 4, "{err}");
    assert_eq!(err["code"], "video_deleted", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("deleted by its owner"),
        "{err}"
    );
    assert!(up.event("done").is_none());
    // nothing left to resume: the same command again would start a new video
    let remembered = std::fs::read_dir(&state).map_or(0, |d| d.count());
    assert_eq!(remembered, 0, "session files in {}", state.display());
    // nothing published remains (a PUT in flight at the deletion may still land in
    // incoming/: the retention pass sweeps it, functions/service/tests/owner.rs)
    assert_eq!(objects(&runner, &format!("v/{id}/")), Vec::<String>::new());
    assert!(list_json(&runner, &key)
        .iter()
        .all(|v| v["video_id"] != id.as_str()));
}
