//! Configuration, read once at start from the environment into a typed struct.
//! A missing or malformed variable stops the process with a message naming it.

use std::time::Duration;

use anyhow::{bail, Context};
use chunkstream_domain::plan::PlanLimits;
use chunkstream_domain::state::SchedulePolicy;

/// Everything the API, the worker and the reaper need to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The one bucket: sessions, manifests, init and media segments.
    pub bucket: String,
    pub priority_queue_url: String,
    pub normal_queue_url: String,
    /// Names the per-video SQS queues that wake the priority feed across processes
    /// (`{prefix}{video_id}`, beside the job queues). `None`: the feed re-reads the
    /// viewers' windows at a quick pace instead (one process, or no SQS rights).
    pub feed_queue_prefix: Option<String>,
    /// Where viewers reach the API and the web pages, e.g. `http://127.0.0.1:8080`.
    pub public_base_url: String,
    /// The S3 endpoint named in presigned upload URLs, when clients reach S3 by another
    /// address than this process does (a client in a network namespace, LocalStack behind
    /// a proxy). `None`: the SDK's endpoint.
    pub s3_public_endpoint: Option<String>,
    /// Lifetime of a presigned upload URL.
    pub presign_ttl: Duration,
    /// A session with no progress for this long is reaped.
    pub session_ttl: Duration,
    /// How long a viewer's miss of a part not published yet is held, re-checking, before
    /// it answers 404 ([`DEFAULT_SEGMENT_HOLD`]).
    pub segment_hold: Duration,
    pub limits: PlanLimits,
    pub policy: SchedulePolicy,
}

/// A held miss answers 404 after this long and the player asks again after its retry
/// interval: a part published in that gap is seen one retry late, so the hold is long
/// against the gap (a seek waits ~1.5-3 s on a slow uplink), and well inside players'
/// time-to-first-byte limits (hls.js: 10 s) and Lambda's timeout.
pub const DEFAULT_SEGMENT_HOLD: Duration = Duration::from_secs(5);

/// An SQS queue name is at most 80 characters; a video id takes 22 of them.
pub const MAX_FEED_QUEUE_PREFIX: usize = 80 - 22;

/// Reads variables by name; empty values count as unset.
struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &str) -> anyhow::Result<String> {
        self.get(name)
            .with_context(|| format!("set {name} (see README, 'Configuration')"))
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse() {
                Ok(n) => Ok(n),
                Err(_) => bail!("{name}={v:?} is not a valid number"),
            },
        }
    }
}

impl Config {
    /// Like [`Config::from_env`], with some variables given by the caller
    /// (the runner knows the queue URLs only after provisioning).
    pub fn from_env_with(overrides: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::from_lookup(&|name: &str| {
            overrides
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
        })
    }

