//! The API listener's OpenAPI 3 description, generated from the code that serves it, and
//! `GET /openapi.json`.
//!
//! Every handler on the listener carries a `#[utoipa::path]` naming its method, path,
//! parameters and answers, and is registered with `utoipa_axum::routes!`, which routes the
//! handler on exactly that method and path while adding the operation to the document. So
//! one declaration makes both the route and its description: the listener is built only by
//! [`serve_described`], which takes nothing but such a router (clippy refuses the
//! undocumented `OpenApiRouter::route`; see `clippy.toml`). The API suite's `openapi` tests
//! hold the document to the contract's list of operations and the live server to it.
//!
//! This module owns the documents' frames (titles, the simulator's and the browser's
//! security schemes) and the error answers many operations share. The web listener's chat
//! routes are described the same way, in a document of their own (`GET /chat/openapi.json`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr};
use utoipa::{IntoResponses, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorBody;
use crate::request_limits::MAX_URI_BYTES;
use crate::web::session::COOKIE_NAME;
use crate::web::WebState;

/// The security scheme's name; protected operations refer to it.
pub const SIMULATOR_CREDENTIALS: &str = "simulator_credentials";

/// The listener's router: `routes` plus `GET /openapi.json`, which describes them all.
pub fn serve_described(routes: OpenApiRouter) -> Router {
    described(frame(), routes.routes(routes!(openapi_json)))
}

/// The chat's JSON routes on the web listener: `routes` plus `GET /chat/openapi.json`, a
/// document of their own — they are the browser's, signed in by the session cookie, not the
/// simulator's, and live on the other listener.
pub fn chat_described(routes: OpenApiRouter<WebState>) -> Router<WebState> {
    described(chat_frame(), routes.routes(routes!(chat_openapi_json)))
}

/// `routes` (which include the route serving the document) with the document they make
/// within `frame`, rendered once.
fn described<S: Clone + Send + Sync + 'static>(
    frame: OpenApi,
    routes: OpenApiRouter<S>,
) -> Router<S> {
    let (router, mut document) = OpenApiRouter::with_openapi(frame)
        .merge(routes)
        .split_for_parts();
    document_request_limits(&mut document);
    let json = document
        .to_json()
        .expect("an OpenAPI document always serialises");
    router.layer(Extension(Document(json.into())))
}

/// Adds to every operation the answers of the request limits, which refuse a request before
/// any handler sees it (see [`crate::request_limits`]): a URI too long for every operation;
/// a body too large, or too slow to arrive, for those that take one.
fn document_request_limits(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let answers = &mut operation.responses.responses;
            answers.entry("414".to_owned()).or_insert_with(|| {
                error_answer(&format!(
                    "The request URI is over {MAX_URI_BYTES} bytes long"
                ))
            });
            if operation.request_body.is_some() {
                answers.entry("413".to_owned()).or_insert_with(|| {
                    error_answer("The body is over the server's limit (MINITWIT_MAX_BODY_BYTES)")
                });
                answers.entry("408".to_owned()).or_insert_with(|| {
                    error_answer("The body did not arrive within the client timeout")
                });
            }
        }
    }
}

/// The serialised document, rendered once at start-up.
#[derive(Clone)]
struct Document(Arc<str>);

/// The OpenAPI description of this listener.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "documentation",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
async fn openapi_json(document: Extension<Document>) -> impl IntoResponse {
    document_answer(document)
}

/// The OpenAPI description of the chat's JSON routes.
#[utoipa::path(
    get,
    path = "/chat/openapi.json",
    operation_id = "chatOpenapi",
    tag = "documentation",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
async fn chat_openapi_json(document: Extension<Document>) -> impl IntoResponse {
    document_answer(document)
}

fn document_answer(Extension(Document(json)): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], json.to_string())
}

fn frame() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("MiniTwit simulator API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The JSON API the MiniTwit course's simulator drives (the contract is \
                     spec/simulator-api.md), and the listener's health and metrics endpoints. \
                     Every endpoint but GET /latest first stores the `latest` query parameter, \
                     then checks the credentials (403), then looks the user up (404), then \
                     reads the body (400).",
                ))
                .build(),
        )
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    // The shared error answers below refer to it.
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.add_security_scheme(
        SIMULATOR_CREDENTIALS,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "Exactly the configured simulator credentials (by default \
                         `simulator:super_safe!`); anything else is a 403.",
                ))
                .build(),
        ),
    );
    document
}

/// The security scheme of the chat's routes: the browser's session cookie.
pub const BROWSER_SESSION: &str = "browser_session";

fn chat_frame() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("MiniTwit chat (browser JSON)")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Private messages as the chat pages' script uses them, on the web \
                     listener. Every route acts as the signed-in user of the session cookie \
                     (401 without one) and names only the other party, so no route reaches a \
                     conversation its user is not in. Errors have the simulator API's shape.",
                ))
                .build(),
        )
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.add_security_scheme(
        BROWSER_SESSION,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            COOKIE_NAME,
            "The session cookie that signing in through the pages sets",
        ))),
    );
    document
}

/// The refusal of a chat route without a signed-in session.
pub struct NotSignedIn;

impl IntoResponses for NotSignedIn {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "401".to_owned(),
            error_answer("No one is signed in on this session"),
        )])
    }
}

/// An error answer with the [`ErrorBody`] shape.
fn error_answer(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .into()
}

/// The answers of an operation that reads or writes the database: it can fail there.
pub struct DatabaseFailures;

impl IntoResponses for DatabaseFailures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            (
                "500".to_owned(),
                error_answer("An unexpected failure; the cause is logged, not sent"),
            ),
            (
                "503".to_owned(),
                error_answer("The database cannot be reached right now; retry later"),
            ),
        ])
    }
}

/// The refusal of a protected operation.
pub struct NotAuthorized;

impl IntoResponses for NotAuthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "403".to_owned(),
            error_answer(
                "The Authorization header is missing or not the simulator's credentials \
                 (`error_msg` is \"You are not authorized to use this resource!\")",
            ),
        )])
    }
}

/// The answer of a write that lost every retry against concurrent writes to the same
/// aggregate (or repeated an action already done).
pub struct WriteConflict;

impl IntoResponses for WriteConflict {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "409".to_owned(),
            error_answer("The write conflicted with concurrent changes; retry"),
        )])
    }
}
