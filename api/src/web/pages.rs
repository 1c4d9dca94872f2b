//! The pages' templates and the view models they render.
//!
//! Templates live in `api/templates` and are compiled into the binary by askama, which checks
//! every field they use at build time and HTML-escapes every expression with [`JinjaHtml`]
//! (configured in `api/askama.toml`) unless marked `|safe` — which only our own constant
//! texts are.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use domain::{ChatPolicy, ConversationError, Standing};
use md5::{Digest as _, Md5};
use projections::{InboxEntry, PrivateMessage, ProfileRelation, TimelineEntry};

use super::assets::AssetUrls;
use crate::config::AvatarSource;

/// HTML escaping exactly as the original's Jinja2 (markupsafe) did it: `&amp;`, `&lt;`,
/// `&gt;`, `&#34;`, `&#39;`. Users' pages and the original's test suite rely on these forms
/// (`You are now following &#34;foo&#34;`, `&lt;test message 2&gt;`). Safe in text and in
/// quoted attribute values alike.
#[derive(Debug, Clone, Copy, Default)]
pub struct JinjaHtml;

impl askama::filters::Escaper for JinjaHtml {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, text: &str) -> std::fmt::Result {
        let mut unwritten = 0;
        for (index, byte) in text.bytes().enumerate() {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&#34;",
                b'\'' => "&#39;",
                _ => continue,
            };
            // Every special character is ASCII, so `index` is a character boundary.
            dest.write_str(&text[unwritten..index])?;
            dest.write_str(entity)?;
            unwritten = index + 1;
        }
        dest.write_str(&text[unwritten..])
    }
}

/// Who is looking at a page, as far as its navigation is concerned.
pub enum Visitor {
    SignedIn(String),
    Anonymous,
    /// Not known (an error page, which must not fail in turn looking it up): the navigation
    /// offers only what suits everyone.
    Unknown,
}

/// What every page around its body shows: navigation, flashes, assets.
pub struct Chrome {
    pub visitor: Visitor,
    /// The signed-in visitor's unread private messages (0 for anyone else).
    pub unread: i64,
    pub flashes: Vec<String>,
    pub assets: &'static AssetUrls,
}

/// A page's title, shown in `<title>` and in its `h2`. `subject` (a username) is escaped;
/// `text` is one of our constants, written as is — so `foo's Timeline` keeps its apostrophe
/// the way the original's template had it.
pub struct Title {
    pub subject: Option<String>,
    pub text: &'static str,
}

impl Title {
    pub const PUBLIC: Self = Self::fixed("Public Timeline");
    pub const MINE: Self = Self::fixed("My Timeline");
    pub const SIGN_IN: Self = Self::fixed("Sign In");
    pub const SIGN_UP: Self = Self::fixed("Sign Up");

    pub const fn fixed(text: &'static str) -> Self {
        Self {
            subject: None,
            text,
        }
    }

    pub fn user_timeline(username: &str) -> Self {
        Self {
            subject: Some(username.to_owned()),
            text: "'s Timeline",
        }
    }

    pub const INBOX: Self = Self::fixed("Messages");
    pub const SETTINGS: Self = Self::fixed("Settings");

    pub fn conversation(partner: &str) -> Self {
        Self {
            subject: Some(partner.to_owned()),
            text: " &middot; Messages",
        }
    }

    pub fn block(username: &str) -> Self {
        Self {
            subject: Some(username.to_owned()),
            text: " &middot; Block",
        }
    }
}

/// On someone else's timeline, for a signed-in visitor: whether and where they may message
/// them, and blocking.
pub struct ChatStatus {
    pub conversation_href: String,
    pub offer: ChatOffer,
}

/// What the pages offer a signed-in user about writing to another, so that the rules are
/// told before a message is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatOffer {
    /// A message box, or the way to it.
    Write,
    /// None: the policy lets them write only to people they follow or who follow them.
    NotConnected,
    /// None until they lift their block of the other.
    Blocking,
}

