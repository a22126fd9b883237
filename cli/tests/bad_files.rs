//! Bad input: a clear message and exit code 3 within a second, no panic, and no
//! session (the CLI never contacts the server: a listener it is pointed at sees no
//! connection). Also the status command's exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{cli, ffmpeg, scratch};

fn u32be(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

/// A small real MP4 (faststart) and the offset of `kind` inside its moov.
fn sample(dir: &std::path::Path) -> Vec<u8> {
    let f = dir.join("ok.mp4");
    ffmpeg(
        &f,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-movflags",
            "+faststart",
        ],
    );
    std::fs::read(f).unwrap()
}

fn at(bytes: &[u8], kind: &[u8; 4]) -> usize {
    bytes.windows(4).position(|w| w == kind).unwrap() - 4
}

#[test]
fn bad_files_fail_fast_with_a_clear_reason_and_no_session() {
    let dir = scratch("cli-bad-files");
    let good = sample(&dir);
    let mut cases: Vec<(&str, Vec<u8>, &str)> =
        vec![("text.mp4", b"this is not a video\n".to_vec(), "not an MP4")];
    cases.push((
        "truncated.mp4",
        good[..good.len() * 2 / 3].to_vec(),
        "truncated",
    ));
    let mut zero = good.clone();
    let t = at(&zero, b"trak");
    zero[t..t + 4].copy_from_slice(&u32be(0));
    cases.push(("zero-size-box.mp4", zero, "size 0"));
    let mut big = good.clone();
    let s = at(&big, b"stsz");
    big[s + 16..s + 20].copy_from_slice(&u32be(0x8000_0000));
    cases.push(("huge-count.mp4", big, "more than its box holds"));
    // a moov declaring 2^40 bytes (64-bit size) after a valid ftyp
    let ftyp_len = u32::from_be_bytes(good[0..4].try_into().unwrap()) as usize;
    let mut huge = good[..ftyp_len].to_vec();
    huge.extend_from_slice(&u32be(1));
    huge.extend_from_slice(b"moov");
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&[0u8; 4096]);
    cases.push(("2pow40.mp4", huge, "truncated"));
    let mut nested = good.clone();
    let m = at(&nested, b"mdia");
    nested[m..m + 4].copy_from_slice(&u32be(0xffff_fff0));
    cases.push(("nested-oversize.mp4", nested, "where only"));

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    for (name, bytes, reason) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let started = Instant::now();
        let out = cli()
            .args(["upload", "--api", &api])
            .arg(&path)
            .env("CHUNKSTREAM_STATE_DIR", dir.join("state"))
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{name}: {stderr}");
        assert!(stderr.contains(reason), "{name}: {stderr}");
        assert!(stderr.contains("Nothing was uploaded"), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(took < Duration::from_secs(1), "{name} took {took:?}");
        // --json: one error event with the code
        let out = cli()
            .args(["upload", "--json", "--api", &api])
            .arg(&path)
            .env("CHUNKSTREAM_STATE_DIR", dir.join("state"))
            .output()
            .unwrap();
        let line: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(line["event"], "error");
        assert_eq!(line["exit_code"], 3);
    }
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the CLI contacted the server for a bad file: {other:?}"),
    }
}

#[test]
fn status_of_an_unreachable_server_exits_5() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = cli()
        .args([
            "status",
            "abc",
            "--api",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
