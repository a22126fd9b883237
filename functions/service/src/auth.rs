//! Who is uploading: the credential check for creating sessions and for the
//! owner routes. An uploader presents an API key (`X-Api-Key: csk_…`, or
//! `Authorization: Bearer csk_…`) or, when an OIDC issuer is configured, a
//! JWT from it (`Authorization: Bearer <jwt>`), verified against the
//! issuer's JWKS. The local runner may run open (`CHUNKSTREAM_AUTH=open`):
//! every request is then the owner `local`.
//!
//! [`require_owner`] is an axum middleware: it answers 401 itself, and puts
//! the [`Owner`] in the request's extensions for the handler (an extractor).

use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ErrorBody;
use crate::jwt::{JwtError, JwtVerifier};
use crate::keys::{KeyError, Keys};

/// How credentials are checked; read once from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `CHUNKSTREAM_AUTH`: `keys` (the default) or `open` (no credential; local only).
    pub open: bool,
    /// `CHUNKSTREAM_OIDC_ISSUER` / `_AUDIENCE` / `_JWKS_URL`: JWTs accepted as well.
    pub oidc: Option<OidcConfig>,
    /// `CHUNKSTREAM_ALLOWED_ORIGINS`: comma-separated browser origins allowed by CORS
    /// (e.g. `https://d111.cloudfront.net`); empty: same-origin only.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
}

impl AuthConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let open = match get("CHUNKSTREAM_AUTH").as_deref().map(str::trim) {
            None | Some("keys") => false,
            Some("open") => true,
            Some(other) => bail!("CHUNKSTREAM_AUTH={other:?}: use 'keys' or 'open'"),
        };
        let oidc = match get("CHUNKSTREAM_OIDC_ISSUER") {
            None => None,
            Some(issuer) => {
                let issuer = issuer.trim().trim_end_matches('/').to_string();
                if !issuer.starts_with("https://") && !issuer.starts_with("http://") {
                    bail!("CHUNKSTREAM_OIDC_ISSUER={issuer:?} must be an https:// URL");
                }
                let audience = get("CHUNKSTREAM_OIDC_AUDIENCE")
                    .context("CHUNKSTREAM_OIDC_ISSUER is set: set CHUNKSTREAM_OIDC_AUDIENCE too (the client id tokens are issued for)")?;
                let jwks_url = get("CHUNKSTREAM_OIDC_JWKS_URL")
                    .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
                Some(OidcConfig {
                    issuer,
                    audience: audience.trim().to_string(),
                    jwks_url: jwks_url.trim().to_string(),
                })
            }
        };
        let mut allowed_origins = Vec::new();
        for origin in get("CHUNKSTREAM_ALLOWED_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty())
        {
            if origin == "*" {
                bail!("CHUNKSTREAM_ALLOWED_ORIGINS: name the origins ('*' would let any site upload with a stored key)");
            }
            if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || HeaderValue::from_str(origin).is_err()
            {
                bail!("CHUNKSTREAM_ALLOWED_ORIGINS: {origin:?} is not an origin like https://example.com");
            }
            allowed_origins.push(origin.to_string());
        }
        Ok(Self {
            open,
            oidc,
            allowed_origins,
        })
    }

    /// The CORS layer for the whole API: the API routes only for the configured
    /// origins; the public playback objects under `/v/` (manifests, segments,
    /// previews: GET only, no credentials) for any origin, so any player can
    /// play a shared link.
    pub fn cors_layer(&self) -> tower_http::cors::CorsLayer {
        let origins: Vec<HeaderValue> = self
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        let allow = tower_http::cors::AllowOrigin::predicate(
            move |origin: &HeaderValue, request: &axum::http::request::Parts| {
                origins.contains(origin)
                    || (request.uri.path().starts_with("/v/")
                        && matches!(request.method, Method::GET | Method::HEAD | Method::OPTIONS))
            },
        );
        tower_http::cors::CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::HeaderName::from_static(API_KEY_HEADER),
            ])
    }
}

pub const API_KEY_HEADER: &str = "x-api-key";

/// How the owner was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    ApiKey,
    Jwt,
    Open,
}

/// The authenticated uploader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owner's name: an API key's owner, `<issuer>#<sub>` for a JWT, `local` when open.
    pub name: String,
    pub via: Via,
}

impl Owner {
    /// A stable, path-safe id for the owner's objects in the bucket.
    pub fn id(&self) -> String {
        owner_id(&self.name)
    }
}

