//! Seek-bar previews over HTTP: the layout the uploader draws its sprites in,
//! presigned PUTs for the sprites, their check and publication, and the
//! public sprites and WebVTT thumbnails track. The layout and the VTT are
//! pure functions of the plan (chunkstream_domain::previews); only the sprite
//! images are uploaded, to `v/{id}/preview-uploads/` (never served), and
//! copied to `v/{id}/previews/` once checked.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::previews::{
    check_sprite, render_vtt, sprite_path, PreviewLayout, MAX_SPRITE_BYTES, SPRITE_CONTENT_TYPE,
    VTT_PATH,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{load_authorized, parse_json, stream_object, AppState, RawBody};
use crate::error::ApiError;
use crate::sessions::{self, SessionRecord};
use crate::store::{PresignedUpload, StoreError};

/// `GET /api/videos/{id}/previews` (layout), `POST` (presigned sprite PUTs),
/// `POST …/previews/{n}/uploaded` (check + publish), and the public
/// `/v/{id}/previews/{n}.jpg` and `/v/{id}/previews/thumbnails.vtt`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(layout, presign_sprites))
        .routes(routes!(sprite_uploaded))
        .routes(routes!(public_preview))
}

fn upload_key(id: &str, sprite: usize) -> String {
    format!("{}preview-uploads/{sprite}.jpg", sessions::video_prefix(id))
}
fn published_key(id: &str, sprite: usize) -> String {
    format!("{}{}", sessions::video_prefix(id), sprite_path(sprite))
}

fn layout_of(record: &SessionRecord) -> Result<PreviewLayout, ApiError> {
    PreviewLayout::for_plan(&record.plan).ok_or_else(|| {
        ApiError::client(
            StatusCode::CONFLICT,
            "no_previews",
            "this video has no video track with known dimensions: it has no previews",
        )
    })
}

fn sprite_index(layout: &PreviewLayout, sprite: &str) -> Result<usize, ApiError> {
    sprite
        .parse::<usize>()
        .ok()
        .filter(|s| *s < layout.sprites)
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::NOT_FOUND,
                "sprite_out_of_range",
                format!(
                    "'{sprite}' is not a sprite of this video (it has {})",
                    layout.sprites
                ),
            )
        })
}

/// The sprite grid the uploader draws its previews in.
#[derive(Serialize, ToSchema)]
struct LayoutAnswer {
    #[serde(flatten)]
    layout: PreviewLayout,
    sprite_width: u32,
    sprite_height: u32,
    /// What each sprite is (`image/jpeg`).
    content_type: &'static str,
    max_sprite_bytes: u64,
    /// Relative to `/v/{id}/`.
    vtt_path: &'static str,
}