impl ChatOffer {
    /// What a viewer standing as `relation` to another user is offered under `policy`: the
    /// rule a send is decided by ([`domain::conversation::may_write`]), asked with what the
    /// viewer may know. The other's block of the viewer is left out, so a page no more
    /// reveals a block than a refused message does: the blocked person is offered what they
    /// would be without it, and told what a stranger is when they send.
    pub fn of(relation: &ProfileRelation, policy: ChatPolicy) -> Self {
        let standing = Standing {
            sender_registered: true,
            recipient_registered: !relation.forgotten,
            sender_follows_recipient: relation.following,
            recipient_follows_sender: relation.followed_by,
            recipient_blocks_sender: false,
            sender_blocks_recipient: relation.blocked,
        };
        match domain::conversation::may_write(&standing, policy) {
            Ok(()) => Self::Write,
            Err(ConversationError::SenderBlocksRecipient) => Self::Blocking,
            // The policy's refusal: the standing above gives no other.
            Err(_) => Self::NotConnected,
        }
    }
}

/// What a page says in place of a message box when the policy does not let its viewer
/// write to the other user.
pub const CHAT_POLICY_RULE: &str = "You can message people you follow or who follow you.";

/// The signed-in visitor's relation to the user whose timeline is shown.
pub enum FollowStatus {
    Yourself,
    Following,
    NotFollowing,
}

/// One message, ready to render.
pub struct MessageView {
    pub id: String,
    pub author: String,
    pub author_href: String,
    pub avatar_url: String,
    /// Where to fall back to if the avatar cannot be loaded (Gravatar unreachable).
    pub avatar_fallback: Option<String>,
    pub text: String,
    /// `YYYY-MM-DD @ HH:MM` in UTC, as the original shows it.
    pub date: String,
    /// The same instant for machines (`<time datetime>`).
    pub datetime: String,
}

impl MessageView {
    pub fn new(entry: TimelineEntry, avatars: AvatarSource) -> Self {
        let posted = DateTime::from_timestamp(entry.pub_date, 0).unwrap_or_default();
        let (avatar_url, avatar_fallback) = avatar_urls(&entry.author_email, avatars);
        let (date, datetime) = shown_and_machine_dates(posted);
        Self {
            id: entry.message_id,
            author_href: user_href(&entry.author),
            avatar_url,
            avatar_fallback,
            author: entry.author,
            text: entry.content,
            date,
            datetime,
        }
    }
}

