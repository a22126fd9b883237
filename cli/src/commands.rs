//! `chunkstream upload` and `chunkstream status`: the glue between the file,
//! the plan, the server and the upload loop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chunkstream_domain::plan::PlanLimits;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{retry, Api, PresignedUpload, StatusResponse};
use crate::codec::{codec_name, playable_in_chromium};
use crate::error::{explain, ApiError, CliError, MediaError, MediaErrorKind};
use crate::planner::{
    default_options_for, plan_segments, validate_plan, Plan, PlanOptions, TrackKind,
};
use crate::report::Reporter;
use crate::request::session_request;
use crate::resume::{fingerprint, SessionStore, StoredSession};
use crate::source::{analyze, Analysis};
use crate::upload::{UploadOptions, Uploader};

/// The server refuses more slots than this by default: very long videos get longer parts.
const MAX_SLOTS: usize = 20_000;

pub struct UploadArgs {
    pub file: PathBuf,
    pub api: String,
    pub key: Option<String>,
    pub segment_secs: Option<f64>,
    pub parallel: usize,
    pub max_rate: Option<u64>,
    pub json: bool,
}

/// Analyse and plan a file (no network): what `upload` does before it creates the session.
/// `options`: `None` plans with the defaults for this file (the part duration from its bitrate).
pub fn prepare(
    path: &Path,
    options: Option<PlanOptions>,
) -> Result<(File, Analysis, Plan), CliError> {
    let file = File::open(path).map_err(|e| {
        MediaError::new(
            MediaErrorKind::NotMp4,
            format!("Cannot open {}: {e}.", path.display()),
        )
    })?;
    let size = file
        .metadata()
        .map_err(|e| {
            MediaError::new(
                MediaErrorKind::NotMp4,
                format!("Cannot read {}: {e}.", path.display()),
            )
        })?
        .len();
    let analysis = analyze(&file, size)?;
    let plan = plan_for(&analysis, options)?;
    Ok((file, analysis, plan))
}

/// `options`: `None` plans with the defaults for this file (the part duration from its bitrate).
fn plan_for(analysis: &Analysis, options: Option<PlanOptions>) -> Result<Plan, CliError> {
    let inputs: Vec<_> = analysis.tracks.iter().map(|t| t.input.clone()).collect();
    let mut options = options.unwrap_or_else(|| default_options_for(&inputs));
    let mut plan =
        plan_segments(&inputs, options).map_err(|e| CliError::Internal(e.to_string()))?;
    while plan.slots.len() > MAX_SLOTS && options.target_duration < 120.0 {
        options.target_duration *= 2.0;
        plan = plan_segments(&inputs, options).map_err(|e| CliError::Internal(e.to_string()))?;
    }
    if let Some(p) = validate_plan(&inputs, &plan).first() {
        return Err(CliError::Internal(format!("planning the upload: {p}")));
    }
    Ok(plan)
}

fn describe(analysis: &Analysis, plan: &Plan) -> String {
    let parts: Vec<String> = analysis
        .tracks
        .iter()
        .map(|t| match t.input.kind {
            TrackKind::Video => format!(
                "video {} {}×{}",
                t.info.codec,
                t.info.width.unwrap_or(0),
                t.info.height.unwrap_or(0)
            ),
            TrackKind::Audio => format!(
                "audio {} {} Hz {} ch",
                t.info.codec,
                t.info.sample_rate.unwrap_or(0),
                t.info.channels.unwrap_or(0)
            ),
        })
        .collect();
    format!(
        "{:.1} s · {} · {} · {} parts{}",
        analysis.duration,
        human_bytes(analysis.file_size),
        parts.join(" · "),
        plan.slots.len(),
        if analysis.ignored.is_empty() {
            String::new()
        } else {
            format!(" · {} other track(s) not streamed", analysis.ignored.len())
        }
    )
}

pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    if f >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", f / (1024.0 * 1024.0 * 1024.0))
    } else if f >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", f / 1024.0)
    }
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn upload(args: UploadArgs, stop: CancellationToken) -> Result<(), CliError> {
    let started = Instant::now();
    let mut reporter = Reporter::new(args.json);
    let api = Api::new(&args.api)?;
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "video.mp4".into());
    let mut options = None;
    if let Some(s) = args.segment_secs {
        if !(s > 0.0 && s <= 120.0) {
            return Err(CliError::Internal(
                "--segment-secs must be in (0, 120]".into(),
            ));
        }
        options = Some(PlanOptions {
            target_duration: s,
            ..PlanOptions::default()
        });
    }
    let file = File::open(&args.file).map_err(|e| {
        MediaError::new(
            MediaErrorKind::NotMp4,
            format!("Cannot open {}: {e}.", args.file.display()),
        )
    })?;
    let size = file
        .metadata()
        .map_err(|e| CliError::Io(e.to_string()))?
        .len();
    let mut analysis = analyze(&file, size)?;
    let analyzed_ms = ms(started);
    let fp = fingerprint(&file, size, &name)?;
    let fingerprinted_ms = ms(started);
    let store = SessionStore::open();
    let mut stored = store.load(&fp, api.base());
    if let Some(s) = &stored {
        options = Some(PlanOptions {
            target_duration: s.target_duration,
            max_segment_bytes: s.max_segment_bytes,
        });
    }
    let plan = plan_for(&analysis, options)?;
    let planned_ms = ms(started);
    let request = session_request(&analysis, &plan, &name, &fp);
    // refuse here what the server would refuse, before any session exists
    if let Err(e) = request.validate(&PlanLimits::default()) {
        let kind = MediaErrorKind::Unsupported;
        return Err(MediaError::new(kind, format!("This file cannot be streamed: {e}.")).into());
    }
    for t in &analysis.tracks {
        if !playable_in_chromium(&t.info.codec) {
            let kind = if t.input.kind == TrackKind::Video {
                "video"
            } else {
                "audio"
            };
            reporter.say(
                "warning",
                &format!(
                    "Warning: the {kind} codec {} ({}) of {name} does not play in Chromium-based browsers (Chrome, Edge); viewers using them will not be able to watch it (Chunkstream does not re-encode).",
                    codec_name(&t.info.codec),
                    t.info.codec
                ),
            );
        }
    }
    if !reporter.is_json() {
        eprintln!("{name}: {}", describe(&analysis, &plan));
    }

    // a resumed session's manifests carry the offsets it was created with: the parts still
    // to send must match them (else it is not this file's session)
    if stored.as_ref().is_some_and(|s| {
        s.slot_count != plan.slots.len()
            || s.total_bytes != plan.total_bytes
            || !analysis.match_session_offsets(s.ptos.as_deref())
    }) {
        store.forget(&fp, api.base());
        stored = None;
    }
    let mut init_uploads: Vec<PresignedUpload> = Vec::new();
    let mut resumed_status: Option<StatusResponse> = None;
    if let Some(s) = stored.clone() {
        match resume_session(&api, &s, plan.slots.len()).await {
            Ok((status, init)) => {
                resumed_status = Some(status);
                init_uploads = init;
            }
            Err(e) if !e.is_transient() => {
                store.forget(&fp, api.base());
                stored = None;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let session = match stored {
        Some(s) => s,
        None => {
            // a stored session given up above may have changed what is folded: back to what
            // this request says (made from this analysis, so it always fits)
            let sent: Vec<u64> = request
                .tracks
                .iter()
                .map(|t| t.presentation_time_offset)
                .collect();
            if !analysis.match_session_offsets(Some(&sent)) {
                return Err(CliError::Internal(
                    "the new session's offsets do not fit the file".into(),
                ));
            }
            let res = api
                .create_session(&request, args.key.as_deref())
                .await
                .map_err(|e| explain(e, api.base(), None))?;
            let s = StoredSession {
                api: api.base().to_owned(),
                video_id: res.video_id,
                secret: res.upload_secret,
                watch_url: res.watch_url,
                manifest_url: res.manifest_url,
                file_name: name.clone(),
                file_size: size,
                slot_count: plan.slots.len(),
                total_bytes: plan.total_bytes,
                target_duration: plan.options.target_duration,
                max_segment_bytes: plan.options.max_segment_bytes,
                created_at_unix: now_unix(),
                ptos: Some(sent),
            };
            if let Err(e) = store.save(&fp, &s) {
                reporter.say("warning", &format!("could not save the session for resuming ({e}); an interrupted upload will start over"));
            }
            init_uploads = res.init_uploads;
            s
        }
    };
    let link_ms = started.elapsed().as_secs_f64() * 1000.0;
    reporter.link(json!({
        "video_id": session.video_id, "watch_url": session.watch_url, "manifest_url": session.manifest_url,
        "status_url": format!("{}/api/videos/{}/status", api.base(), session.video_id),
        "resumed": resumed_status.is_some(), "part_count": plan.slots.len(), "bytes_total": plan.total_bytes,
        "ms_to_link": (link_ms * 10.0).round() / 10.0,
        // cumulative milliseconds since start, per stage (the rest is the server's answer)
        "stages_ms": { "analyzed": analyzed_ms, "fingerprinted": fingerprinted_ms, "planned": planned_ms },
    }));

    let file = Arc::new(file);
    let uploader = Uploader::new(
        api.clone(),
        session.video_id.clone(),
        session.secret.clone(),
        file,
        Arc::new(analysis),
        Arc::new(plan),
        UploadOptions {
            parallel: args.parallel.clamp(1, 16),
            max_rate: args.max_rate,
            ..UploadOptions::default()
        },
        reporter.clone(),
        stop.clone(),
    );
    if let Some(s) = &resumed_status {
        uploader.apply_status(s);
    }
    reporter.start_bar(
        uploader
            .progress
            .bytes_total
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    // the bar's reporter (json or indicatif) is a clone: give the loop the one with the bar
    let ticker = {
        let r = reporter.clone();
        let p = uploader.progress.clone();
        let u = uploader.clone();
        let every = if args.json {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(250)
        };
        tokio::spawn(async move {
            loop {
                u.refresh_progress();
                r.progress(&p);
                tokio::time::sleep(every).await;
            }
        })
    };
    let upload_started = Instant::now();
    let result = async {
        if !resumed_status.as_ref().is_some_and(|s| s.complete) {
            tokio::select! {
                r = uploader.upload_init(&init_uploads) => r?,
                _ = stop.cancelled() => return Err(CliError::Interrupted),
            }
            uploader.clone().run().await
        } else {
            Ok(uploader.stats())
        }
    }
    .await;
    ticker.abort();
    uploader.refresh_progress();
    reporter.progress(&uploader.progress);
    match result {
        Ok(stats) => {
            reporter.finish();
            let secs = upload_started.elapsed().as_secs_f64();
            if reporter.is_json() {
                reporter.event(
                    "done",
                    json!({
                        "video_id": session.video_id, "watch_url": session.watch_url,
                        "parts_uploaded": stats.parts_uploaded, "bytes_uploaded": stats.bytes_uploaded,
                        "priority_parts": stats.priority_parts, "seconds": (secs * 10.0).round() / 10.0,
                    }),
                );
            } else {
                eprintln!(
                    "Upload complete: {name} is fully available at {} ({} parts, {} sent in {:.1} s).",
                    session.watch_url,
                    stats.parts_uploaded,
                    human_bytes(stats.bytes_uploaded),
                    secs
                );
            }
            Ok(())
        }
        Err(e) => {
            reporter.abandon();
            if matches!(e, CliError::Interrupted) {
                reporter.event(
                    "interrupted",
                    json!({ "video_id": session.video_id, "watch_url": session.watch_url }),
                );
                if !reporter.is_json() {
                    eprintln!("Interrupted. The link keeps working for the parts already uploaded; run the same command again to resume.");
                }
            }
            if matches!(&e, CliError::Api(a) if a.code() == Some("video_deleted")) {
                // nothing to resume: the same command again starts a new video
                store.forget(&fp, api.base());
            }
            Err(e)
        }
    }
}

async fn resume_session(
    api: &Api,
    s: &StoredSession,
    slot_count: usize,
) -> Result<(StatusResponse, Vec<PresignedUpload>), ApiError> {
    let status = retry(Some(5), |_, _, _| {}, || api.status(&s.video_id)).await?;
    if status.slot_count != slot_count {
        return Err(ApiError::Status {
            status: 409,
            code: "mismatch".into(),
            message: "different plan".into(),
        });
    }
    if status.complete {
        return Ok((status, Vec::new()));
    }
    let init = retry(
        Some(5),
        |_, _, _| {},
        || api.fresh_init_uploads(&s.video_id, &s.secret),
    )
    .await?;
    Ok((status, init.init_uploads))
}

/// `chunkstream status ID`
pub async fn status(api_base: &str, id: &str, as_json: bool) -> Result<(), CliError> {
    let api = Api::new(api_base)?;
    let s = retry(Some(4), |_, _, _| {}, || api.status(id))
        .await
        .map_err(|e| explain(e, api.base(), Some(id)))?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string(&s).map_err(|e| CliError::Internal(e.to_string()))?
        );
        return Ok(());
    }
    let count = |k: &str| s.counts.get(k).copied().unwrap_or(0);
    println!(
        "{id}: {} · {:.1} s · {} parts: {} published, {} uploaded, {} assigned, {} pending, {} failed{}",
        if s.complete { "complete" } else { "uploading" },
        s.duration,
        s.slot_count,
        count("published"),
        count("uploaded"),
        count("assigned"),
        count("pending"),
        count("failed"),
        if s.priority_slots.is_empty() { String::new() } else { format!(" · viewers waiting for part(s) {:?}", s.priority_slots) }
    );
    for (i, slot) in s.slots.iter().enumerate() {
        if let Some(r) = &slot.reason {
            println!("  part {i} failed: {r}");
        }
    }
    Ok(())
}

/// `chunkstream plan FILE`: what `upload` would send, without any network —
/// with `--json`, the planner's input and output in the shared vectors' format
/// (testdata/planner/), so a file's plan can be compared with the page's.
pub fn plan(path: &Path, segment_secs: Option<f64>, as_json: bool) -> Result<(), CliError> {
    let options = segment_secs.map(|s| PlanOptions {
        target_duration: s,
        ..PlanOptions::default()
    });
    let (_file, analysis, plan) = prepare(path, options)?;
    if as_json {
        let tracks: Vec<_> = analysis.tracks.iter().map(|t| &t.input).collect();
        let out = json!({ "options": plan.options, "tracks": tracks, "expected": plan });
        println!("{out}");
        return Ok(());
    }
    println!("{}", describe(&analysis, &plan));
    for (i, s) in plan.slots.iter().enumerate() {
        println!(
            "part {i}: {:.3} s +{:.3} s, {}",
            s.start_time,
            s.duration_time,
            human_bytes(s.bytes)
        );
    }
    Ok(())
}
