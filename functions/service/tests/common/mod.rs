//! Shared harness for the LocalStack integration tests: a private bucket and
//! queue pair per test (so tests run in parallel), real SDK clients, real
//! media made by ffmpeg.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chunkstream::api::{app, AppState};
use chunkstream::aws::AwsClients;
use chunkstream::config::Config;
use chunkstream::provision::{provision, Provisioned, QueueSettings};
use chunkstream::queue::SqsQueues;
use chunkstream::sessions::Sessions;
use chunkstream::store::S3Store;
use chunkstream::worker::Worker;
use chunkstream_domain::fmp4::summarize_media_segment;
use chunkstream_domain::plan::{
    FragmentPlan, PlanLimits, SegmentPlan, SlotPlan, TrackKind, TrackPlan,
};
use chunkstream_domain::state::SchedulePolicy;
use http_body_util::BodyExt;
use serde_json::Value;

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

async fn localstack_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(chunkstream::aws::https_client())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

/// For deploying infra/storage.yaml (see `chunkstream::provision`).
pub async fn localstack_cloudformation() -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&localstack_config().await)
}

pub async fn localstack_clients() -> AwsClients {
    let shared = localstack_config().await;
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    AwsClients {
        s3: aws_sdk_s3::Client::from_conf(s3),
        sqs: aws_sdk_sqs::Client::new(&shared),
        signing: chunkstream::aws::signing_of(&shared),
    }
}

pub struct TestStack {
    pub clients: AwsClients,
    pub queues: Provisioned,
    pub state: AppState,
    pub worker: Worker,
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

impl TestStack {
    pub async fn new() -> Self {
        Self::with(QueueSettings::default(), |_| {}).await
    }

    pub async fn with(settings: QueueSettings, tweak: impl FnOnce(&mut Config)) -> Self {
        let clients = localstack_clients().await;
        let name = unique("cs-test");
        let queues = provision(&localstack_cloudformation().await, &name, &name, &settings)
            .await
            .expect("LocalStack must be running (localstack/start.sh)");
        let mut config = Config {
            bucket: name.clone(),
            priority_queue_url: queues.priority_queue_url.clone(),
            normal_queue_url: queues.normal_queue_url.clone(),
            feed_queue_prefix: Some(format!("{name}-feed-")),
            ..memory_config()
        };
        tweak(&mut config);
        let sessions = Sessions::new(Arc::new(S3Store::new(clients.s3.clone(), name.clone())))
            .with_feed_signal(chunkstream::feed_signal(&config, &clients));
        let state = AppState {
            config: Arc::new(config),
            sessions: sessions.clone(),
            queue: Arc::new(SqsQueues::new(
                clients.sqs.clone(),
                queues.priority_queue_url.clone(),
                queues.normal_queue_url.clone(),
            )),
            events: Default::default(),
            hints: Default::default(),
        };
        Self {
            clients,
            queues,
            state,
            worker: Worker::new(sessions),
        }
    }

    pub fn router(&self) -> Router {
        app(self.state.clone())
    }

    /// Serves the router on an ephemeral port (for clients that need real HTTP).
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    pub async fn queue_depth(&self, url: &str) -> usize {
        let attrs = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .unwrap();
        let map = attrs.attributes.unwrap_or_default();
        map.values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
    }
}

/// Anything that serves the API Router: the LocalStack stack or the fakes.
#[allow(async_fn_in_trait)]
pub trait Api {
    fn app_router(&self) -> Router;

    /// One in-process request through the Router.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        secret: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(secret) = secret {
            req = req.header("authorization", format!("Bearer {secret}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Body::from(body.unwrap_or_default().to_string()))
            .unwrap();
        let resp = tower::ServiceExt::oneshot(self.app_router(), req)
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }
}

impl Api for TestStack {
    fn app_router(&self) -> Router {
        self.router()
    }
}

/// PUTs `body` to a presigned upload as the API described it.
pub async fn put_presigned(upload: &Value, body: Vec<u8>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut req = client.put(upload["url"].as_str().unwrap());
    for (k, v) in upload["headers"].as_object().unwrap() {
        if k != "content-length" {
            req = req.header(k, v.as_str().unwrap());
        }
    }
    req.body(body).send().await.unwrap()
}

/// A real H.264 + AAC source and its fMP4 DASH segments, made once per test binary.
pub struct Media {
    pub dir: PathBuf,
    pub source: PathBuf,
    pub source_frames: u64,
    pub plan: SegmentPlan,
    /// `init[track_index]`
    pub init: Vec<Vec<u8>>,
    /// `segments[slot][track_index]`
    pub segments: Vec<Vec<Vec<u8>>>,
}

static MEDIA: OnceLock<Media> = OnceLock::new();

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is ffmpeg installed? scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Decoded video frames, counted by ffprobe (works for files and MPD URLs).
pub fn count_video_frames(input: &str) -> u64 {
    let out = run(Command::new("ffprobe").args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-count_frames",
        "-show_entries",
        "stream=nb_read_frames",
        "-of",
        "csv=p=0",
        input,
    ]));
    out.trim()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe said {out:?}"))
}