/// A message's time as the page shows it (`YYYY-MM-DD @ HH:MM`, as the original did) and as
/// `<time datetime>` states it (`YYYY-MM-DDTHH:MM:SSZ`). Written out by hand: chrono's
/// `format` re-parses its pattern on every call, which made it the most expensive step of
/// rendering a timeline (30 messages, two dates each).
fn shown_and_machine_dates(at: DateTime<Utc>) -> (String, String) {
    if !(0..=9999).contains(&at.year()) {
        // Outside four digits chrono's sign and width rules apply; such dates are rare.
        return (
            at.format("%Y-%m-%d @ %H:%M").to_string(),
            at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    }
    let day = format!("{:04}-{:02}-{:02}", at.year(), at.month(), at.day());
    let (hour, minute) = (at.hour(), at.minute());
    (
        format!("{day} @ {hour:02}:{minute:02}"),
        format!("{day}T{hour:02}:{minute:02}:{:02}Z", at.second()),
    )
}

#[derive(Template)]
#[template(path = "timeline.html")]
pub struct TimelinePage {
    pub chrome: Chrome,
    pub title: Title,
    pub follow: Option<FollowStatus>,
    /// The timeline's owner's page, for the follow buttons.
    pub profile_href: String,
    /// The signed-in user, on their own timeline: the box to post from.
    pub twitbox: Option<String>,
    pub chat: Option<ChatStatus>,
    /// The timeline's owner deleted their account: the page says so, in place of any
    /// messages.
    pub deleted: bool,
    pub messages: Vec<MessageView>,
    /// On the newest page, the cursor after which live updates are wanted.
    pub live_after: Option<String>,
    pub newer_href: Option<String>,
    pub older_href: Option<String>,
}

/// A user's conversations, the newest first.
#[derive(Template)]
#[template(path = "inbox.html")]
pub struct InboxPage {
    pub chrome: Chrome,
    pub title: Title,
    pub conversations: Vec<InboxItemView>,
}

/// One conversation in the inbox.
pub struct InboxItemView {
    pub partner: String,
    pub href: String,
    pub avatar_url: String,
    pub avatar_fallback: Option<String>,
    pub last_text: String,
    pub last_is_mine: bool,
    pub unread: i64,
    pub date: String,
    pub datetime: String,
}

impl InboxItemView {
    pub fn new(entry: InboxEntry, owner: &str, avatars: AvatarSource) -> Self {
        let (avatar_url, avatar_fallback) = avatar_urls(&entry.partner_email, avatars);
        let (date, datetime) = shown_and_machine_dates(entry.last.sent_at);
        Self {
            href: conversation_href(&entry.partner),
            avatar_url,
            avatar_fallback,
            last_is_mine: entry.last.sender == owner,
            last_text: shown_text(&entry.last),
            unread: entry.unread,
            partner: entry.partner,
            date,
            datetime,
        }
    }
}

/// A conversation: its newest messages, oldest first, and the box to write in.
#[derive(Template)]
#[template(path = "conversation.html")]
pub struct ConversationPage {
    pub chrome: Chrome,
    pub title: Title,
    pub me: String,
    pub partner: String,
    pub partner_href: String,
    /// Where the box sends to (the page's own path).
    pub send_href: String,
    /// The partner deleted their account: no box to write in.
    pub partner_deleted: bool,
    /// Whether the box is offered, and if not why.
    pub offer: ChatOffer,
    pub messages: Vec<ChatMessageView>,
    pub older_href: Option<String>,
    /// On an older page, the next page down towards the newest; the newest page has the box
    /// and live updates instead.
    pub later_href: Option<String>,
}

/// `/{username}/block`: what a block does, and the button that does it.
#[derive(Template)]
#[template(path = "block.html")]
pub struct BlockPage {
    pub chrome: Chrome,
    pub title: Title,
    pub username: String,
    pub profile_href: String,
}

/// What a private message whose sender was forgotten shows instead of its text.
pub const REMOVED_TEXT: &str = "message removed";

/// A private message's text as the pages show it.
fn shown_text(message: &PrivateMessage) -> String {
    if message.removed {
        REMOVED_TEXT.to_owned()
    } else {
        message.content.clone()
    }
}

/// One private message, ready to render.
pub struct ChatMessageView {
    pub number: i64,
    pub mine: bool,
    /// [`REMOVED_TEXT`] where the sender was forgotten.
    pub text: String,
    pub removed: bool,
    pub date: String,
    pub datetime: String,
}

impl ChatMessageView {
    pub fn new(message: PrivateMessage, viewer: &str) -> Self {
        let (date, datetime) = shown_and_machine_dates(message.sent_at);
        Self {
            number: message.number,
            mine: message.sender == viewer,
            text: shown_text(&message),
            removed: message.removed,
            date,
            datetime,
        }
    }
}

/// The path of the conversation with `partner`.
pub fn conversation_href(partner: &str) -> String {
    format!("/messages/{}", encode_path_segment(partner))
}

/// One message on its own, as live updates send it: the same markup as on the page.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessageItem<'a> {
    pub message: &'a MessageView,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub title: Title,
    pub error: Option<String>,
    pub username: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub chrome: Chrome,
    pub title: Title,
    pub error: Option<String>,
    /// The address the email form shows: the current one, or what was just refused.
    pub email: String,
}

#[derive(Template)]
#[template(path = "register.html")]
pub struct RegisterPage {
    pub chrome: Chrome,
    pub title: Title,
    pub error: Option<String>,
    pub username: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub title: Title,
    pub explanation: String,
}

/// Renders `page` as an HTML response with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            // Templates are checked at compile time; what is left is a formatting failure
            // inside a value, which is a bug worth a log line, not a page.
            tracing::error!(error = %err, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
        }
    }
}

