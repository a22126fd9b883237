//! Resume: the session of a file (id, upload secret, links, plan options) is kept
//! in the user's cache dir (`$XDG_CACHE_HOME/chunkstream/sessions/`), keyed by the
//! file's fingerprint and the API base, so running the same command again after
//! Ctrl-C or a crash continues the same video: the server hands out only the parts
//! not uploaded yet.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::boxes::read_exact_at;
use crate::error::MediaError;

const SLICE: u64 = 128 * 1024;

/// Size + name + SHA-256 of three 128 KiB slices (start, middle, end), as the page's
/// `fingerprintFile`, so the page and the CLI see the same file as the same upload.
pub fn fingerprint(file: &File, size: u64, name: &str) -> Result<String, MediaError> {
    let half = size / 2;
    let ranges = [
        (0, size.min(SLICE)),
        (half.saturating_sub(SLICE / 2), size.min(half + SLICE / 2)),
        (size.saturating_sub(SLICE), size),
    ];
    let mut h = Sha256::new();
    h.update(format!("{size}\n{name}\n").as_bytes());
    for (a, b) in ranges {
        let mut buf = vec![0u8; (b - a) as usize];
        read_exact_at(file, &mut buf, a)?;
        h.update(&buf);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("v1-{hex}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    pub api: String,
    pub video_id: String,
    pub secret: String,
    pub watch_url: String,
    pub manifest_url: String,
    pub file_name: String,
    pub file_size: u64,
    pub slot_count: usize,
    pub total_bytes: u64,
    pub target_duration: f64,
    pub max_segment_bytes: u64,
    pub created_at_unix: u64,
    /// presentation_time_offset sent per track (absent: stored before edits were folded)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptos: Option<Vec<u64>>,
}

pub struct SessionStore {
    dir: PathBuf,
}

impl SessionStore {
    /// `CHUNKSTREAM_STATE_DIR` overrides the cache dir (tests, read-only homes).
    pub fn open() -> Self {
        let dir = std::env::var_os("CHUNKSTREAM_STATE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("chunkstream").join("sessions")))
            .unwrap_or_else(|| std::env::temp_dir().join("chunkstream-sessions"));
        Self { dir }
    }

    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, fingerprint: &str, api: &str) -> PathBuf {
        let mut h = Sha256::new();
        h.update(api.as_bytes());
        let api_tag: String = h
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{fingerprint}-{api_tag}.json"))
    }

    pub fn load(&self, fingerprint: &str, api: &str) -> Option<StoredSession> {
        let text = std::fs::read_to_string(self.path(fingerprint, api)).ok()?;
        serde_json::from_str(&text)
            .ok()
            .filter(|s: &StoredSession| s.api == api)
    }

    /// Written atomically (temp file + rename) and readable by the user only (it holds the secret).
    pub fn save(&self, fingerprint: &str, s: &StoredSession) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(fingerprint, &s.api);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(
            serde_json::to_string_pretty(s)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    }

    pub fn forget(&self, fingerprint: &str, api: &str) {
        let _ = std::fs::remove_file(self.path(fingerprint, api));
    }
}
