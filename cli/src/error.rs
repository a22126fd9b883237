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
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Internal(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Media(_) => exit::BAD_FILE,
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
            CliError::Api(e) => e.code().unwrap_or("network").to_owned(),
            CliError::Io(_) => "io".to_owned(),
            CliError::Interrupted => "interrupted".to_owned(),
            CliError::Internal(_) => "internal".to_owned(),
        }
    }
}