/// A `302 Found` to `location` (a path of ours), the status the original's redirects had.
pub fn redirect(location: &str) -> Response {
    match axum::http::HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(axum::http::header::LOCATION, value)]).into_response(),
        Err(_) => {
            tracing::error!(location, "cannot redirect to an unencoded location");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The path of `username`'s timeline, percent-encoded as one path segment: at the top level,
/// or under [`RESERVED_NAMES_PREFIX`] for a name the site's own pages have (an account
/// imported from the original with a name that new accounts may no longer take).
pub fn user_href(username: &str) -> String {
    let prefix = if domain::registration::is_reserved(username) {
        RESERVED_NAMES_PREFIX
    } else {
        ""
    };
    format!("{prefix}/{}", encode_path_segment(username))
}

/// Where every user's pages are also served, so that a user named like one of the site's
/// pages (`/public`) still has theirs (`/users/public`).
pub const RESERVED_NAMES_PREFIX: &str = "/users";

/// Percent-encodes everything but RFC 3986's unreserved characters, so that any username
/// (spaces, slashes, `?`, non-ASCII) stays one path segment.
pub fn encode_path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Gravatar's hash of an email: the md5 of the trimmed, lower-cased address, in hex.
pub fn email_hash(email: &str) -> String {
    hex::encode(Md5::digest(email.trim().to_lowercase().as_bytes()))
}

/// Where the 48 px avatar of the user whose email has `hash` comes from.
/// The avatar of the user with `email`, and where to fall back to if it cannot be loaded
/// (Gravatar unreachable): the server's own identicon of the same hash.
fn avatar_urls(email: &str, avatars: AvatarSource) -> (String, Option<String>) {
    let hash = email_hash(email);
    let fallback =
        (avatars == AvatarSource::Gravatar).then(|| avatar_url(&hash, AvatarSource::Local));
    (avatar_url(&hash, avatars), fallback)
}

fn avatar_url(hash: &str, avatars: AvatarSource) -> String {
    match avatars {
        AvatarSource::Gravatar => {
            format!("https://www.gravatar.com/avatar/{hash}?d=identicon&s=48")
        }
        AvatarSource::Local => format!("/static/avatars/{hash}.svg"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_jinja2() {
        use askama::filters::Escaper as _;
        let mut escaped = String::new();
        JinjaHtml
            .write_escaped_str(&mut escaped, "<a href=\"x\" title='y'>&amp;</a> é \u{202e}")
            .unwrap();
        assert_eq!(
            escaped,
            "&lt;a href=&#34;x&#34; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt; é \u{202e}"
        );
    }

    #[test]
    fn gravatar_hashes_the_trimmed_lower_cased_email() {
        // md5("myemailaddress@example.com"), Gravatar's documented example.
        assert_eq!(
            email_hash("  MyEmailAddress@example.com "),
            "0bc83cb571cd1c50ba6f3e8a78ef1346"
        );
        let hash = email_hash("MyEmailAddress@example.com");
        assert_eq!(
            avatar_url(&hash, AvatarSource::Gravatar),
            "https://www.gravatar.com/avatar/0bc83cb571cd1c50ba6f3e8a78ef1346?d=identicon&s=48"
        );
        assert_eq!(
            avatar_url(&hash, AvatarSource::Local),
            "/static/avatars/0bc83cb571cd1c50ba6f3e8a78ef1346.svg"
        );
    }

    #[test]
    fn usernames_become_one_path_segment() {
        assert_eq!(user_href("Roger Histand"), "/Roger%20Histand");
        assert_eq!(user_href("a/b?c#d"), "/a%2Fb%3Fc%23d");
        assert_eq!(user_href("Åse"), "/%C3%85se");
        assert_eq!(user_href("plain-name_1.x~"), "/plain-name_1.x~");
        assert_eq!(user_href("public"), "/users/public");
        assert_eq!(user_href("Static"), "/users/Static");
    }

    #[test]
    fn dates_are_shown_as_the_original_did_in_utc() {
        let entry = TimelineEntry {
            message_id: "id".into(),
            author: "a".into(),
            author_email: "a@b".into(),
            content: "hi".into(),
            pub_date: 1_764_072_000, // 2025-11-25 12:00:00 UTC
            position: 1,
        };
        let view = MessageView::new(entry, AvatarSource::Local);
        assert_eq!(view.date, "2025-11-25 @ 12:00");
        assert_eq!(view.datetime, "2025-11-25T12:00:00Z");
        let padded = DateTime::from_timestamp(1_704_164_645, 0).unwrap(); // 2024-01-02 03:04:05
        assert_eq!(
            shown_and_machine_dates(padded),
            ("2024-01-02 @ 03:04".into(), "2024-01-02T03:04:05Z".into())
        );
        let five_digit_year = DateTime::from_timestamp(253_402_300_800, 0).unwrap();
        assert_eq!(
            shown_and_machine_dates(five_digit_year).0,
            "+10000-01-01 @ 00:00"
        );
    }
}
