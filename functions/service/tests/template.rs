//! Checks infra/template.yaml and infra/storage.yaml against the Rust side:
//! the variables `Config` reads, the queue names, the timeouts the code relies
//! on, the event source mappings and the build settings. No AWS needed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chunkstream::api::MAX_PRIORITY_WAIT_MS;
use chunkstream::config::Config;
use chunkstream::provision::{queue_name, QueueSettings, STORAGE_TEMPLATE};
use serde_yaml_ng::Value;

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

fn load(name: &str) -> Value {
    let path = infra().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn root() -> Value {
    load("template.yaml")
}

/// `!Tag value` → (tag without '!', value); anything else → None.
fn tagged(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        _ => None,
    }
}

fn intrinsic<'a>(v: &'a Value, tag: &str) -> &'a str {
    match tagged(v) {
        Some((t, inner)) if t == tag => inner.as_str().unwrap(),
        _ => panic!("expected !{tag} ..., got {v:?}"),
    }
}

fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("expected a number, got {v:?}"))
}

fn worker_timeout_secs(t: &Value) -> u64 {
    number(&t["Resources"]["WorkerFunction"]["Properties"]["Timeout"])
}

#[test]
fn the_cloud_stack_sets_every_required_variable_and_only_variables_the_code_reads() {
    let t = root();
    let vars = Config::variables();
    assert!(
        vars.iter().any(|(n, _)| n == "CHUNKSTREAM_BUCKET"),
        "recording lookup saw nothing: {vars:?}"
    );
    let read: BTreeSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let required: BTreeSet<&str> = vars
        .iter()
        .filter(|(_, required)| *required)
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        required.contains("CHUNKSTREAM_PRIORITY_QUEUE_URL"),
        "{required:?}"
    );

    let global = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    for function in ["ApiFunction", "WorkerFunction"] {
        let mut set: BTreeSet<String> = global
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        if let Some(own) =
            t["Resources"][function]["Properties"]["Environment"]["Variables"].as_mapping()
        {
            set.extend(own.keys().map(|k| k.as_str().unwrap().to_string()));
        }
        for name in &required {
            assert!(set.contains(*name), "{function} lacks required {name}");
        }
        for name in &set {
            // RUST_LOG is read by the tracing subscriber, not by Config.
            assert!(
                read.contains(name.as_str()) || name == "RUST_LOG",
                "{function} sets {name}, which Config never reads (read: {read:?})"
            );
        }
    }
}

#[test]
fn the_storage_template_names_the_queues_as_the_code_does_and_its_defaults_are_the_codes() {
    let s: Value = serde_yaml_ng::from_str(STORAGE_TEMPLATE).unwrap();
    assert_eq!(s, load("storage.yaml"), "the embedded template is the file");
    let r = &s["Resources"];
    for (logical, lane, dlq) in [
        ("PriorityQueue", "priority", false),
        ("NormalQueue", "normal", false),
        ("PriorityDlq", "priority", true),
        ("NormalDlq", "normal", true),
    ] {
        assert_eq!(
            intrinsic(&r[logical]["Properties"]["QueueName"], "Sub"),
            queue_name("${QueuePrefix}", lane, dlq),
            "{logical}"
        );
    }
    for (lane, dlq) in [
        ("PriorityQueue", "PriorityDlq"),
        ("NormalQueue", "NormalDlq"),
    ] {
        let redrive = &r[lane]["Properties"]["RedrivePolicy"];
        assert_eq!(
            intrinsic(&redrive["deadLetterTargetArn"], "GetAtt"),
            format!("{dlq}.Arn")
        );
        assert_eq!(
            intrinsic(&redrive["maxReceiveCount"], "Ref"),
            "MaxReceiveCount"
        );
        assert_eq!(
            intrinsic(&r[lane]["Properties"]["VisibilityTimeout"], "Ref"),
            "VisibilityTimeoutSecs"
        );
    }
    let defaults = QueueSettings::default();
    let p = &s["Parameters"];
    assert_eq!(
        number(&p["VisibilityTimeoutSecs"]["Default"]),
        u64::from(defaults.visibility_timeout_secs)
    );
    assert_eq!(
        number(&p["MaxReceiveCount"]["Default"]),
        u64::from(defaults.max_receive_count)
    );
}

