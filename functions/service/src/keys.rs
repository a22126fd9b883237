//! Uploaders' API keys. A key is shown once, when it is issued; the bucket
//! keeps only its SHA-256 (keys are 256 random bits, so a fast hash is
//! enough: there is nothing to brute-force), next to the owner it belongs
//! to. Keys are issued, listed and revoked by the `chunkstream-admin`
//! command, and checked on every request that needs an owner.
//!
//! A key reads `csk_<id>_<secret>`: the id names the stored record
//! (`owners/keys/<id>.json`), so a check is one GET, and listing or revoking
//! never needs the secret.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::sessions::secret_hash;
use crate::store::{ObjectStore, PutCondition, StoreError};

pub const KEYS_PREFIX: &str = "owners/keys/";
const KEY_PREFIX: &str = "csk_";
const ID_BYTES: usize = 9;
const SECRET_BYTES: usize = 32;

/// `2026-12-01T13:00:00Z` for a time in ms since the epoch (listings).
pub fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    time::OffsetDateTime::from(t)
        .replace_millisecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub fn key_record_key(key_id: &str) -> String {
    format!("{KEYS_PREFIX}{key_id}.json")
}

/// What is stored per key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub owner: String,
    #[serde(default)]
    pub label: String,
    pub secret_sha256: String,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

/// A freshly issued key: `key` is shown once and stored nowhere.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("owner names are 1-64 characters: letters, digits, '.', '_', '-', '@'")]
    BadOwner,
    #[error("no key with id {0}")]
    UnknownKey(String),
    #[error("stored key record {key} is corrupt: {detail}")]
    Corrupt { key: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Owner names appear in listings and logs; keep them plain.
pub fn owner_name_valid(owner: &str) -> bool {
    (1..=64).contains(&owner.len())
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn random_part(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    // No '_' in the alphabet of the id, so the key splits unambiguously.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(buf)
        .replace('_', "x")
}

/// Splits `csk_<id>_<secret>`; None for anything else.
fn parse_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = !id.is_empty()
        && id.len() <= 32
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (id_ok && !secret.is_empty() && secret.len() <= 128).then_some((id, secret))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key store, on the bucket.
#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
}

impl Keys {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<dyn ObjectStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub async fn issue(&self, owner: &str, label: &str) -> Result<IssuedKey, KeyError> {
        if !owner_name_valid(owner) {
            return Err(KeyError::BadOwner);
        }
        let key_id = random_part(ID_BYTES);
        let key = format!("{KEY_PREFIX}{key_id}_{}", random_part(SECRET_BYTES));
        let record = ApiKeyRecord {
            key_id: key_id.clone(),
            owner: owner.to_string(),
            label: label.chars().take(200).collect(),
            secret_sha256: secret_hash(&key),
            created_ms: self.clock.now_ms(),
            revoked_ms: None,
        };
        self.write(&record, PutCondition::IfAbsent).await?;
        Ok(IssuedKey { key, record })
    }

    async fn write(&self, record: &ApiKeyRecord, cond: PutCondition) -> Result<(), KeyError> {
        let body = serde_json::to_vec(record).map_err(|e| KeyError::Corrupt {
            key: record.key_id.clone(),
            detail: e.to_string(),
        })?;
        self.store
            .put(
                &key_record_key(&record.key_id),
                Bytes::from(body),
                "application/json",
                cond,
            )
            .await?;
        Ok(())
    }

    async fn read(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, KeyError> {
        let key = key_record_key(key_id);
        let Some(obj) = self.store.get(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&obj.body)
            .map(Some)
            .map_err(|e| KeyError::Corrupt {
                key,
                detail: e.to_string(),
            })
    }

    /// The record of a valid, unrevoked key; None for a wrong, unknown or revoked one.
    pub async fn verify(&self, presented: &str) -> Result<Option<ApiKeyRecord>, KeyError> {
        let Some((id, _)) = parse_key(presented) else {
            return Ok(None);
        };
        let Some(record) = self.read(id).await? else {
            return Ok(None);
        };
        let matches = constant_time_eq(
            secret_hash(presented).as_bytes(),
            record.secret_sha256.as_bytes(),
        );
        Ok((matches && record.revoked_ms.is_none()).then_some(record))
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, KeyError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let keys = self
                .store
                .list_keys(KEYS_PREFIX, after.as_deref(), 1000)
                .await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in keys {
                let id = key
                    .strip_prefix(KEYS_PREFIX)
                    .and_then(|k| k.strip_suffix(".json"))
                    .unwrap_or_default();
                if let Some(record) = self.read(id).await? {
                    out.push(record);
                }
            }
            after = Some(last);
        }
        out.sort_by_key(|r| r.created_ms);
        Ok(out)
    }

    /// Marks a key revoked (kept, so listings show when). Idempotent.
    pub async fn revoke(&self, key_id: &str) -> Result<ApiKeyRecord, KeyError> {
        let mut record = self
            .read(key_id)
            .await?
            .ok_or_else(|| KeyError::UnknownKey(key_id.to_string()))?;
        if record.revoked_ms.is_none() {
            record.revoked_ms = Some(self.clock.now_ms());
            self.write(&record, PutCondition::Always).await?;
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_id_and_secret_and_nothing_else_parses() {
        assert_eq!(parse_key("csk_abc_def"), Some(("abc", "def")));
        assert_eq!(parse_key("csk_abc_d_e"), Some(("abc", "d_e")));
        assert_eq!(parse_key("abc_def"), None);
        assert_eq!(parse_key("csk__def"), None);
        assert_eq!(parse_key("csk_../x_def"), None);
        assert_eq!(parse_key("csk_abc_"), None);
    }

    #[test]
    fn generated_ids_never_contain_the_separator() {
        for _ in 0..200 {
            assert!(!random_part(ID_BYTES).contains('_'));
        }
    }

    #[test]
    fn owner_names_are_plain() {
        assert!(owner_name_valid("alice@example.com"));
        assert!(!owner_name_valid(""));
        assert!(!owner_name_valid("a/b"));
        assert!(!owner_name_valid(&"a".repeat(65)));
    }
}
