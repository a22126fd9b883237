//! `chunkstream-admin`: issues, lists and revokes uploaders' API keys in the
//! bucket named by CHUNKSTREAM_BUCKET (with the AWS credentials of whoever
//! runs it; locally, LocalStack's). A key is printed once, when issued.

use anyhow::Context;
use chunkstream::aws;
use chunkstream::keys::{rfc3339_ms, ApiKeyRecord, Keys};
use chunkstream::store::S3Store;
use clap::{Parser, Subcommand};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "chunkstream-admin",
    about = "Manage Chunkstream uploaders' API keys"
)]
struct Args {
    /// The Chunkstream bucket (the stack's BucketName output).
    #[arg(long, env = "CHUNKSTREAM_BUCKET")]
    bucket: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Issues a key for an owner; prints it once.
    Issue {
        /// Who the key belongs to (e.g. an email address); their videos and quotas go by it.
        owner: String,
        /// A note to recognise the key by in listings.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Lists every key (ids, owners, labels, when issued or revoked; never the keys).
    List,
    /// Revokes a key by its id (from `list`); requests with it get 401 from then on.
    Revoke { key_id: String },
}

fn line(r: &ApiKeyRecord) -> String {
    let revoked = r.revoked_ms.map_or_else(
        || "active".to_string(),
        |ms| format!("revoked {}", rfc3339_ms(ms)),
    );
    format!(
        "{}\t{}\t{}\t{}\t{}",
        r.key_id,
        r.owner,
        rfc3339_ms(r.created_ms),
        revoked,
        r.label
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let clients = aws::clients_from_env().await;
    let keys = Keys::new(Arc::new(S3Store::new(clients.s3, args.bucket.clone())));
    match args.command {
        Command::Issue { owner, label } => {
            let issued = keys
                .issue(&owner, &label)
                .await
                .with_context(|| format!("issuing a key in s3://{}", args.bucket))?;
            eprintln!(
                "key {} for {owner}; shown once, store it now:",
                issued.record.key_id
            );
            println!("{}", issued.key);
        }
        Command::List => {
            for record in keys.list().await.context("listing keys")? {
                println!("{}", line(&record));
            }
        }
        Command::Revoke { key_id } => {
            let record = keys.revoke(&key_id).await.context("revoking")?;
            println!("{}", line(&record));
        }
    }
    Ok(())
}