fn segment_files(dir: &Path, stream: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("chunk-stream{stream}-")))
        })
        .collect();
    files.sort();
    files
}

pub fn media() -> &'static Media {
    MEDIA.get_or_init(|| make_media(25, 10))
}

/// `seconds` of test video + audio, keyframe every 2 s, cut by ffmpeg's DASH
/// muxer into parts of `part_secs` (a multiple of 2).
pub fn make_media(seconds: u32, part_secs: u32) -> Media {
    {
        let dir = std::env::temp_dir().join(unique("chunkstream-media"));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("source.mp4");
        // 25 s, keyframe every 2 s, so ffmpeg's DASH muxer cuts 10 s, 10 s, 5 s.
        run(Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x180:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                &seconds.to_string(),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "50",
                "-keyint_min",
                "50",
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
            ])
            .arg(&source));
        run(Command::new("ffmpeg")
            .current_dir(&dir)
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                "source.mp4",
            ])
            .args([
                "-map",
                "0:v",
                "-map",
                "0:a",
                "-c",
                "copy",
                "-f",
                "dash",
                "-seg_duration",
                &part_secs.to_string(),
                "-use_template",
                "1",
                "-use_timeline",
                "1",
                "-adaptation_sets",
                "id=0,streams=v id=1,streams=a",
                "dash.mpd",
            ]));
        let mpd = dash_mpd::parse(&std::fs::read_to_string(dir.join("dash.mpd")).unwrap()).unwrap();
        let adaptations = &mpd.periods[0].adaptations;
        let mut tracks = Vec::new();
        let mut init = Vec::new();
        let mut per_track_segments: Vec<Vec<Vec<u8>>> = Vec::new();
        for (stream, aset) in adaptations.iter().enumerate() {
            let rep = &aset.representations[0];
            let timescale = aset
                .SegmentTemplate
                .as_ref()
                .or(rep.SegmentTemplate.as_ref())
                .and_then(|t| t.timescale)
                .unwrap() as u32;
            let init_bytes = std::fs::read(dir.join(format!("init-stream{stream}.m4s"))).unwrap();
            let is_video = rep.width.is_some() || aset.contentType.as_deref() == Some("video");
            let segments: Vec<Vec<u8>> = segment_files(&dir, stream)
                .iter()
                .map(|p| std::fs::read(p).unwrap())
                .collect();
            let track_id = summarize_media_segment(&segments[0], segments[0].len() as u64)
                .unwrap()
                .tracks[0]
                .track_id;
            tracks.push(TrackPlan {
                id: track_id,
                kind: if is_video {
                    TrackKind::Video
                } else {
                    TrackKind::Audio
                },
                codec: rep.codecs.clone().or(aset.codecs.clone()).unwrap(),
                timescale,
                width: rep.width.map(|w| w as u32),
                height: rep.height.map(|h| h as u32),
                sample_rate: (!is_video).then_some(48000),
                channels: (!is_video).then_some(1),
                presentation_time_offset: 0,
                init_size: init_bytes.len() as u64,
                language: None,
                label: None,
                default: false,
            });
            init.push(init_bytes);
            per_track_segments.push(segments);
        }
        let slot_count = per_track_segments[0].len();
        assert!(
            per_track_segments.iter().all(|s| s.len() == slot_count),
            "ffmpeg cut tracks differently"
        );
        let mut slots = Vec::new();
        let mut segments = Vec::new();
        for slot in 0..slot_count {
            let mut frags = Vec::new();
            let mut files = Vec::new();
            for track in &per_track_segments {
                let bytes = &track[slot];
                let summary = summarize_media_segment(bytes, bytes.len() as u64).unwrap();
                let t = &summary.tracks[0];
                frags.push(FragmentPlan {
                    start: t.base_media_decode_time.unwrap(),
                    duration: t.total_duration,
                    size: bytes.len() as u64,
                });
                files.push(bytes.clone());
            }
            slots.push(SlotPlan { tracks: frags });
            segments.push(files);
        }
        let plan = SegmentPlan {
            file_name: Some("source.mp4".into()),
            fingerprint: None,
            tracks,
            slots,
        };
        plan.validate(&PlanLimits::default()).unwrap();
        let source_frames = count_video_frames(source.to_str().unwrap());
        Media {
            dir,
            source,
            source_frames,
            plan,
            init,
            segments,
        }
    }
}

