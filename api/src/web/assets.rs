//! Static assets (stylesheet, script, icon) and generated avatars, served from memory.
//!
//! The files are compiled into the binary, so a deployment is one file and every replica
//! serves identical bytes. Pages link each asset with its content hash in the query
//! (`/static/style.css?v=<hash>`): such a URL never changes meaning, so it is cached for a
//! year as immutable, and a new build's pages link a new URL. Without the matching hash the
//! answer must be revalidated (ETag), so nothing stale outlives a deploy.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::avatar::identicon_svg;
use super::error::WebError;

/// Cache policy of a URL whose content can never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of a URL whose content may change with the next deploy.
const REVALIDATE: &str = "no-cache";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Hex prefix of the body's SHA-256: the version in URLs and the ETag.
    hash: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Self {
            name,
            content_type,
            body,
            hash: hex::encode(&Sha256::digest(body)[..8]),
        }
    }

    fn url(&self) -> String {
        format!("/static/{}?v={}", self.name, self.hash)
    }
}

static ASSETS: LazyLock<[Asset; 4]> = LazyLock::new(|| {
    [
        Asset::new(
            "style.css",
            "text/css; charset=utf-8",
            include_bytes!("../../static/style.css"),
        ),
        Asset::new(
            "live.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../static/live.js"),
        ),
        Asset::new(
            "chat.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../static/chat.js"),
        ),
        Asset::new(
            "icon.svg",
            "image/svg+xml",
            include_bytes!("../../static/icon.svg"),
        ),
    ]
});

/// The versioned URLs pages link to.
pub struct AssetUrls {
    pub stylesheet: String,
    pub script: String,
    /// Signed-in pages' chat script: unread counts, and the conversation page live.
    pub chat_script: String,
    pub icon: String,
}

/// Computed once: every page links the same URLs.
pub static ASSET_URLS: LazyLock<AssetUrls> = LazyLock::new(|| {
    let [style, script, chat_script, icon] = &*ASSETS;
    AssetUrls {
        stylesheet: style.url(),
        script: script.url(),
        chat_script: chat_script.url(),
        icon: icon.url(),
    }
});

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
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name)
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
