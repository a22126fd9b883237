//! The OpenAPI document against the Router that serves it: every route (path
//! and method) of `owner::wrap(api::app(..))` is documented and nothing else
//! is, the document is served at `/api/openapi.json`, and the copy committed
//! as docs/openapi.json (which web/ generates its types from) is current.
//! On the in-memory fakes. The document's validity against the OpenAPI 3.1
//! schema is checked by web/test/openapi.test.ts (an npm validator).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use chunkstream::api::{app, AppState};
use chunkstream::cdn::NoCdn;
use chunkstream::memory::{MemoryQueue, MemoryStore};
use chunkstream::owner::{self, OwnerConfig};
use chunkstream::sessions::Sessions;
use http_body_util::BodyExt;
use serde_json::Value;

/// Regenerates docs/openapi.json instead of comparing with it.
const UPDATE_VAR: &str = "CHUNKSTREAM_UPDATE_OPENAPI";

/// The Router as the runner and the API Lambda build it (open mode: the
/// probes below reach the handlers without a credential).
fn router() -> Router {
    let store = Arc::new(MemoryStore::new());
    let sessions = Sessions::new(store);
    let config = common::memory_config();
    let state = AppState {
        config: Arc::new(config),
        sessions: sessions.clone(),
        queue: Arc::new(MemoryQueue::new()),
        events: Default::default(),
        hints: Default::default(),
    };
    let owner_config =
        OwnerConfig::from_lookup(&|name| (name == "CHUNKSTREAM_AUTH").then(|| "open".to_string()))
            .unwrap();
    let owners = owner::owner_state(
        owner_config,
        sessions,
        "http://127.0.0.1:9".into(),
        Duration::from_secs(300),
        Arc::new(NoCdn),
    );
    owner::wrap(app(state), owners)
}

async fn call(router: &Router, method: Method, uri: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(router.clone(), request)
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

async fn served_document(router: &Router) -> (String, Value) {
    let (status, body) = call(router, Method::GET, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    let doc = serde_json::from_str(&text).unwrap();
    (text, doc)
}

/// The paths the Router matches, read from its `Debug` form (axum lists its
/// route table there; axum has no other way to enumerate routes).
fn router_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    // `Router { path_router: PathRouter { .. }, fallback_router: .. }`: the routes, not the fallbacks.
    let routes = debug
        .split_once("path_router:")
        .and_then(|(_, rest)| rest.split_once("fallback_router:"))
        .map_or("", |(routes, _)| routes);
    let paths: BTreeSet<String> = routes
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect();
    assert!(
        paths.len() > 10,
        "the route table was not found in the Router's Debug form (axum changed it?): {debug:.400}"
    );
    paths
}

/// Methods `path` answers: anything but axum's 405 for a method it has no
/// handler for. Path parameters get a value no handler accepts, so every
/// probe is answered at once (404/400/401) without touching any data.
async fn routed_methods(router: &Router, path: &str) -> BTreeSet<String> {
    let uri: String = path
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "zz"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let mut methods = BTreeSet::new();
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ] {
        let (status, _) = call(router, method.clone(), &uri).await;
        if status != StatusCode::METHOD_NOT_ALLOWED {
            methods.insert(method.as_str().to_lowercase());
        }
    }
    methods
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_document_with_its_methods() {
    let router = router();
    let (_, doc) = served_document(&router).await;
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    let paths = router_paths(&router);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(p, _)| p.clone()).collect();
    assert!(
        paths == documented_paths,
        "served, not documented: {:?}; documented, not served: {:?} (register routes with \
         utoipa_axum::routes! on a handler with #[utoipa::path])",
        paths.difference(&documented_paths).collect::<Vec<_>>(),
        documented_paths.difference(&paths).collect::<Vec<_>>(),
    );
    let mut routed = BTreeSet::new();
    for path in &paths {
        for method in routed_methods(&router, path).await {
            routed.insert((path.clone(), method));
        }
    }
    assert!(
        routed == documented,
        "(path, method) served, not documented: {:?}; documented, not served: {:?}",
        routed.difference(&documented).collect::<Vec<_>>(),
        documented.difference(&routed).collect::<Vec<_>>(),
    );
    // The probe can fail: a method the Router has no handler for is seen as such.
    assert!(!routed.contains(&("/api/health".to_string(), "post".to_string())));
}

#[tokio::test]
async fn the_committed_document_is_the_served_one() {
    let (served, doc) = served_document(&router()).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let committed_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        std::fs::write(&committed_path, &served).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == served,
        "docs/openapi.json is stale: regenerate it with \
         `{UPDATE_VAR}=1 cargo test -p chunkstream --test openapi` (then `cd web && npm run gen:api`)"
    );
}

#[tokio::test]
async fn operations_name_defined_security_schemes_and_error_responses() {
    let (_, doc) = served_document(&router()).await;
    let components = &doc["components"];
    let schemes = components["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "x-api-key");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(name), "{at}: unknown scheme {name}");
                }
            }
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                if let Some(reference) = response["$ref"].as_str() {
                    let name = reference.strip_prefix("#/components/responses/").unwrap();
                    assert!(
                        components["responses"][name].is_object(),
                        "{at} {status}: {reference} is not defined"
                    );
                }
            }
            // Upload routes take the session's secret; the create and owner routes a credential.
            let secured: BTreeSet<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect();
            if !secured.is_empty() {
                assert!(responses.contains_key("401"), "{at}: secured, no 401");
            }
            if secured.contains("upload_secret") {
                assert!(
                    responses.contains_key("403"),
                    "{at}: no 403 for a wrong secret"
                );
            }
            if path.starts_with("/api/videos/{id}") {
                // owner::guard answers 410 for a deleted video's 404/409.
                assert!(responses.contains_key("410"), "{at}: no 410");
            }
            if path != "/api/health" && path != "/api/openapi.json" {
                assert!(responses.contains_key("503"), "{at}: no 503");
            }
        }
    }
    let unavailable = &components["responses"]["Unavailable"];
    assert!(unavailable["headers"]["Retry-After"].is_object());
}