/// Creates a session for `plan` through the API; returns (video_id, secret, response).
pub async fn create_session(stack: &impl Api, plan: &SegmentPlan) -> (String, String, Value) {
    let (status, body) = stack
        .call(
            "POST",
            "/api/videos",
            None,
            Some(&serde_json::to_string(plan).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["video_id"].as_str().unwrap().to_string(),
        body["upload_secret"].as_str().unwrap().to_string(),
        body,
    )
}

/// Uploads every init segment of a session through its presigned URLs.
pub async fn upload_inits(created: &Value, media: &Media) {
    for (i, upload) in created["init_uploads"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let resp = put_presigned(upload, media.init[i].clone()).await;
        assert!(resp.status().is_success(), "init PUT: {}", resp.status());
    }
}

/// Uploads the given assignment's segments (from `media`) through their URLs.
pub async fn upload_assignment(assignment: &Value, media: &Media) {
    let slot = assignment["slot"].as_u64().unwrap() as usize;
    for (i, upload) in assignment["uploads"].as_array().unwrap().iter().enumerate() {
        let resp = put_presigned(upload, media.segments[slot][i].clone()).await;
        assert!(
            resp.status().is_success(),
            "segment PUT slot {slot}: {}",
            resp.status()
        );
    }
}

/// The configuration of the in-memory harnesses (fake store and queue, no AWS):
/// tests change what they measure with struct update syntax.
pub fn memory_config() -> Config {
    Config {
        bucket: "memory".into(),
        priority_queue_url: "memory-priority".into(),
        normal_queue_url: "memory-normal".into(),
        feed_queue_prefix: None,
        public_base_url: "http://127.0.0.1:9".into(),
        s3_public_endpoint: None,
        presign_ttl: Duration::from_secs(300),
        segment_hold: chunkstream::config::DEFAULT_SEGMENT_HOLD,
        session_ttl: Duration::from_secs(3600),
        limits: PlanLimits::default(),
        policy: SchedulePolicy::default(),
    }
}

/// A plan of `n` synthetic 10 s slots (for scheduling tests that upload nothing).
pub fn synthetic_plan(n: usize) -> SegmentPlan {
    let mut plan = media().plan.clone();
    let template = plan.slots[0].clone();
    plan.slots = (0..n as u64)
        .map(|i| SlotPlan {
            tracks: template
                .tracks
                .iter()
                .map(|f| FragmentPlan {
                    start: f.start + i * f.duration,
                    ..*f
                })
                .collect(),
        })
        .collect();
    plan
}

/// `POST next` through the Router; asserts 200.
pub async fn next(stack: &impl Api, id: &str, secret: &str, max: usize) -> Value {
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/next"),
            Some(secret),
            Some(&serde_json::json!({"max": max}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// `POST next` that also reports `uploaded` parts (one write for both); asserts 200.
pub async fn next_reporting(
    stack: &impl Api,
    id: &str,
    secret: &str,
    max: usize,
    uploaded: &[usize],
) -> Value {
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/next"),
            Some(secret),
            Some(&serde_json::json!({"max": max, "uploaded": uploaded}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Reports a slot uploaded through the Router; asserts 202.
pub async fn report_uploaded(stack: &impl Api, id: &str, secret: &str, slot: u64) -> Value {
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/slots/{slot}/uploaded"),
            Some(secret),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body
}

/// A viewer's seek to `slot` (`POST prioritize`) through the Router; asserts 200.
pub async fn prioritize(stack: &impl Api, id: &str, slot: usize) -> Value {
    let (code, body) = stack
        .call(
            "POST",
            &format!("/api/videos/{id}/prioritize"),
            None,
            Some(&format!(r#"{{"slot": {slot}}}"#)),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// `GET status` through the Router; asserts 200.
pub async fn status(stack: &impl Api, id: &str) -> Value {
    let (code, body) = stack
        .call("GET", &format!("/api/videos/{id}/status"), None, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}
