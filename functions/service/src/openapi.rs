//! The API's OpenAPI 3.1 document, built by utoipa from the handlers'
//! `#[utoipa::path]` attributes (which also register the routes: see
//! `utoipa_axum::routes!` in `api::routes`, `previews::routes`,
//! `owner::routes`) and the bodies' `ToSchema` derives. Served at
//! `GET /api/openapi.json`; a copy is committed as docs/openapi.json (a test
//! keeps it current) and web/ generates its API types from that copy.

use std::sync::OnceLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::auth::API_KEY_HEADER;
use crate::error::ErrorBody;

/// Security scheme names. The routes' `security(...)` repeat them as literals (utoipa takes
/// only literals there); tests/openapi.rs checks that every name used is defined.
pub const API_KEY: &str = "api_key";
pub const BEARER: &str = "bearer";
pub const UPLOAD_SECRET: &str = "upload_secret";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chunkstream API",
        description = "Create an upload session, upload its parts through presigned URLs in the order \
                       the server assigns, and watch while it uploads. Prose the schema cannot say \
                       (order rules, the priority long poll, storage request counts, when 503s happen): \
                       docs/api.md."
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            Gone,
            PayloadTooLarge,
            Unprocessable,
            TooManyRequests,
            Unavailable
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "uploader", description = "Creating a video and uploading its parts (credential, then the session's upload secret)"),
        (name = "viewer", description = "The watch page: status and seek hints (public)"),
        (name = "playback", description = "What players read: manifests, playlists, segments (public, cacheable)"),
        (name = "previews", description = "Seek-bar preview sprites and their WebVTT track"),
        (name = "owner", description = "An owner's videos: list, delete, keep (credential)"),
        (name = "meta", description = "Health and this document")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                API_KEY_HEADER,
                "An API key (`csk_…`); also accepted as `Authorization: Bearer csk_…`. A local runner \
                 with `CHUNKSTREAM_AUTH=open` takes no credential.",
            ))),
        );
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from the configured OIDC issuer (CHUNKSTREAM_OIDC_ISSUER), checked \
                         against its JWKS; or an API key as the bearer token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            UPLOAD_SECRET,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The session's `upload_secret` from `POST /api/videos`: \
                         `Authorization: Bearer <upload_secret>`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// An error answer: the [`ErrorBody`], and the headers that come with it.
fn error_response(
    description: &str,
    retry_after: Option<&str>,
    www_authenticate: bool,
) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    );
    if let Some(when) = retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(u32::schema())
                .description(Some(format!("Seconds to wait before retrying ({when}).")))
                .build(),
        );
    }
    if www_authenticate {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(String::schema())
                .description(Some(
                    "`Bearer realm=\"chunkstream\"` on a refused credential",
                ))
                .build(),
        );
    }
    response.build()
}

macro_rules! error_responses {
    ($($name:ident => ($description:expr, $retry_after:expr, $www_authenticate:expr);)*) => {$(
        pub struct $name;
        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (
                    stringify!($name),
                    error_response($description, $retry_after, $www_authenticate).into(),
                )
            }
        }
    )*};
}

error_responses! {
    BadRequest => ("`bad_json`: the body is not the JSON this route takes (the message says why); \
                    `bad_request`: a value out of range", None, false);
    Unauthorized => ("No valid credential: `missing_secret` (upload routes: no upload secret), or \
                      `missing_credential`, `invalid_api_key`, `invalid_token` (create and owner routes)", None, true);
    Forbidden => ("`wrong_secret`: the upload secret is not this video's", None, false);
    NotFound => ("`unknown_video`, or the named part, track, sprite or file does not exist (yet)", None, false);
    Conflict => ("The request does not fit the video's state (the code says which)", None, false);
    Gone => ("`video_deleted`: the video was deleted by its owner; the upload cannot continue", None, false);
    PayloadTooLarge => ("Over a limit: `caps_exceeded` (the plan), `quota_bytes_per_day` (a video larger \
                         than a day's quota), `body_too_large`, `sprite_too_large`", None, false);
    Unprocessable => ("The body parsed but is not acceptable media: `invalid_plan`, `broken_timeline`, \
                       `unsupported_codec`, `bad_sprite`", None, false);
    TooManyRequests => ("`rate_limited` (viewers' hints), `quota_live_sessions`, `quota_bytes_per_day` \
                         (with `limit`)", Some("`rate_limited`; `quota_bytes_per_day`: until the next UTC day"), false);
    Unavailable => ("Contention on the video's state (`busy`, `contention`) or a briefly unavailable \
                     backend (`unavailable`, `auth_unavailable`): the same request should work shortly",
                    Some("always sent"), false);
}

/// The error answers routes share, referenced by their names in `components.responses`:
/// a route lists its set (`responses((status = 200, ..), crate::openapi::SecretErrors)`)
/// and only the answers peculiar to it.
macro_rules! error_sets {
    ($($(#[$doc:meta])* $set:ident => [$($status:literal => $name:ident),*];)*) => {$(
        $(#[$doc])*
        pub struct $set;
        impl utoipa::IntoResponses for $set {
            fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
                [$(($status.to_string(), RefOr::Ref(Ref::from_response_name(stringify!($name))))),*]
                    .into_iter()
                    .collect()
            }
        }
    )*};
}

error_sets! {
    /// Routes under a video's upload secret.
    SecretErrors => [401 => Unauthorized, 403 => Forbidden, 404 => NotFound, 410 => Gone, 503 => Unavailable];
    /// Public routes reading a video.
    PublicErrors => [404 => NotFound, 503 => Unavailable];
    /// Routes that take a credential: create, and the owner routes.
    CredentialErrors => [401 => Unauthorized, 503 => Unavailable];
}

/// Bytes of a media object (segments, init segments, sprites).
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl ToSchema for Binary {}

/// The whole document: every route of `owner::wrap(api::app(..))`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::api::routes())
        .into_openapi();
    doc.merge(crate::owner::routes().into_openapi());
    optional_bodies_are_absent_not_null(&mut doc);
    doc
}

/// utoipa writes an optional request body (`Option<T>`) as `oneOf: [null, T]`;
/// these routes take no body or a `T`, never a JSON `null`.
fn optional_bodies_are_absent_not_null(doc: &mut utoipa::openapi::OpenApi) {
    let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == Type::Null.into());
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let Some(body) = op.request_body.as_mut() else {
                continue;
            };
            for content in body.content.values_mut() {
                if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                    if one_of.items.len() == 2 && one_of.items.iter().any(is_null) {
                        content.schema = one_of.items.iter().find(|s| !is_null(s)).cloned();
                    }
                }
            }
        }
    }
}

/// [`document`] as served and committed (pretty JSON, newline-terminated).
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut json = serde_json::to_string_pretty(&document())
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        json.push('\n');
        json
    })
}
