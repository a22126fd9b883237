//! Seek-bar previews through the real Router, LocalStack S3 and presigned PUTs:
//! the layout and VTT exist from creation, a sprite is public only once
//! checked, and bad uploads or requests get a clear 4xx.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use axum::http::StatusCode;
use common::*;
use serde_json::Value;

/// A real JPEG of `w`×`h` made by ffmpeg.
fn jpeg(w: u64, h: u64, format: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s={w}x{h}"))
        .args(["-frames:v", "1", "-f", format, "-"])
        .output()
        .expect("ffmpeg (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn presign(
    stack: &TestStack,
    id: &str,
    secret: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    stack
        .call(
            "POST",
            &format!("/api/videos/{id}/previews"),
            secret,
            Some(body),
        )
        .await
}

#[tokio::test]
async fn sprites_go_public_only_once_checked_and_the_vtt_and_mpd_name_every_tile_from_creation() {
    let stack = TestStack::new().await;
    let base = stack.serve().await;
    let plan = synthetic_plan(150);
    let (id, secret, _) = create_session(&stack, &plan).await;
    let http = reqwest::Client::new();

    let (status, layout) = stack
        .call("GET", &format!("/api/videos/{id}/previews"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{layout}");
    assert_eq!(layout["tiles"], 150);
    assert_eq!(layout["sprites"], 2);
    let (w, h) = (
        layout["sprite_width"].as_u64().unwrap(),
        layout["sprite_height"].as_u64().unwrap(),
    );

    // the VTT and the MPD exist before any sprite: one cue per slot, one image set
    let vtt = http
        .get(format!("{base}/v/{id}/previews/thumbnails.vtt"))
        .send()
        .await
        .unwrap();
    assert_eq!(vtt.status(), 200);
    assert!(vtt.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/vtt"));
    let vtt = vtt.text().await.unwrap();
    assert_eq!(vtt.matches(" --> ").count(), 150);
    assert!(vtt.contains("\n1.jpg#xywh=0,0,"), "tile 100 opens sprite 1");
    let mpd = http
        .get(format!("{base}/v/{id}/manifest.mpd"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(mpd.contains("contentType=\"image\"") && mpd.contains("dashif.org/thumbnail_tile"));

    // bad requests
    let good = jpeg(w, h, "mjpeg");
    let one =
        |index: usize, size: usize| format!(r#"{{"sprites":[{{"index":{index},"size":{size}}}]}}"#);
    assert_eq!(
        presign(&stack, &id, None, &one(0, good.len())).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        presign(&stack, &id, Some("nope"), &one(0, good.len()))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        presign(&stack, &id, Some(&secret), &one(2, good.len()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = presign(&stack, &id, Some(&secret), &one(0, 10 << 20)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(
        presign(&stack, &id, Some(&secret), "{\"sprites\":").await.0,
        StatusCode::BAD_REQUEST
    );

    // a good sprite: not public until reported and checked, then exactly its bytes
    let (status, body) = presign(&stack, &id, Some(&secret), &one(0, good.len())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let upload = &body["uploads"][0];
    assert_eq!(upload["index"], 0);
    assert!(put_presigned(upload, good.clone())
        .await
        .status()
        .is_success());
    let sprite0 = format!("{base}/v/{id}/previews/0.jpg");
    assert_eq!(http.get(&sprite0).send().await.unwrap().status(), 404);
    let uploaded = format!("/api/videos/{id}/previews/0/uploaded");
    assert_eq!(
        stack.call("POST", &uploaded, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = stack.call("POST", &uploaded, Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = http.get(&sprite0).send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "image/jpeg");
    assert_eq!(got.bytes().await.unwrap().as_ref(), good.as_slice());

    // a PNG, and a JPEG of the wrong size, are refused with the reason and stay private
    for bad in [jpeg(w, h, "apng"), jpeg(w / 2, h / 2, "mjpeg")] {
        let (status, body) = presign(&stack, &id, Some(&secret), &one(1, bad.len())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(put_presigned(&body["uploads"][0], bad)
            .await
            .status()
            .is_success());
        let (status, body) = stack
            .call(
                "POST",
                &format!("/api/videos/{id}/previews/1/uploaded"),
                Some(&secret),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"], "bad_sprite", "{body}");
        let miss = http
            .get(format!("{base}/v/{id}/previews/1.jpg"))
            .send()
            .await
            .unwrap();
        assert_eq!(miss.status(), 404);
        assert_eq!(miss.headers()["cache-control"], "no-store");
    }
    // reported before any upload
    let mut fresh = synthetic_plan(3);
    fresh.file_name = Some("other.mp4".into());
    let (other, other_secret, _) = create_session(&stack, &fresh).await;
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{other}/previews/0/uploaded"),
            Some(&other_secret),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
