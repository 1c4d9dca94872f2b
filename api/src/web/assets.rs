//! The registry of static assets (stylesheet, scripts, icon): the files, compiled into the
//! binary, and the versioned URLs pages link them by.
//!
//! Being compiled in, a deployment is one file and every replica serves identical bytes.
//! Pages link each asset with its content hash in the query (`/static/style.css?v=<hash>`),
//! so a new build's pages link new URLs; [`super::static_files`] serves them.

use std::sync::LazyLock;

use sha2::{Digest as _, Sha256};

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Hex prefix of the body's SHA-256: the version in URLs and the ETag.
    pub hash: String,
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

/// The embedded file called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}
