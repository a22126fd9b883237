//! Tracing set-up: JSON lines in Lambda (CloudWatch parses them), readable text locally.
//! `RUST_LOG` takes `target=level` directives (e.g. `info,chunkstream=debug`; the
//! Lambda release builds compile out everything below info: functions/api/Cargo.toml); a
//! `Targets` filter rather than `EnvFilter`, whose regex engine would double the size
//! of this part of the Lambda bootstraps for span filters nobody here uses.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

fn default_targets() -> Targets {
    Targets::new()
        .with_default(Level::INFO)
        .with_target("aws_config", Level::WARN)
        .with_target("aws_smithy_runtime", Level::WARN)
}

/// The filter from `RUST_LOG`, or the default when it is unset or does not parse.
pub fn filter_from(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(default_targets)
}

pub fn init_tracing() {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let in_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let (json, text) = if in_lambda {
        (
            Some(fmt::layer().json().without_time().with_target(false)),
            None,
        )
    } else {
        (None, Some(fmt::layer().with_target(false)))
    };
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(text)
        .try_init();
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn rust_log_directives_set_levels_per_target_and_bad_ones_fall_back_to_the_default() {
        let f = filter_from(Some("warn,chunkstream=debug"));
        assert!(f.would_enable("chunkstream::api", &Level::DEBUG));
        assert!(!f.would_enable("hyper", &Level::INFO));
        let d = filter_from(Some("=oops=="));
        assert!(d.would_enable("chunkstream", &Level::INFO));
        assert!(!d.would_enable("aws_config", &Level::INFO));
        assert_eq!(filter_from(None).default_level(), Some(LevelFilter::INFO));
    }
}
