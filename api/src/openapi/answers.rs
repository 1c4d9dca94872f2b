//! The answers many operations share, as their OpenAPI descriptions name them: each a
//! `#[utoipa::path(responses(...))]` entry, with the [`ErrorBody`] shape every error has.
//!
//! A leaf: the routes of both listeners name these, and it names no route.

use std::collections::BTreeMap;

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, ToSchema};

use crate::error::ErrorBody;

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
pub fn error_answer(description: &str) -> RefOr<Response> {
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
