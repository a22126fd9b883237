//! `chunkstream`: share a local MP4/MOV as a streaming link at once, then upload it.
//! Exit codes: 0 ok, 1 internal error, 2 bad usage, 3 the file cannot be streamed,
//! 4 the server refused, 5 server/storage unreachable or the file unreadable,
//! 6 no API key or a refused one, 7 no such video (or another owner's),
//! 130 interrupted (run the same command again to resume).

use std::path::PathBuf;

use chunkstream_cli::commands::{self, UploadArgs};
use chunkstream_cli::error::{exit, CliError};
use chunkstream_cli::videos::{self, OwnerArgs};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "chunkstream",
    version,
    about = "Share a large MP4 as a streaming link at once; viewers watch while it uploads."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the link for FILE (printed at once on stdout), then upload it.
    Upload {
        file: PathBuf,
        /// API base URL
        #[arg(long, env = "CHUNKSTREAM_API", default_value = "http://127.0.0.1:8080")]
        api: String,
        /// uploader credential (bearer token) for servers that require one
        #[arg(long, env = "CHUNKSTREAM_KEY", hide_env_values = true)]
        key: Option<String>,
        /// target part duration in seconds (default: from the file's bitrate, ~1 MB per part, 2-8 s, as the web page)
        #[arg(long)]
        segment_secs: Option<f64>,
        /// parts uploaded in parallel
        #[arg(long, default_value_t = 3)]
        parallel: usize,
        /// cap the upload rate (bytes per second), e.g. to leave room on a shared link
        #[arg(long)]
        max_rate: Option<u64>,
        /// machine-readable events on stdout, one JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Print the parts FILE would be cut into (no upload); --json: the planner's input and output.
    Plan {
        file: PathBuf,
        #[arg(long)]
        segment_secs: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Show a video's upload and publication state.
    Status {
        id: String,
        #[arg(long, env = "CHUNKSTREAM_API", default_value = "http://127.0.0.1:8080")]
        api: String,
        #[arg(long)]
        json: bool,
    },
    /// List the videos of the key's owner: title, duration, size, state, created, link.
    List {
        #[command(flatten)]
        owner: Owner,
        /// `{"videos": [...]}` on stdout, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Delete a video: every part, the manifests, its link. Asks first unless --yes.
    Delete {
        /// the video id (the v= of its watch link; `chunkstream list` shows them)
        id: String,
        #[command(flatten)]
        owner: Owner,
        /// do not ask (required when not on a terminal)
        #[arg(long, short)]
        yes: bool,
        /// `{"event": "deleted", "video_id", "deleted_objects"}` on stdout
        #[arg(long)]
        json: bool,
    },
    /// Keep a video past the server's retention (--off: let it expire again).
    Keep {
        /// the video id (the v= of its watch link; `chunkstream list` shows them)
        id: String,
        #[command(flatten)]
        owner: Owner,
        /// no longer kept: retention deletes it when its time comes
        #[arg(long)]
        off: bool,
        /// the video as `list --json` shows it, on stdout
        #[arg(long)]
        json: bool,
    },
}

/// The owner routes' server and credential (as `upload`'s).
#[derive(clap::Args)]
struct Owner {
    /// API base URL
    #[arg(long, env = "CHUNKSTREAM_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// uploader credential (API key `csk_…` or a bearer token)
    #[arg(long, env = "CHUNKSTREAM_KEY", hide_env_values = true)]
    key: Option<String>,
}

impl From<Owner> for OwnerArgs {
    fn from(o: Owner) -> Self {
        OwnerArgs {
            api: o.api,
            key: o.key,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chunkstream: cannot start: {e}");
            std::process::exit(exit::INTERNAL);
        }
    };
    let (json, result) = runtime.block_on(async {
        match cli.command {
            Command::Upload {
                file,
                api,
                key,
                segment_secs,
                parallel,
                max_rate,
                json,
            } => {
                let stop = CancellationToken::new();
                let s = stop.clone();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        s.cancel();
                    }
                });
                (
                    json,
                    commands::upload(
                        UploadArgs {
                            file,
                            api,
                            key,
                            segment_secs,
                            parallel,
                            max_rate,
                            json,
                        },
                        stop,
                    )
                    .await,
                )
            }
            Command::Plan {
                file,
                segment_secs,
                json,
            } => (json, commands::plan(&file, segment_secs, json)),
            Command::Status { id, api, json } => (json, commands::status(&api, &id, json).await),
            Command::List { owner, json } => (json, videos::list(owner.into(), json).await),
            Command::Delete {
                id,
                owner,
                yes,
                json,
            } => (json, videos::delete(owner.into(), &id, yes, json).await),
            Command::Keep {
                id,
                owner,
                off,
                json,
            } => (json, videos::keep(owner.into(), &id, !off, json).await),
        }
    });
    let code = match result {
        Ok(()) => exit::OK,
        Err(e) => report(&e, json),
    };
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}

fn report(e: &CliError, json: bool) -> i32 {
    let code = e.exit_code();
    if json {
        println!(
            "{}",
            serde_json::json!({ "event": "error", "code": e.code(), "message": e.to_string(), "exit_code": code })
        );
    } else if !matches!(e, CliError::Interrupted) {
        let prefix = if matches!(e, CliError::Media(_)) {
            ""
        } else {
            "error: "
        };
        eprintln!(
            "chunkstream: {prefix}{e}{}",
            if matches!(e, CliError::Media(_)) {
                " Nothing was uploaded."
            } else {
                ""
            }
        );
    }
    code
}
