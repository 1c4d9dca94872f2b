//! `GET /static/…`: the embedded assets and generated avatars, served from memory.
//!
//! A URL with the asset's content hash in its query (as pages link them, see
//! [`super::assets`]) never changes meaning, so it is cached for a year as immutable. Without
//! the matching hash the answer must be revalidated (ETag), so nothing stale outlives a
//! deploy.

use axum::extract::{Path, Query};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::assets;
use super::avatar::identicon_svg;
use super::error::WebError;

/// Cache policy of a URL whose content can never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of a URL whose content may change with the next deploy.
const REVALIDATE: &str = "no-cache";

#[derive(Deserialize)]
pub(super) struct Version {
    v: Option<String>,
}

/// `GET /static/{name}`.
pub(super) async fn file(
    Path(name): Path<String>,
    Query(version): Query<Version>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let asset = assets::find(&name)
        .ok_or_else(|| WebError::NotFound("There is no such file.".to_owned()))?;
    let cache = if version.v.as_deref() == Some(asset.hash.as_str()) {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let etag = format!("\"{}\"", asset.hash);
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    response_headers.insert(
        ETAG,
        HeaderValue::from_str(&etag).expect("a hex ETag is a valid header value"),
    );
    Ok(response)
}

/// `GET /static/avatars/{hash}.svg`: an identicon, the same forever for the same hash.
pub(super) async fn avatar(Path(file): Path<String>) -> Result<Response, WebError> {
    let not_found = || WebError::NotFound("There is no such avatar.".to_owned());
    let hash = file.strip_suffix(".svg").ok_or_else(not_found)?;
    let svg = identicon_svg(hash).map_err(|_| not_found())?;
    Ok((
        [(CONTENT_TYPE, "image/svg+xml"), (CACHE_CONTROL, IMMUTABLE)],
        svg,
    )
        .into_response())
}
