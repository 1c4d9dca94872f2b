//! `GET /openapi.json` against the contract and against the live routes.
//!
//! The routes and the description come from one declaration (`utoipa_axum::routes!`; see
//! `api::openapi`), and these tests keep the pair honest from the outside: the document lists
//! exactly the operations the contract (spec/simulator-api.md) and the operations endpoints
//! call for, every one of them is routed, and every other method on their paths is a 405. A
//! handler added without a description, a description without its route, or a new operation
//! nobody added to [`OPERATIONS`] fails here.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use test_support::app::spawn_app;
use test_support::sim_client::SIMULATOR_AUTH;

/// Every operation of the API listener: (method, path template, whether the simulator's
/// credentials are required).
const OPERATIONS: [(&str, &str, bool); 11] = [
    ("GET", "/latest", false),
    ("POST", "/register", false),
    ("GET", "/msgs", true),
    ("GET", "/msgs/{username}", true),
    ("POST", "/msgs/{username}", true),
    ("GET", "/fllws/{username}", true),
    ("POST", "/fllws/{username}", true),
    ("GET", "/health/live", false),
    ("GET", "/health/ready", false),
    ("GET", "/metrics", false),
    ("GET", "/openapi.json", false),
];

/// The methods probed on every documented path. HEAD is left out: axum answers it on every
/// GET route, as HTTP defines it (a GET without the body), and OpenAPI leaves it implied.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];

async fn fetch_document(base_url: &str) -> Value {
    let response = reqwest::get(format!("{base_url}/openapi.json"))
        .await
        .expect("fetching /openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the document is served as JSON"
    );
    response.json().await.expect("the document is JSON")
}

/// The document's (method, path) pairs.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item is an object")
                .keys()
                .filter(|key| {
                    METHODS
                        .iter()
                        .chain(&["HEAD"])
                        .any(|m| m.eq_ignore_ascii_case(key))
                })
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Every `$ref` anywhere in `value`.
fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target),
                    _ => references(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_description_is_openapi_3_and_lists_exactly_the_apis_operations() {
    let app = spawn_app().await;
    let document = fetch_document(&app.base_url).await;

    let version = document["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "OpenAPI 3, not {version}");
    assert!(document["info"]["title"].is_string());
    assert!(document["info"]["version"].is_string());
    // The running server uses the course's password; the document still names none.
    let text = document.to_string();
    assert!(
        !text.contains("super_safe") && !text.contains("c2ltdWxhdG9yOnN1cGVyX3NhZmUh"),
        "the description names the simulator's password"
    );

    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented_operations(&document), expected);

    // Every operation answers something, protected ones exactly per the contract, and each
    // is named (schemathesis' per-operation settings refer to those names).
    let scheme = &document["components"]["securitySchemes"];
    let mut operation_ids = BTreeSet::new();
    for (method, path, protected) in OPERATIONS {
        let operation = &document["paths"][path][method.to_lowercase()];
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} documents its answers"
        );
        assert!(operation_ids.insert(operation["operationId"].as_str().expect("an operationId")));
        let requirements: Vec<&str> = operation["security"]
            .as_array()
            .map(|list| {
                list.iter()
                    .flat_map(|r| r.as_object().unwrap().keys())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        if protected {
            assert_eq!(
                requirements.len(),
                1,
                "{method} {path} needs the credentials"
            );
            let named = &scheme[requirements[0]];
            assert_eq!(named["type"], "http", "{method} {path}: {named}");
            assert_eq!(named["scheme"], "basic", "{method} {path}: {named}");
            assert!(
                operation["responses"]["403"].is_object(),
                "{method} {path} documents the 403"
            );
        } else {
            assert!(requirements.is_empty(), "{method} {path} is open");
        }
    }

    // Every reference resolves within the document.
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(!found.is_empty());
    for target in found {
        let pointer = target
            .strip_prefix('#')
            .expect("a reference within the document");
        assert!(document.pointer(pointer).is_some(), "{target} resolves");
    }

    // Reading the description is no simulator request: `latest` stays unset.
    assert_eq!(app.client().latest().await.unwrap(), -1);
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_other_method_is_a_405() {
    let app = spawn_app().await;
    let documented = documented_operations(&fetch_document(&app.base_url).await);
    let paths: BTreeSet<&str> = documented.iter().map(|(_, path)| path.as_str()).collect();
    let http = reqwest::Client::new();
    for template in paths {
        let path = template.replace("{username}", "nobody");
        for method in METHODS {
            // With the credentials, so that a protected path gets past its 403 to the router's
            // verdict on the method.
            let response = http
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{path}", app.base_url),
                )
                .header("Authorization", SIMULATOR_AUTH)
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("sending a probe");
            let status = response.status();
            let body = response.bytes().await.expect("reading a probe's answer");
            if documented.contains(&(method.to_owned(), template.to_owned())) {
                // A 404 of the handler's own (an unknown user) has a body; the router's 404
                // for a path it does not know has none.
                let routed = status != StatusCode::METHOD_NOT_ALLOWED
                    && !(status == StatusCode::NOT_FOUND && body.is_empty());
                assert!(
                    routed,
                    "{method} {path} is documented but not routed: {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented, so it must not be routed"
                );
            }
        }
    }
}