/// The preview layout of a video (public).
#[utoipa::path(
    get,
    path = "/api/videos/{id}/previews",
    tag = "previews",
    params(("id" = String, Path, description = "The video id")),
    responses(
        (status = 200, description = "OK", body = LayoutAnswer),
        crate::openapi::PublicErrors,
        (status = 409, response = crate::openapi::Conflict),
        (status = 410, response = crate::openapi::Gone),
    )
)]
async fn layout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LayoutAnswer>, ApiError> {
    let record = state.sessions.load(&id).await?;
    let layout = layout_of(&record)?;
    Ok(Json(LayoutAnswer {
        layout,
        sprite_width: layout.sprite_width(),
        sprite_height: layout.sprite_height(),
        content_type: SPRITE_CONTENT_TYPE,
        max_sprite_bytes: MAX_SPRITE_BYTES,
        vtt_path: VTT_PATH,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SpriteSize {
    index: usize,
    /// Bytes of the JPEG to upload.
    size: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PresignRequest {
    /// 1 to `sprites` of the layout.
    sprites: Vec<SpriteSize>,
}

#[derive(Serialize, ToSchema)]
struct SpriteUpload {
    index: usize,
    #[serde(flatten)]
    upload: PresignedUpload,
}

#[derive(Serialize, ToSchema)]
struct SpriteUploads {
    uploads: Vec<SpriteUpload>,
}

/// Presigned PUTs for preview sprites.
#[utoipa::path(
    post,
    path = "/api/videos/{id}/previews",
    tag = "previews",
    params(("id" = String, Path, description = "The video id")),
    request_body = PresignRequest,
    security(("upload_secret" = [])),
    responses(
        (status = 200, description = "OK", body = SpriteUploads),
        (status = 400, response = crate::openapi::BadRequest),
        crate::openapi::SecretErrors,
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
    )
)]
async fn presign_sprites(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<SpriteUploads>, ApiError> {
    let record = load_authorized(&state, &id, &headers).await?;
    let layout = layout_of(&record)?;
    let request: PresignRequest = parse_json(&body)?;
    if request.sprites.is_empty() || request.sprites.len() > layout.sprites {
        return Err(ApiError::bad_request(format!(
            "send between 1 and {} sprites",
            layout.sprites
        )));
    }
    let mut uploads = Vec::with_capacity(request.sprites.len());
    for s in &request.sprites {
        let index = sprite_index(&layout, &s.index.to_string())?;
        if !(1..=MAX_SPRITE_BYTES).contains(&s.size) {
            return Err(ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "sprite_too_large",
                format!(
                    "sprite {index}: {} bytes; 1 to {MAX_SPRITE_BYTES} allowed",
                    s.size
                ),
            ));
        }
        let upload = state
            .sessions
            .store()
            .presign_put(
                &upload_key(&id, index),
                SPRITE_CONTENT_TYPE,
                s.size,
                state.config.presign_ttl,
            )
            .await?;
        uploads.push(SpriteUpload { index, upload });
    }
    Ok(Json(SpriteUploads { uploads }))
}

#[derive(Serialize, ToSchema)]
struct SpritePublished {
    sprite: usize,
    published: bool,
}

/// Checks the uploaded sprite (a JPEG of the layout's size) and publishes
/// exactly the bytes checked (copy conditional on their ETag).
#[utoipa::path(
    post,
    path = "/api/videos/{id}/previews/{sprite}/uploaded",
    tag = "previews",
    params(
        ("id" = String, Path, description = "The video id"),
        ("sprite" = usize, Path, description = "The sprite's index"),
    ),
    security(("upload_secret" = [])),
    responses(
        (status = 200, description = "OK", body = SpritePublished),
        crate::openapi::SecretErrors,
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 422, response = crate::openapi::Unprocessable),
    )
)]
async fn sprite_uploaded(
    State(state): State<AppState>,
    Path((id, sprite)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = load_authorized(&state, &id, &headers).await?;
    let layout = layout_of(&record)?;
    let index = sprite_index(&layout, &sprite)?;
    let store = state.sessions.store();
    let from = upload_key(&id, index);
    let Some(head) = store.get_head(&from, MAX_SPRITE_BYTES).await? else {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            "upload_missing",
            format!(
                "sprite {index}: nothing uploaded yet; PUT it to the URL from POST /previews first"
            ),
        ));
    };
    if head.total_len > MAX_SPRITE_BYTES {
        return Err(ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "sprite_too_large",
            format!("sprite {index}: more than {MAX_SPRITE_BYTES} bytes"),
        ));
    }
    check_sprite(&head.head, &layout).map_err(|e| {
        ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_sprite",
            format!("sprite {index}: {e}"),
        )
    })?;
    match store
        .copy(&from, &published_key(&id, index), &head.etag)
        .await
    {
        Ok(()) => {}
        Err(StoreError::PreconditionFailed(_)) => {
            return Err(ApiError::client(
                StatusCode::CONFLICT,
                "upload_changed",
                format!("sprite {index} was uploaded again while it was checked; report it again"),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(video_id = %id, sprite = index, bytes = head.total_len, "preview sprite published");
    Ok((
        StatusCode::OK,
        Json(SpritePublished {
            sprite: index,
            published: true,
        }),
    )
        .into_response())
}

/// `GET /v/{id}/previews/{n}.jpg` (a published sprite) or `thumbnails.vtt`
/// (rendered from the plan, so it exists from the moment the video does).
#[utoipa::path(
    get,
    path = "/v/{id}/previews/{file}",
    tag = "previews",
    params(
        ("id" = String, Path, description = "The video id"),
        ("file" = String, Path, description = "`{n}.jpg` (a sprite) or `thumbnails.vtt`"),
    ),
    responses(
        (status = 200, description = "A sprite, or the WebVTT thumbnails track",
            content(
                (crate::openapi::Binary = "image/jpeg"),
                (String = "text/vtt"),
            )),
        crate::openapi::PublicErrors,
        (status = 409, response = crate::openapi::Conflict),
    )
)]
async fn public_preview(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::not_found("no such preview"));
    }
    if Some(file.as_str()) == VTT_PATH.strip_prefix("previews/") {
        let record = state.sessions.load(&id).await?;
        let layout = layout_of(&record)?;
        return Ok((
            [
                (header::CONTENT_TYPE, "text/vtt; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            render_vtt(&record.plan, &layout),
        )
            .into_response());
    }
    let sprite = file
        .strip_suffix(".jpg")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| ApiError::not_found("no such preview"))?;
    // Re-uploadable until the video is gone, so cached briefly, not forever.
    if let Some(response) = stream_object(
        &state,
        &published_key(&id, sprite),
        SPRITE_CONTENT_TYPE,
        "public, max-age=300",
    )
    .await?
    {
        return Ok(response);
    }
    let mut response = ApiError::not_found("sprite not uploaded yet").into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