#[test]
fn queue_timeouts_follow_the_sqs_event_source_guidance() {
    let t = root();
    let storage = &t["Resources"]["Storage"]["Properties"];
    assert_eq!(storage["Location"].as_str(), Some("storage.yaml"));
    let visibility = number(&storage["Parameters"]["VisibilityTimeoutSecs"]);
    let receives = number(&storage["Parameters"]["MaxReceiveCount"]);
    let worker = worker_timeout_secs(&t);
    assert!(
        visibility >= 6 * worker,
        "VisibilityTimeout {visibility} s < 6 x worker Timeout {worker} s"
    );
    assert!(receives >= 5, "maxReceiveCount {receives} < 5");
    // The local runner uses the same values (the storage template's defaults).
    let defaults = QueueSettings::default();
    assert_eq!(u64::from(defaults.visibility_timeout_secs), visibility);
    assert_eq!(u64::from(defaults.max_receive_count), receives);
}

#[test]
fn the_api_timeout_is_above_the_longest_request_and_below_the_gateways() {
    let t = root();
    let r = &t["Resources"];
    let api_timeout_ms = number(&r["ApiFunction"]["Properties"]["Timeout"]) * 1000;
    let integration_ms = number(&r["HttpApiIntegration"]["Properties"]["TimeoutInMillis"]);
    assert!(
        api_timeout_ms >= MAX_PRIORITY_WAIT_MS + 2000,
        "API Timeout {api_timeout_ms} ms leaves no room after a {MAX_PRIORITY_WAIT_MS} ms long poll"
    );
    assert!(
        api_timeout_ms < integration_ms && integration_ms <= 30_000,
        "API Timeout {api_timeout_ms} ms must be below the HTTP API integration timeout {integration_ms} ms (max 30 s)"
    );
    let origins = r["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
        .as_sequence()
        .unwrap();
    let api = origins.iter().find(|o| o["Id"] == "api").unwrap();
    let read_timeout_ms = number(&api["CustomOriginConfig"]["OriginReadTimeout"]) * 1000;
    assert!(
        read_timeout_ms >= integration_ms,
        "CloudFront gives up before the API answers"
    );
}

#[test]
fn both_lanes_feed_the_worker_with_partial_batch_failures() {
    let t = root();
    let events = t["Resources"]["WorkerFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    let mut queues = BTreeSet::new();
    for (name, event) in events {
        if event["Type"] != "SQS" {
            continue;
        }
        let p = &event["Properties"];
        queues.insert(intrinsic(&p["Queue"], "GetAtt").to_string());
        let types = p["FunctionResponseTypes"].as_sequence().unwrap();
        assert!(
            types.iter().any(|v| v == "ReportBatchItemFailures"),
            "{name:?}: the worker reports failures per message"
        );
        assert_eq!(
            tagged(&p["ScalingConfig"]["MaximumConcurrency"]).map(|(t, _)| t),
            Some("Ref".to_string()),
            "{name:?}: each lane's concurrency is capped by a parameter"
        );
    }
    assert_eq!(
        queues,
        BTreeSet::from([
            "Storage.Outputs.NormalQueueArn".to_string(),
            "Storage.Outputs.PriorityQueueArn".to_string()
        ])
    );
    // A priority job is never batched behind another one.
    let priority = &events[&Value::from("PriorityJobs")]["Properties"];
    assert_eq!(number(&priority["BatchSize"]), 1);
    assert_eq!(number(&priority["MaximumBatchingWindowInSeconds"]), 0);
}

#[test]
fn sam_builds_each_function_from_its_crate_for_the_architecture_parameter() {
    let t = root();
    // This machine (and CI) can build only x86_64 (see infra/README.md for arm64).
    assert_eq!(t["Parameters"]["Architecture"]["Default"], "x86_64");
    let archs = t["Globals"]["Function"]["Architectures"]
        .as_sequence()
        .unwrap();
    assert_eq!(archs.len(), 1);
    assert_eq!(intrinsic(&archs[0], "Ref"), "Architecture");
    let samconfig = std::fs::read_to_string(infra().join("samconfig.toml")).unwrap();
    assert!(
        samconfig.contains("Architecture=x86_64"),
        "samconfig.toml gives build and deploy the same Architecture"
    );
    for (function, binary) in [("ApiFunction", "api"), ("WorkerFunction", "worker")] {
        let f = &t["Resources"][function];
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], binary);
        let crate_dir = infra().join(f["Properties"]["CodeUri"].as_str().unwrap());
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("[[bin]]\nname = \"{binary}\"")),
            "{} builds no binary {binary}",
            crate_dir.display()
        );
    }
}
