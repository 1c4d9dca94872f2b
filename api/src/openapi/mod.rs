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
//! This module owns how a document is made and served, its frame (title, the error body,
//! a security scheme) and the simulator's document; [`answers`] holds the error answers many
//! operations share. The web listener's chat routes are described the same way, in a
//! document of their own (`GET /chat/openapi.json`, framed in `web::chat`). It names no
//! route module, so that every route module can name it.

pub mod answers;

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorBody;
use crate::request_limits::MAX_URI_BYTES;
use answers::error_answer;

/// The security scheme's name; protected operations refer to it.
pub const SIMULATOR_CREDENTIALS: &str = "simulator_credentials";

/// The listener's router: `routes` plus `GET /openapi.json`, which describes them all.
pub fn serve_described(routes: OpenApiRouter) -> Router {
    described(simulator_frame(), routes.routes(routes!(openapi_json)))
}

/// `routes` (which include the route serving the document, answering with
/// [`document_answer`]) with the document they make within `frame`, rendered once.
pub fn described<S: Clone + Send + Sync + 'static>(
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
pub struct Document(Arc<str>);

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

/// The answer of the route that serves a document.
pub fn document_answer(Extension(Document(json)): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], json.to_string())
}

/// The frame of the simulator API's document.
fn simulator_frame() -> OpenApi {
    frame(
        "MiniTwit simulator API",
        "The JSON API the MiniTwit course's simulator drives (the contract is \
         spec/simulator-api.md), and the listener's health and metrics endpoints. Every \
         endpoint but GET /latest stores the `latest` query parameter whatever it answers (a \
         refusal too), checks the credentials (403), then looks the user up (404), then reads \
         the body (400).",
        SIMULATOR_CREDENTIALS,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "Exactly the simulator credentials the deployment configured; anything \
                     else is a 403.",
                ))
                .build(),
        ),
    )
}

/// A document's frame: its title and description, the error body that the shared error
/// answers ([`answers`]) refer to, and the security scheme its protected operations name.
pub fn frame(title: &str, description: &str, scheme_name: &str, scheme: SecurityScheme) -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(title)
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(description))
                .build(),
        )
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.add_security_scheme(scheme_name, scheme);
    document
}
