//! `chunkstream list`, `delete` and `keep`: the key owner's videos, through the
//! owner API (`/api/me/videos…`, docs in infra/README.md "Owner API").

use std::io::{BufRead, IsTerminal, Write};

use serde_json::json;

use crate::api::{retry, Api, OwnedVideo};
use crate::commands::human_bytes;
use crate::error::{explain, ApiError, CliError};

/// Where the owner API is and who asks: `--api` and `--key` (or `CHUNKSTREAM_KEY`).
pub struct OwnerArgs {
    pub api: String,
    pub key: Option<String>,
}

const ATTEMPTS: u32 = 4;

/// Video ids are URL-safe base64; anything else is refused before it reaches a URL path.
fn check_id(id: &str) -> Result<(), CliError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CliError::UnknownVideo(format!(
            "{id:?} is not a video id (ids look like the v= part of a watch link; `chunkstream list` shows them)."
        )))
    }
}

async fn my_videos(api: &Api, key: Option<&str>) -> Result<Vec<OwnedVideo>, CliError> {
    retry(Some(ATTEMPTS), |_, _, _| {}, || api.my_videos(key))
        .await
        .map(|v| v.videos)
        .map_err(|e| explain(e, api.base(), None))
}

/// `chunkstream list`: a table on stdout (or `{"videos": [...]}` with `--json`).
pub async fn list(args: OwnerArgs, as_json: bool) -> Result<(), CliError> {
    let api = Api::new(&args.api)?;
    let videos = my_videos(&api, args.key.as_deref()).await?;
    if as_json {
        let out = json!({ "videos": videos });
        println!("{out}");
        return Ok(());
    }
    if videos.is_empty() {
        eprintln!("No videos yet for this key at {}.", api.base());
        return Ok(());
    }
    print!("{}", table(&videos));
    Ok(())
}

/// `chunkstream delete ID`: asks first on a terminal unless `--yes`.
pub async fn delete(args: OwnerArgs, id: &str, yes: bool, as_json: bool) -> Result<(), CliError> {
    check_id(id)?;
    let api = Api::new(&args.api)?;
    let key = args.key.as_deref();
    if !yes {
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(CliError::Usage(
                "not deleting without --yes when not on a terminal (nothing to confirm with)"
                    .into(),
            ));
        }
        let videos = my_videos(&api, key).await?;
        let Some(v) = videos.iter().find(|v| v.video_id == id) else {
            return Err(explain(unknown(), api.base(), Some(id)));
        };
        eprint!(
            "Delete \"{}\" ({}, {}, {}, created {})? Its link stops working and every part is removed. [y/N] ",
            v.title,
            duration(v.duration_secs),
            human_bytes(v.size_bytes),
            v.state,
            created(v.created_ms)
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            eprintln!("Nothing deleted.");
            return Ok(());
        }
    }
    let mut retried = false;
    let result = retry(
        Some(ATTEMPTS),
        |_, _, _| retried = true,
        || api.delete_video(id, key),
    )
    .await;
    let deleted = match result {
        Ok(d) => d,
        // an earlier attempt may have deleted it and lost the answer
        Err(e) if retried && e.is_unknown_video() => {
            return Err(CliError::UnknownVideo(format!(
                "No video {id} any more: an earlier attempt may have deleted it before the connection failed."
            )))
        }
        Err(e) => return Err(explain(e, api.base(), Some(id))),
    };
    if as_json {
        println!(
            "{}",
            json!({ "event": "deleted", "video_id": deleted.video_id, "deleted_objects": deleted.deleted_objects })
        );
    } else {
        eprintln!(
            "Deleted {id} ({} objects); its link no longer plays.",
            deleted.deleted_objects
        );
    }
    Ok(())
}

/// `chunkstream keep ID [--off]`: exempt a video from retention (or give it back).
pub async fn keep(args: OwnerArgs, id: &str, kept: bool, as_json: bool) -> Result<(), CliError> {
    check_id(id)?;
    let api = Api::new(&args.api)?;
    let key = args.key.as_deref();
    let v = retry(
        Some(ATTEMPTS),
        |_, _, _| {},
        || api.keep_video(id, kept, key),
    )
    .await
    .map_err(|e| explain(e, api.base(), Some(id)))?;
    if as_json {
        println!("{}", json!(v));
    } else if v.kept {
        eprintln!("Kept \"{}\" ({id}): retention will not delete it.", v.title);
    } else {
        match v.expires_ms {
            Some(at) => eprintln!(
                "\"{}\" ({id}) is no longer kept: it expires {}.",
                v.title,
                created(at)
            ),
            None => eprintln!(
                "\"{}\" ({id}) is no longer kept (this server keeps every video).",
                v.title
            ),
        }
    }
    Ok(())
}