pub fn owner_id(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks credentials; shared by every request.
#[derive(Clone)]
pub struct Authenticator {
    keys: Keys,
    jwt: Option<Arc<JwtVerifier>>,
    open: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing credential: send an API key (X-Api-Key) or a bearer token")]
    Missing,
    #[error("the API key is not valid (wrong, or revoked)")]
    BadKey,
    #[error("the token is not valid: {0}")]
    BadToken(String),
    #[error("credential store: {0}")]
    Backend(#[from] KeyError),
    #[error("token keys: {0}")]
    Jwks(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AuthError::Missing => (StatusCode::UNAUTHORIZED, "missing_credential"),
            AuthError::BadKey => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            AuthError::BadToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            AuthError::Backend(_) | AuthError::Jwks(_) => {
                tracing::error!(error = %self, "credential check failed");
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorBody::new(
                        "auth_unavailable",
                        "credentials cannot be checked right now",
                    ),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
                return r;
            }
        };
        let mut r = (status, ErrorBody::new(code, self.to_string())).into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"chunkstream\""),
        );
        r
    }
}

impl Authenticator {
    pub fn new(keys: Keys, jwt: Option<Arc<JwtVerifier>>, open: bool) -> Self {
        Self { keys, jwt, open }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Owner, AuthError> {
        let api_key = headers
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let presented = api_key.or(bearer).filter(|v| !v.is_empty());
        let Some(presented) = presented else {
            if self.open {
                return Ok(Owner {
                    name: "local".into(),
                    via: Via::Open,
                });
            }
            return Err(AuthError::Missing);
        };
        if presented.starts_with("csk_") {
            return match self.keys.verify(presented).await? {
                Some(record) => Ok(Owner {
                    name: record.owner,
                    via: Via::ApiKey,
                }),
                None => Err(AuthError::BadKey),
            };
        }
        match &self.jwt {
            Some(verifier) => match verifier.verify(presented).await {
                Ok(subject) => Ok(Owner {
                    name: subject,
                    via: Via::Jwt,
                }),
                Err(JwtError::Invalid(reason)) => Err(AuthError::BadToken(reason)),
                Err(JwtError::Keys(reason)) => Err(AuthError::Jwks(reason)),
            },
            None => Err(AuthError::BadKey),
        }
    }
}

/// Middleware: 401 without a valid credential; otherwise the [`Owner`] goes
/// into the request's extensions.
pub async fn require_owner(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.authenticate(request.headers()).await {
        Ok(owner) => {
            request.extensions_mut().insert(owner);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Owner {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Set by `require_owner`; a route without it has no owner.
        parts
            .extensions
            .get::<Owner>()
            .cloned()
            .ok_or(AuthError::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<AuthConfig> {
        AuthConfig::from_lookup(&|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn keys_are_required_unless_open_is_asked_for_by_name() {
        assert!(!config(&[]).expect("default").open);
        assert!(config(&[("CHUNKSTREAM_AUTH", "open")]).expect("open").open);
        let err = config(&[("CHUNKSTREAM_AUTH", "none")]).expect_err("unknown mode");
        assert!(err.to_string().contains("CHUNKSTREAM_AUTH"), "{err}");
    }

    #[test]
    fn origins_are_named_never_a_wildcard() {
        let c = config(&[(
            "CHUNKSTREAM_ALLOWED_ORIGINS",
            "https://a.example, http://127.0.0.1:8080/",
        )])
        .expect("origins");
        assert_eq!(
            c.allowed_origins,
            ["https://a.example", "http://127.0.0.1:8080"]
        );
        assert!(config(&[("CHUNKSTREAM_ALLOWED_ORIGINS", "*")]).is_err());
        assert!(config(&[("CHUNKSTREAM_ALLOWED_ORIGINS", "a.example")]).is_err());
    }

    #[test]
    fn an_issuer_needs_an_audience_and_defaults_its_jwks_url() {
        let err =
            config(&[("CHUNKSTREAM_OIDC_ISSUER", "https://idp.example")]).expect_err("no audience");
        assert!(
            err.to_string().contains("CHUNKSTREAM_OIDC_AUDIENCE"),
            "{err}"
        );
        let c = config(&[
            ("CHUNKSTREAM_OIDC_ISSUER", "https://idp.example/"),
            ("CHUNKSTREAM_OIDC_AUDIENCE", "client-1"),
        ])
        .expect("oidc");
        assert_eq!(
            c.oidc.expect("oidc").jwks_url,
            "https://idp.example/.well-known/jwks.json"
        );
    }
}
