//! Playback paths: manifests, playlists, init and media segments (held misses).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::viewers::{apply_hint, hinter};
use super::*;
use crate::error::ApiError;
use crate::sessions;
use axum::http::HeaderMap;
use chunkstream_domain::windows::HintKind;

pub(crate) async fn stream_object(
    state: &AppState,
    key: &str,
    content_type: &'static str,
    cache: &'static str,
) -> Result<Option<Response>, ApiError> {
    let Some(object) = state.sessions.store().get_stream(key).await? else {
        return Ok(None);
    };
    let mut response = Response::new(Body::from_stream(object.body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(object.content_length),
    );
    Ok(Some(response))
}

/// The DASH manifest (MPD): dynamic while the upload runs, static once complete.
#[utoipa::path(
    get,
    path = "/v/{id}/manifest.mpd",
    tag = "playback",
    params(("id" = String, Path, description = "The video id")),
    responses(
        (status = 200, description = "The MPD", content_type = "application/dash+xml", body = String),
        crate::openapi::PublicErrors,
    )
)]
pub(crate) async fn manifest(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::unknown_video());
    }
    stream_object(
        &state,
        &sessions::manifest_key(&id),
        "application/dash+xml",
        sessions::MANIFEST_CACHE,
    )
    .await?
    .ok_or_else(ApiError::unknown_video)
}

pub(crate) fn parse_numbered(file: &str, ext: &str) -> Option<usize> {
    file.strip_suffix(ext)?.parse().ok()
}

/// A track's init segment (`{track}.mp4`), published once checked.
#[utoipa::path(
    get,
    path = "/v/{id}/init/{file}",
    tag = "playback",
    params(
        ("id" = String, Path, description = "The video id"),
        ("file" = String, Path, description = "`{track}.mp4`: the track's index in the plan"),
    ),
    responses(
        (status = 200, description = "The init segment (immutable)", content_type = "video/mp4", body = crate::openapi::Binary),
        crate::openapi::PublicErrors,
    )
)]
pub(crate) async fn init_segment(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let track =
        parse_numbered(&file, ".mp4").ok_or_else(|| ApiError::not_found("no such init segment"))?;
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::not_found("no such init segment"));
    }
    let key = sessions::init_key(&id, track);
    let cache = crate::store::IMMUTABLE;
    if let Some(response) = stream_object(&state, &key, "video/mp4", cache).await? {
        return Ok(response);
    }
    // Not public yet: check and publish it now if it is uploaded, rather
    // than make the viewer wait for the worker's next job.
    let record = state.sessions.load(&id).await?;
    if track < record.plan.tracks.len() {
        crate::inits::publish_inits(&state.sessions, &record).await?;
        if let Some(response) = stream_object(&state, &key, "video/mp4", cache).await? {
            return Ok(response);
        }
    }
    let mut response =
        ApiError::not_found("init segment not uploaded (or not valid) yet").into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SegmentQuery {
    /// `nohint=1`: a miss is not a priority hint (benchmarks' natural-order baseline).
    nohint: Option<String>,
    /// The watch page's viewer id: the miss refreshes or moves that viewer's window only.
    viewer: Option<String>,
}

/// A segment miss may be kept this long by an edge cache (a burst of misses
/// from many viewers costs the origin one), never by the browser.
pub(crate) const MISS_CACHE: &str = "public, max-age=0, s-maxage=1";

/// A published media segment (immutable once public), if it is there.
pub(crate) async fn published_segment(
    state: &AppState,
    key: &str,
) -> Result<Option<Response>, ApiError> {
    stream_object(state, key, "video/mp4", crate::store::IMMUTABLE).await
}