fn unknown() -> ApiError {
    ApiError::Status {
        status: 404,
        code: "unknown_video".into(),
        message: "no video with that id".into(),
    }
}

/// `1:02:03` or `4:05`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `2026-12-01 16:32 UTC` for ms since the epoch.
pub fn created(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => ms.to_string(),
    }
}

fn state(v: &OwnedVideo) -> String {
    let mut s = match v.state.as_str() {
        "uploading" | "processing" => {
            format!("{} {}/{}", v.state, v.published_slots, v.total_slots)
        }
        other => other.to_owned(),
    };
    if v.kept {
        s.push_str(", kept");
    }
    s
}

const TITLE_WIDTH: usize = 40;

fn shorten(title: &str) -> String {
    if title.chars().count() <= TITLE_WIDTH {
        title.to_owned()
    } else {
        let mut t: String = title.chars().take(TITLE_WIDTH - 1).collect();
        t.push('…');
        t
    }
}

/// The `list` table: one row per video, columns padded to their widest cell.
pub fn table(videos: &[OwnedVideo]) -> String {
    let header = [
        "ID", "TITLE", "DURATION", "SIZE", "STATE", "CREATED", "LINK",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = videos
        .iter()
        .map(|v| {
            [
                v.video_id.clone(),
                shorten(&v.title),
                duration(v.duration_secs),
                human_bytes(v.size_bytes),
                state(v),
                created(v.created_ms),
                v.watch_url.clone(),
            ]
        })
        .collect();
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == row.len() - 1 {
                    cell.clone() // the link last, unpadded
                } else {
                    let pad = w - cell.chars().count();
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(id: &str, title: &str, state: &str) -> OwnedVideo {
        OwnedVideo {
            video_id: id.into(),
            title: title.into(),
            duration_secs: 3725.4,
            size_bytes: 5 * 1024 * 1024,
            created_ms: 1_796_083_200_000, // 2026-12-01 00:00 UTC
            kept: false,
            expires_ms: None,
            state: state.into(),
            published_slots: 3,
            total_slots: 10,
            watch_url: format!("http://h/watch.html?v={id}"),
        }
    }

    #[test]
    fn the_table_lines_up_and_names_every_column() {
        let mut kept = video(
            "b",
            "A very long title that goes on and on and on and on",
            "ready",
        );
        kept.kept = true;
        let t = table(&[video("aaaa", "talk", "uploading"), kept]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("ID    TITLE"), "{t}");
        assert!(lines[1].contains("uploading 3/10"), "{t}");
        assert!(
            lines[1].contains("1:02:05") && lines[1].contains("5.0 MiB"),
            "{t}"
        );
        assert!(lines[1].contains("2026-12-01 00:00 UTC"), "{t}");
        assert!(
            lines[2].contains("ready, kept") && lines[2].contains('…'),
            "{t}"
        );
        // every row's link starts in the same column (in characters: '…' is 3 bytes)
        let column = |line: &str, what: &str| line.find(what).map(|b| line[..b].chars().count());
        let col = column(lines[0], "LINK");
        assert!(col.is_some(), "{t}");
        assert_eq!(column(lines[1], "http://"), col, "{t}");
        assert_eq!(column(lines[2], "http://"), col, "{t}");
    }

    #[test]
    fn durations_read_like_a_player() {
        assert_eq!(duration(0.4), "0:00");
        assert_eq!(duration(65.0), "1:05");
        assert_eq!(duration(3600.0), "1:00:00");
    }

    #[test]
    fn ids_that_could_change_the_url_path_are_refused_locally() {
        assert!(check_id("AbC-_09").is_ok());
        for bad in ["", "../keys", "a/b", "a?b", "a b"] {
            let e = check_id(bad).expect_err(bad);
            assert_eq!(e.exit_code(), crate::error::exit::UNKNOWN_VIDEO);
        }
    }
}
