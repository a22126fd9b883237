//! JWTs from an OIDC issuer (Cognito, Auth0, Keycloak, …), verified with
//! `jsonwebtoken` against the issuer's JWKS: signature by the key the token
//! names (`kid`), issuer, audience, expiry. The key set is fetched once and
//! again when a token names a key not seen yet (the issuer rotated), at most
//! every [`REFRESH_MIN`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// A key set is a few KB; the body is read no further than this.
const JWKS_MAX_BYTES: usize = 1 << 20;
/// Refetching the key set more often than this would let bad tokens flood the issuer.
const REFRESH_MIN: Duration = Duration::from_secs(60);
/// Asymmetric algorithms only: an issuer's tokens are never verified with a shared secret.
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The token is refused (401).
    #[error("{0}")]
    Invalid(String),
    /// The issuer's keys could not be fetched (503).
    #[error("{0}")]
    Keys(String),
}

/// Where the issuer's key set comes from.
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwkSet, String>;
}

/// The issuer's JWKS endpoint over HTTPS.
pub struct HttpJwks {
    url: String,
    /// Err when no client could be built (e.g. the system's CA store holds no valid root):
    /// every fetch then fails with the reason (a 503, the reason logged), not a panic at start.
    client: Result<reqwest::Client, String>,
}

impl HttpJwks {
    pub fn new(url: impl Into<String>) -> Self {
        // reqwest is built without a crypto provider of its own (Cargo.toml): it uses the
        // process default, ring (an Err only says one was installed already)
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("no HTTPS client for the issuer's keys: {e}"));
        Self {
            url: url.into(),
            client,
        }
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let mut response = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        if !response.status().is_success() {
            return Err(format!("GET {}: {}", self.url, response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?
        {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(format!(
                    "{}: the key set is over {JWKS_MAX_BYTES} bytes",
                    self.url
                ));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<JwkSet>(&body)
            .map_err(|e| format!("{}: not a JWKS: {e}", self.url))
    }
}

/// A fixed key set (tests).
pub struct StaticJwks(pub JwkSet);

#[async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        Ok(self.0.clone())
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

struct Cached {
    keys: Option<JwkSet>,
    fetched: Option<Instant>,
}

pub struct JwtVerifier {
    issuer: String,
    audience: String,
    source: Arc<dyn JwksSource>,
    cache: RwLock<Cached>,
}

impl JwtVerifier {
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        source: Arc<dyn JwksSource>,
    ) -> Self {
        crate::jwt_ring::install();
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            source,
            cache: RwLock::new(Cached {
                keys: None,
                fetched: None,
            }),
        }
    }

    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, JwtError> {
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        {
            let cache = self.cache.read().await;
            if let Some(jwk) = cache.keys.as_ref().and_then(find) {
                return DecodingKey::from_jwk(&jwk).map_err(|e| JwtError::Keys(e.to_string()));
            }
        }
        let mut cache = self.cache.write().await;
        let stale = cache.fetched.is_none_or(|t| t.elapsed() >= REFRESH_MIN);
        if stale {
            let set = self.source.fetch().await.map_err(JwtError::Keys)?;
            cache.keys = Some(set);
            cache.fetched = Some(Instant::now());
        }
        let jwk = cache.keys.as_ref().and_then(find).ok_or_else(|| {
            JwtError::Invalid("signed by a key the issuer does not publish".into())
        })?;
        DecodingKey::from_jwk(&jwk).map_err(|e| JwtError::Keys(e.to_string()))
    }

    /// The owner name (`<issuer>#<sub>`) of a valid token.
    pub async fn verify(&self, token: &str) -> Result<String, JwtError> {
        let header =
            decode_header(token).map_err(|e| JwtError::Invalid(format!("malformed: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(JwtError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            JwtError::Invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "expired".into(),
                ErrorKind::InvalidIssuer => "wrong issuer".into(),
                ErrorKind::InvalidAudience => "wrong audience".into(),
                ErrorKind::InvalidSignature => "bad signature".into(),
                _ => e.to_string(),
            })
        })?;
        if data.claims.sub.is_empty() || data.claims.sub.len() > 256 {
            return Err(JwtError::Invalid("no usable subject".into()));
        }
        Ok(format!("{}#{}", self.issuer, data.claims.sub))
    }
}