/// A part's media segment for one track. A miss is a priority hint and is
/// held (5 s by default) in case the part is published meanwhile.
#[utoipa::path(
    get,
    path = "/v/{id}/seg/{track}/{file}",
    tag = "playback",
    params(
        ("id" = String, Path, description = "The video id"),
        ("track" = usize, Path, description = "The track's index in the plan"),
        ("file" = String, Path, description = "`{slot}.m4s`"),
        SegmentQuery,
    ),
    responses(
        (status = 200, description = "The media segment (immutable)", content_type = "video/mp4", body = crate::openapi::Binary),
        crate::openapi::PublicErrors,
    )
)]
pub(crate) async fn media_segment(
    State(state): State<AppState>,
    Path((id, track, file)): Path<(String, String, String)>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SegmentQuery>,
) -> Result<Response, ApiError> {
    let hint = query.nohint.as_deref() != Some("1");
    let slot =
        parse_numbered(&file, ".m4s").ok_or_else(|| ApiError::not_found("no such segment"))?;
    let track: usize = track
        .parse()
        .map_err(|_| ApiError::not_found("no such segment"))?;
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::not_found("no such segment"));
    }
    let key = sessions::published_key(&id, track, slot);
    if let Some(response) = published_segment(&state, &key).await? {
        return Ok(response);
    }
    // A viewer wants this slot and it is not there: that is a priority hint
    // (free when the viewer's window already covers it).
    if hint {
        let who = hinter(&headers, query.viewer.as_deref());
        let hinted = match state.sessions.load(&id).await {
            Ok(record) => apply_hint(&state, &record, &who, slot, HintKind::Miss)
                .await
                .map(|_| ()),
            Err(e) => Err(e.into()),
        };
        match hinted {
            Ok(()) | Err(ApiError::Client { .. }) => {}
            Err(ApiError::Internal(e)) => {
                tracing::warn!(video_id = %id, slot, error = %e, "priority hint failed")
            }
        }
    }
    // A viewer waiting on this slot gets it the moment it is published instead
    // of after its player's next retry: hold the miss a little, re-checking.
    if hint {
        let deadline = tokio::time::Instant::now() + state.config.segment_hold;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(SEGMENT_HOLD_POLL).await;
            if let Some(response) = published_segment(&state, &key).await? {
                return Ok(response);
            }
        }
    }
    let mut response = ApiError::not_found("segment not published yet").into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(MISS_CACHE));
    Ok(response)
}

/// `GET /v/{id}/master.m3u8`: the HLS multivariant playlist, written with the MPD.
#[utoipa::path(
    get,
    path = "/v/{id}/master.m3u8",
    tag = "playback",
    params(("id" = String, Path, description = "The video id")),
    responses(
        (status = 200, description = "The multivariant playlist", content_type = "application/vnd.apple.mpegurl", body = String),
        crate::openapi::PublicErrors,
    )
)]
pub(crate) async fn hls_master(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::unknown_video());
    }
    stream_object(
        &state,
        &sessions::hls_master_key(&id),
        sessions::HLS_CONTENT_TYPE,
        sessions::MANIFEST_CACHE,
    )
    .await?
    .ok_or_else(ApiError::unknown_video)
}

/// `GET /v/{id}/hls/{track}.m3u8`: one track's HLS media playlist.
#[utoipa::path(
    get,
    path = "/v/{id}/hls/{file}",
    tag = "playback",
    params(
        ("id" = String, Path, description = "The video id"),
        ("file" = String, Path, description = "`{track}.m3u8`: the track's index in the plan"),
    ),
    responses(
        (status = 200, description = "The media playlist", content_type = "application/vnd.apple.mpegurl", body = String),
        crate::openapi::PublicErrors,
    )
)]
pub(crate) async fn hls_media_playlist(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let track =
        parse_numbered(&file, ".m3u8").ok_or_else(|| ApiError::not_found("no such playlist"))?;
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::not_found("no such playlist"));
    }
    stream_object(
        &state,
        &sessions::hls_media_key(&id, track),
        sessions::HLS_CONTENT_TYPE,
        sessions::MANIFEST_CACHE,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no such playlist"))
}
