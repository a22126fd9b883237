//! One error type for the CLI, with the exit code each kind maps to (see README, "CLI").

use thiserror::Error;

/// What is wrong with the chosen file; the message is meant for the user as is
/// (the same cases, and mostly the same words, as the web page's `MediaFileError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaErrorKind {
    Empty,
    NotMp4,
    Truncated,
    Corrupt,
    Fragmented,
    NoTracks,
    Unsupported,
}

impl MediaErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            MediaErrorKind::Empty => "empty",
            MediaErrorKind::NotMp4 => "not_mp4",
            MediaErrorKind::Truncated => "truncated",
            MediaErrorKind::Corrupt => "corrupt",
            MediaErrorKind::Fragmented => "fragmented",
            MediaErrorKind::NoTracks => "no_tracks",
            MediaErrorKind::Unsupported => "unsupported",
        }
    }
}

#[derive(Debug, Error)]
#[error("{message}")]
pub struct MediaError {
    pub kind: MediaErrorKind,
    pub message: String,
}

impl MediaError {
    pub fn new(kind: MediaErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(MediaErrorKind::Corrupt, message)
    }
}

/// Documented exit codes (README, "CLI").
pub mod exit {
    pub const OK: i32 = 0;
    /// unexpected internal error
    pub const INTERNAL: i32 = 1;
    /// bad command line (clap's own code)
    pub const USAGE: i32 = 2;
    /// the file is not a video we can stream (not MP4, truncated, corrupt, unsupported codec)
    pub const BAD_FILE: i32 = 3;
    /// the server refused the request (4xx): caps, unknown video, wrong secret…
    pub const REFUSED: i32 = 4;
    /// the server or storage could not be reached (after retries), or the file could not be read
    pub const UNAVAILABLE: i32 = 5;
    /// no API key, or the server refused it (401: wrong or revoked): `--key` / `CHUNKSTREAM_KEY`
    pub const CREDENTIAL: i32 = 6;
    /// no such video (404): unknown id, or another owner's video on the owner routes
    pub const UNKNOWN_VIDEO: i32 = 7;
    /// interrupted (Ctrl-C): run the same command again to resume
    pub const INTERRUPTED: i32 = 130;
}

/// An answer from the API or the storage that is not a success.
#[derive(Debug, Error)]
pub enum ApiError {
    /// a 4xx (or a 5xx once retries are exhausted), with the API's error code
    #[error("{message} ({status} {code})")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    #[error("network: {0}")]
    Network(String),
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl ApiError {
    /// Worth retrying: network failures, timeouts, 408/429/5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            ApiError::Network(_) => true,
            ApiError::Decode(_) => false,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Status { code, .. } => Some(code),
            _ => None,
        }
    }
    /// The API refused the credential (missing, wrong, revoked, expired). Not a
    /// wrong upload secret (403 `wrong_secret`) nor a storage 403.
    pub fn is_credential(&self) -> bool {
        matches!(self, ApiError::Status { status: 401, .. })
            || matches!(
                self.code(),
                Some("missing_credential" | "invalid_api_key" | "invalid_token")
            )
    }
    pub fn is_unknown_video(&self) -> bool {
        matches!(self, ApiError::Status { status: 404, code, .. } if code == "unknown_video")
    }
}

/// Everything `chunkstream` can fail with, mapped to an exit code in one place.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Media(#[from] MediaError),
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("{0}")]
    Io(String),
    /// The API wants a (valid) credential; the message says where to put one.
    #[error("{message}")]
    Credential { code: String, message: String },
    #[error("{0}")]
    UnknownVideo(String),
    /// A command line that cannot be carried out as given (exit 2, like clap's).
    #[error("{0}")]
    Usage(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Internal(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Media(_) => exit::BAD_FILE,
            CliError::Credential { .. } => exit::CREDENTIAL,
            CliError::UnknownVideo(_) => exit::UNKNOWN_VIDEO,
            CliError::Usage(_) => exit::USAGE,
            CliError::Api(e) if e.is_transient() => exit::UNAVAILABLE,
            CliError::Api(_) => exit::REFUSED,
            CliError::Io(_) => exit::UNAVAILABLE,
            CliError::Interrupted => exit::INTERRUPTED,
            CliError::Internal(_) => exit::INTERNAL,
        }
    }
    /// Machine-readable code for `--json` error events.
    pub fn code(&self) -> String {
        match self {
            CliError::Media(e) => e.kind.code().to_owned(),
            CliError::Credential { code, .. } => code.clone(),
            CliError::UnknownVideo(_) => "unknown_video".to_owned(),
            CliError::Usage(_) => "usage".to_owned(),
            CliError::Api(e) => e.code().unwrap_or("network").to_owned(),
            CliError::Io(_) => "io".to_owned(),
            CliError::Interrupted => "interrupted".to_owned(),
            CliError::Internal(_) => "internal".to_owned(),
        }
    }
}

/// An API failure in words for the user: where to put a key (401), which video is
/// unknown (404), which server is unreachable; other failures as they are.
pub fn explain(e: ApiError, api_base: &str, video_id: Option<&str>) -> CliError {
    if e.is_credential() {
        let message = match e.code() {
            Some("missing_credential") => format!(
                "{api_base} requires an API key: pass --key csk_… or set CHUNKSTREAM_KEY \
                 (the local runner prints a development key; chunkstream-admin issues keys)."
            ),
            _ => format!(
                "{api_base} refused the API key ({e}): check --key / CHUNKSTREAM_KEY; \
                 a revoked key stays refused."
            ),
        };
        let code = e.code().unwrap_or("unauthorized").to_owned();
        return CliError::Credential { code, message };
    }
    if let (true, Some(id)) = (e.is_unknown_video(), video_id) {
        return CliError::UnknownVideo(format!(
            "No video {id} here: the id is wrong, the video was deleted, or it belongs to \
             another owner (`chunkstream list` shows this key's videos)."
        ));
    }
    if let ApiError::Network(detail) = &e {
        return CliError::Io(format!(
            "cannot reach the Chunkstream API at {api_base} ({detail}); is the server running? \
             (--api / CHUNKSTREAM_API)"
        ));
    }
    CliError::Api(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str) -> ApiError {
        ApiError::Status {
            status,
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn credential_refusals_and_unknown_videos_have_their_own_exit_codes() {
        let base = "http://h";
        let missing = explain(status(401, "missing_credential"), base, None);
        assert_eq!(missing.exit_code(), exit::CREDENTIAL);
        assert!(missing.to_string().contains("CHUNKSTREAM_KEY"), "{missing}");
        let wrong = explain(status(401, "invalid_api_key"), base, None);
        assert_eq!(wrong.exit_code(), exit::CREDENTIAL);
        assert_eq!(wrong.code(), "invalid_api_key");
        // a wrong upload secret is not a credential problem
        let secret = explain(status(403, "wrong_secret"), base, Some("v1"));
        assert_eq!(secret.exit_code(), exit::REFUSED);
        let unknown = explain(status(404, "unknown_video"), base, Some("v1"));
        assert_eq!(unknown.exit_code(), exit::UNKNOWN_VIDEO);
        assert!(unknown.to_string().contains("v1"), "{unknown}");
        let gone = explain(ApiError::Network("refused".into()), base, None);
        assert_eq!(gone.exit_code(), exit::UNAVAILABLE);
        assert!(gone.to_string().contains("http://h"), "{gone}");
    }
}