    /// Reads `CHUNKSTREAM_*` variables; see the README for the list.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name: &str| std::env::var(name).ok())
    }

    /// Every variable [`Config::from_env`] reads, with whether it is required
    /// (its absence stops the process). Found by reading a config through a
    /// recording lookup, so it cannot drift from the code above; the template
    /// test checks the cloud stack against it.
    pub fn variables() -> Vec<(String, bool)> {
        // A value every variable accepts: URLs where a URL is read, else a number.
        let valid = |name: &str| {
            Some(if name.ends_with("_URL") || name.ends_with("_ENDPOINT") {
                "http://127.0.0.1:1".to_string()
            } else {
                "1".to_string()
            })
        };
        let seen = std::sync::Mutex::new(Vec::<String>::new());
        let _ = Self::from_lookup(&|name: &str| {
            if let Ok(mut seen) = seen.lock() {
                seen.push(name.to_string());
            }
            valid(name)
        });
        let names = seen.into_inner().unwrap_or_default();
        names
            .iter()
            .map(|name| {
                let without = Self::from_lookup(&|n: &str| if n == name { None } else { valid(n) });
                (name.clone(), without.is_err())
            })
            .collect()
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let vars = Vars { lookup };
        let defaults = PlanLimits::default();
        let policy = SchedulePolicy::default();
        let public_base_url = vars
            .get("CHUNKSTREAM_PUBLIC_BASE_URL")
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_string();
        let s3_public_endpoint = match vars.get("CHUNKSTREAM_S3_PUBLIC_ENDPOINT") {
            None => None,
            Some(v) => {
                let v = v.trim().trim_end_matches('/').to_string();
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    bail!(
                        "CHUNKSTREAM_S3_PUBLIC_ENDPOINT={v:?} must be an http:// or https:// URL"
                    );
                }
                Some(v)
            }
        };
        let feed_queue_prefix = vars.get("CHUNKSTREAM_FEED_QUEUE_PREFIX");
        if let Some(prefix) = &feed_queue_prefix {
            // SQS names: 80 characters of [A-Za-z0-9_-]; a video id takes 22.
            if prefix.len() > MAX_FEED_QUEUE_PREFIX
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "CHUNKSTREAM_FEED_QUEUE_PREFIX={prefix:?} must be at most {MAX_FEED_QUEUE_PREFIX} of A-Z a-z 0-9 - _"
                );
            }
        }
        let config = Self {
            bucket: vars.required("CHUNKSTREAM_BUCKET")?,
            priority_queue_url: vars.required("CHUNKSTREAM_PRIORITY_QUEUE_URL")?,
            normal_queue_url: vars.required("CHUNKSTREAM_NORMAL_QUEUE_URL")?,
            feed_queue_prefix,
            public_base_url,
            s3_public_endpoint,
            presign_ttl: Duration::from_secs(vars.number("CHUNKSTREAM_PRESIGN_TTL_SECS", 600)?),
            segment_hold: DEFAULT_SEGMENT_HOLD,
            session_ttl: Duration::from_secs(
                vars.number("CHUNKSTREAM_SESSION_TTL_SECS", 24 * 3600)?,
            ),
            limits: PlanLimits {
                max_slots: vars.number("CHUNKSTREAM_MAX_SLOTS", defaults.max_slots)?,
                max_total_bytes: vars
                    .number("CHUNKSTREAM_MAX_TOTAL_BYTES", defaults.max_total_bytes)?,
                max_segment_bytes: vars
                    .number("CHUNKSTREAM_MAX_SEGMENT_BYTES", defaults.max_segment_bytes)?,
                max_total_duration_secs: vars.number(
                    "CHUNKSTREAM_MAX_DURATION_SECS",
                    defaults.max_total_duration_secs,
                )?,
                ..defaults
            },
            policy: SchedulePolicy {
                lease_ms: vars.number("CHUNKSTREAM_LEASE_SECS", policy.lease_ms / 1000)? * 1000,
                window_len: vars.number("CHUNKSTREAM_WINDOW_SLOTS", policy.window_len)?,
                ..policy
            },
        };
        if config.policy.window_len == 0 {
            bail!("CHUNKSTREAM_WINDOW_SLOTS must be at least 1");
        }
        if config.presign_ttl.is_zero() || config.presign_ttl > Duration::from_secs(7 * 24 * 3600) {
            bail!("CHUNKSTREAM_PRESIGN_TTL_SECS must be between 1 and 604800");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> anyhow::Result<Config> {
        let base = [
            ("CHUNKSTREAM_BUCKET", "b"),
            ("CHUNKSTREAM_PRIORITY_QUEUE_URL", "http://q/p"),
            ("CHUNKSTREAM_NORMAL_QUEUE_URL", "http://q/n"),
        ];
        let vars: Vec<(String, String)> = base
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&|name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn s3_public_endpoint_defaults_to_the_sdk_endpoint() {
        assert_eq!(config(&[]).expect("valid config").s3_public_endpoint, None);
        assert_eq!(
            config(&[("CHUNKSTREAM_S3_PUBLIC_ENDPOINT", " ")])
                .expect("valid config")
                .s3_public_endpoint,
            None
        );
    }

    #[test]
    fn s3_public_endpoint_is_read_without_trailing_slash() {
        let c = config(&[("CHUNKSTREAM_S3_PUBLIC_ENDPOINT", "http://10.77.0.1:4566/")])
            .expect("valid config");
        assert_eq!(
            c.s3_public_endpoint.as_deref(),
            Some("http://10.77.0.1:4566")
        );
    }

    #[test]
    fn s3_public_endpoint_that_is_not_a_url_names_the_variable() {
        let err = config(&[("CHUNKSTREAM_S3_PUBLIC_ENDPOINT", "10.77.0.1:4566")])
            .expect_err("a URL without a scheme is refused");
        assert!(
            err.to_string().contains("CHUNKSTREAM_S3_PUBLIC_ENDPOINT"),
            "{err}"
        );
    }

    #[test]
    fn feed_queue_prefix_is_optional_and_must_make_valid_sqs_names() {
        assert_eq!(config(&[]).expect("valid").feed_queue_prefix, None);
        let c = config(&[("CHUNKSTREAM_FEED_QUEUE_PREFIX", "cs-feed-")]).expect("valid");
        assert_eq!(c.feed_queue_prefix.as_deref(), Some("cs-feed-"));
        for bad in ["has space", "dot.", &"x".repeat(MAX_FEED_QUEUE_PREFIX + 1)] {
            let err = config(&[("CHUNKSTREAM_FEED_QUEUE_PREFIX", bad)]).expect_err(bad);
            assert!(
                err.to_string().contains("CHUNKSTREAM_FEED_QUEUE_PREFIX"),
                "{err}"
            );
        }
    }
}
