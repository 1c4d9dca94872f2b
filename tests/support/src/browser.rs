//! A headless browser for the end-to-end tests: Debian's Chromium, driven through
//! chromedriver over WebDriver (the `fantoccini` client).
//!
//! Each [`Browser`] owns everything it starts: its own chromedriver on a free port, the one
//! WebDriver session (so one Chromium) on it, and a fresh profile directory. Tests can run
//! several at once. [`Browser::close`] ends the session, stops chromedriver, makes sure that
//! no Chromium process of this browser survives, and removes the profile; `Drop` does the
//! same, synchronously, for a test that panicked before closing.
//!
//! The binaries are `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium` and `chromium-driver`), or whatever `MINITWIT_CHROMIUM` and
//! `MINITWIT_CHROMEDRIVER` name. Chromium runs with these flags, each for a reason:
//!
//! - `--headless=new`: no display here; the "new" headless mode is the real browser, so what
//!   a screenshot shows is what a person would see.
//! - `--no-sandbox`: tests run as root, and Chromium refuses to start its sandbox as root.
//! - `--disable-gpu`: there is no GPU; software rendering is all there is.
//! - `--disable-dev-shm-usage`: `/dev/shm` may be small (containers, CI); a full one crashes
//!   the renderer, so shared memory goes to the temp dir instead.
//! - `--disable-quic`, `--disable-background-networking`, `--disable-component-update`,
//!   `--disable-sync`, `--disable-default-apps`, `--no-first-run`: the machine has no internet;
//!   these stop Chromium from calling home, fetching components or showing first-run UI,
//!   which would only time out and add noise and delay.
//! - `--user-data-dir=<fresh dir>`: a profile of its own per browser, so two browsers at once
//!   do not fight over one profile lock, and no cookie or cache carries over between tests.
//! - `--window-size` and a device-metrics override: a fixed viewport of exactly the size asked
//!   for ([`Viewport`]), so layouts and screenshots do not depend on the machine. The override
//!   is needed because a headless window's page area is smaller than the window (it keeps
//!   room for a simulated toolbar) and no window is narrower than 500 px, too wide for a phone.
//!
//! Every helper that waits has a deadline and panics, naming what it waited for, the current
//! URL and an excerpt of the page, rather than hanging; every WebDriver command has one too.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::free_port;

/// How long [`Browser::click`], [`Browser::text_of`] and the input helpers wait for what
/// they need to appear.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on any single WebDriver command (a page load included), beyond which the
/// browser is taken to be stuck.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long chromedriver gets to answer, and then to start Chromium and open the session (a
/// cold start on a busy two-core machine takes a few seconds).
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
const SESSION_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long Chromium's processes get to exit after the session ends, before they are killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that marks every process of one browser, set to its profile
/// directory, so that they can all be found and stopped (see `stop_processes`).
const BROWSER_MARKER: &str = "MINITWIT_TEST_BROWSER";

/// How often the waiting helpers look again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The inputs a person types into; [`Browser::fill_inputs_in_order`] and
/// [`Browser::press_enter_on_input`] count these, so a hidden CSRF token or a submit button
/// does not shift the indexes.
const TYPABLE_INPUTS: &str = "input:not([type=hidden]):not([type=submit]):not([type=button])\
    :not([type=reset]):not([type=image]):not([type=checkbox]):not([type=radio]):not([type=file])";

/// The size of the page area, in CSS pixels, and whether it behaves like a phone's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    /// A phone: touch input, and the mobile layout rules (a page without a `viewport` meta
    /// tag is laid out 980 px wide and scaled down, as on a real phone).
    pub phone: bool,
}

impl Viewport {
    /// A laptop's page area.
    pub const DESKTOP: Viewport = Viewport {
        width: 1280,
        height: 900,
        phone: false,
    };
    /// A current phone's (iPhone 12 to 15) page area.
    pub const PHONE: Viewport = Viewport {
        width: 390,
        height: 844,
        phone: true,
    };
}

/// The element with the keyboard focus ([`Browser::focused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Focused {
    /// Its tag, in lower case: `a`, `input`, `button`, `textarea`, …
    pub tag: String,
    /// What it says: a link's text, a button's, or a field's label.
    pub text: String,
    /// What marks it as focused, as computed: its outline and box-shadow, if any.
    pub ring: Option<String>,
    /// Whether any of it is within the page area (scrolled into view).
    pub in_view: bool,
}

impl Focused {
    /// Whether a person can see where the focus is: it is in view and has a focus ring.
    pub fn is_visible(&self) -> bool {
        self.in_view && self.ring.is_some()
    }
}

/// A headless Chromium with its own chromedriver and profile. See the module doc.
pub struct Browser {
    client: Client,
    session_id: String,
    driver: tokio::process::Child,
    driver_port: u16,
    profile: PathBuf,
    closed: bool,
}

impl Browser {
    /// Starts a browser with a [`Viewport::DESKTOP`] page area.
    pub async fn start() -> Browser {
        Self::start_with_viewport(Viewport::DESKTOP).await
    }

    /// Starts a browser with a [`Viewport::PHONE`] page area.
    pub async fn start_phone() -> Browser {
        Self::start_with_viewport(Viewport::PHONE).await
    }

    /// Starts a browser whose page area is `viewport`.
    async fn start_with_viewport(viewport: Viewport) -> Browser {
        let chromium = find_binary("MINITWIT_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = find_binary("MINITWIT_CHROMEDRIVER", "/usr/bin/chromedriver");
        let profile = new_profile_path();
        let (driver, driver_port) = spawn_chromedriver(&chromedriver, &profile).await;
        std::fs::create_dir(&profile)
            .unwrap_or_else(|error| panic!("creating the profile {}: {error}", profile.display()));

        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        // Bounds chromedriver itself enforces, below ours, so that its error (which names
        // the command) is the one a test sees.
        capabilities.insert(
            "timeouts".into(),
            json!({ "implicit": 0, "pageLoad": 25_000, "script": 10_000 }),
        );
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": chromium_args(&profile, viewport),
                "mobileEmulation": {
                    "deviceMetrics": {
                        "width": viewport.width,
                        "height": viewport.height,
                        "pixelRatio": 1,
                        "mobile": viewport.phone,
                        "touch": viewport.phone,
                    }
                },
            }),
        );
        let webdriver_url = format!("http://127.0.0.1:{driver_port}");
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let connecting = builder.connect(&webdriver_url);
        let client = match tokio::time::timeout(SESSION_START_TIMEOUT, connecting).await {
            Ok(Ok(client)) => client,
            failure => {
                // Whatever Chromium got started is this browser's to stop.
                stop_processes(&profile, Duration::ZERO);
                remove_profile(&profile);
                let problem = match failure {
                    Ok(Err(error)) => format!("could not start it: {error}"),
                    _ => format!("did not start it within {SESSION_START_TIMEOUT:?}"),
                };
                panic!(
                    "chromedriver at {webdriver_url}, asked for Chromium {}, {problem}\n\
                     (run with TEST_LOG=1 to see chromedriver's and Chromium's output)",
                    chromium.display()
                );
            }
        };
        let session_id = client
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("a connected WebDriver client has a session id");
        let browser = Browser {
            client,
            session_id,
            driver,
            driver_port,
            profile,
            closed: false,
        };
        // A fresh window shows Chromium's new-tab page, whose scripts have nothing to do
        // here; a blank page is a known start.
        browser.goto("about:blank").await;
        browser
    }

    /// The WebDriver client, for anything the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Loads `url` and waits for the page's `load` event.
    pub async fn goto(&self, url: &str) {
        self.command(&format!("loading {url}"), self.client.goto(url))
            .await;
    }

    /// The URL of the current page.
    pub async fn current_url(&self) -> String {
        self.command("reading the current URL", self.client.current_url())
            .await
            .to_string()
    }

    /// Types `values[i]` into the page's `i`-th typable input (text, email, password, …:
    /// hidden inputs and buttons are not counted), clearing it first. Waits up to
    /// [`DEFAULT_TIMEOUT`] for the page to have that many.
    pub async fn fill_inputs_in_order(&self, values: &[&str]) {
        let inputs = self.typable_inputs(values.len()).await;
        for (index, (input, value)) in inputs.iter().zip(values).enumerate() {
            let what = format!("typing {value:?} into typable input #{index}");
            self.command(&what, input.clear()).await;
            self.command(&what, input.send_keys(value)).await;
        }
    }

    /// Presses Enter in the page's `index`-th typable input (counted as in
    /// [`Self::fill_inputs_in_order`]), which submits its form.
    pub async fn press_enter_on_input(&self, index: usize) {
        let inputs = self.typable_inputs(index + 1).await;
        let enter = char::from(Key::Enter).to_string();
        self.command(
            &format!("pressing Enter in typable input #{index}"),
            inputs[index].send_keys(&enter),
        )
        .await;
    }

    /// Presses `key` (Tab, Enter, …) where the keyboard focus is, as a person at a keyboard
    /// does: key down, key up. Unlike typing into an element, this never moves the focus
    /// first, so what happens is what the page does with a key alone.
    pub async fn press(&self, key: Key) {
        let key = char::from(key);
        self.keys(
            &format!("pressing {key:?}"),
            [KeyAction::Down { value: key }, KeyAction::Up { value: key }],
        )
        .await;
    }

    /// Presses `key` while holding Shift (Shift+Tab moves the focus back).
    pub async fn press_with_shift(&self, key: Key) {
        let (shift, key) = (char::from(Key::Shift), char::from(key));
        self.keys(
            &format!("pressing Shift+{key:?}"),
            [
                KeyAction::Down { value: shift },
                KeyAction::Down { value: key },
                KeyAction::Up { value: key },
                KeyAction::Up { value: shift },
            ],
        )
        .await;
    }

    /// Types `text` where the keyboard focus is, one key at a time (see [`Self::press`]).
    pub async fn type_text(&self, text: &str) {
        let strokes = text.chars().flat_map(|character| {
            [
                KeyAction::Down { value: character },
                KeyAction::Up { value: character },
            ]
        });
        self.keys(&format!("typing {text:?}"), strokes).await;
    }

    /// The element that has the keyboard focus, as a person sees it; `None` when nothing
    /// does (the page itself has it).
    pub async fn focused(&self) -> Option<Focused> {
        let script = r"
            const element = document.activeElement;
            if (!element || element === document.body || element === document.documentElement) {
                return null;
            }
            const style = getComputedStyle(element);
            const rings = [];
            if (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) {
                rings.push(`outline ${style.outlineWidth} ${style.outlineStyle} ${style.outlineColor}`);
            }
            if (style.boxShadow !== 'none') rings.push(`box-shadow ${style.boxShadow}`);
            const box = element.getBoundingClientRect();
            const label = element.labels && element.labels.length ? element.labels[0].innerText : '';
            const isButton = element instanceof HTMLInputElement
                && ['submit', 'button', 'reset'].includes(element.type);
            const shown = isButton ? element.value : element.innerText || label;
            return {
                tag: element.tagName.toLowerCase(),
                text: (shown || '').trim(),
                ring: rings.join('; ') || null,
                in_view: box.bottom > 0 && box.right > 0 && box.top < innerHeight
                    && box.left < innerWidth,
            };";
        let found = self
            .command(
                "reading the focused element",
                self.client.execute(script, Vec::new()),
            )
            .await;
        if found.is_null() {
            return None;
        }
        let text = |key: &str| found[key].as_str().map(str::to_owned);
        Some(Focused {
            tag: text("tag").unwrap_or_default(),
            text: text("text").unwrap_or_default(),
            ring: text("ring"),
            in_view: found["in_view"] == json!(true),
        })
    }

    /// Clicks the first element matching `css`, waiting up to [`DEFAULT_TIMEOUT`] for one.
    /// Runs `script` in the page and returns its value.
    pub async fn evaluate(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|err| panic!("running {script:?}: {err}"))
    }

    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css, DEFAULT_TIMEOUT).await;
        self.command(&format!("clicking {css:?}"), element.click())
            .await;
    }

    /// The rendered text of the first element matching `css`, waiting up to
    /// [`DEFAULT_TIMEOUT`] for one.
    pub async fn text_of(&self, css: &str) -> String {
        let element = self.wait_for(css, DEFAULT_TIMEOUT).await;
        self.command(&format!("reading the text of {css:?}"), element.text())
            .await
    }

    /// The rendered texts of all elements matching `css`, in document order; none is no
    /// error (this does not wait).
    pub async fn texts_of(&self, css: &str) -> Vec<String> {
        let what = format!("reading the texts of {css:?}");
        let elements = self
            .command(&what, self.client.find_all(Locator::Css(css)))
            .await;
        let mut texts = Vec::with_capacity(elements.len());
        for element in elements {
            texts.push(self.command(&what, element.text()).await);
        }
        texts
    }

    /// Waits until an element matches `css` and returns the first; panics after `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .command(
                    &format!("looking for {css:?}"),
                    self.client.find_all(Locator::Css(css)),
                )
                .await;
            if let Some(element) = found.into_iter().next() {
                return element;
            }
            if Instant::now() >= deadline {
                let report = self
                    .report(&format!("no element matched {css:?} within {timeout:?}"))
                    .await;
                panic!("{report}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until an element matching `css` has rendered text containing `needle`, and
    /// returns that text; panics after `timeout`. This is how a test sees a live update.
    pub async fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            // The page may change between finding an element and reading it (that is what
            // is being waited for), so a failed read is a reason to look again, not a failure.
            let texts = self.try_texts(css).await;
            if let Some(text) = texts.iter().flatten().find(|text| text.contains(needle)) {
                return text.clone();
            }
            if Instant::now() >= deadline {
                let seen = texts.map_or_else(
                    || "(the page kept changing under the reads)".to_owned(),
                    |texts| format!("their texts were {texts:?}"),
                );
                let report = self
                    .report(&format!(
                        "no element matching {css:?} showed {needle:?} within {timeout:?}; {seen}"
                    ))
                    .await;
                panic!("{report}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Saves a PNG of the page area to `test-artifacts/screenshots/<name>.png` in Cargo's
    /// target directory (`target/`), and returns its path. `name` may use letters, digits,
    /// `-`, `_` and `.`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        assert!(
            !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "screenshot name {name:?}: use letters, digits, '-', '_' and '.'"
        );
        let png = self
            .command(
                &format!("taking screenshot {name:?}"),
                self.client.screenshot(),
            )
            .await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        path
    }

    /// Ends the WebDriver session, stops chromedriver, and makes sure no process of this
    /// browser is left; panics if one survives even being killed.
    pub async fn close(mut self) {
        self.closed = true;
        // Chromedriver quits Chromium when the session ends; an error here (a browser that
        // already crashed, say) still leaves the clean-up below to do.
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, self.client.clone().close()).await;
        let _ = self.driver.start_kill();
        let _ = tokio::time::timeout(EXIT_TIMEOUT, self.driver.wait()).await;
        let profile = self.profile.clone();
        let survivors = tokio::task::spawn_blocking(move || {
            let survivors = stop_processes(&profile, EXIT_TIMEOUT);
            remove_profile(&profile);
            survivors
        })
        .await
        .expect("stopping the browser's processes does not panic");
        assert!(
            survivors.is_empty(),
            "processes {survivors:?} of the browser with profile {} survived SIGKILL",
            self.profile.display()
        );
    }

    /// Performs `strokes`, one after another, on the keyboard.
    async fn keys(&self, what: &str, strokes: impl IntoIterator<Item = KeyAction>) {
        let keyboard = strokes
            .into_iter()
            .fold(KeyActions::new("keyboard".to_owned()), InputSource::then);
        self.command(what, self.client.perform_actions(keyboard))
            .await;
    }

    /// The page's typable inputs, once there are at least `count`.
    async fn typable_inputs(&self, count: usize) -> Vec<Element> {
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        loop {
            let inputs = self
                .command(
                    "looking for the page's inputs",
                    self.client.find_all(Locator::Css(TYPABLE_INPUTS)),
                )
                .await;
            if inputs.len() >= count {
                return inputs;
            }
            if Instant::now() >= deadline {
                let report = self
                    .report(&format!(
                        "the page has {} typable inputs, not the {count} needed, after {:?}",
                        inputs.len(),
                        DEFAULT_TIMEOUT
                    ))
                    .await;
                panic!("{report}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The texts of the elements matching `css`, or `None` if a read failed (an element
    /// went stale, say) or took longer than [`COMMAND_TIMEOUT`].
    async fn try_texts(&self, css: &str) -> Option<Vec<String>> {
        let find = self.client.find_all(Locator::Css(css));
        let elements = tokio::time::timeout(COMMAND_TIMEOUT, find)
            .await
            .ok()?
            .ok()?;
        let mut texts = Vec::with_capacity(elements.len());
        for element in elements {
            let text = tokio::time::timeout(COMMAND_TIMEOUT, element.text());
            texts.push(text.await.ok()?.ok()?);
        }
        Some(texts)
    }

    /// Runs one WebDriver command under [`COMMAND_TIMEOUT`]; panics, saying `what` it was
    /// for, if it fails or takes longer.
    async fn command<T>(
        &self,
        what: &str,
        command: impl Future<Output = Result<T, CmdError>>,
    ) -> T {
        let problem = match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(value)) => return value,
            Ok(Err(error)) => format!("{what} failed: {error}"),
            Err(_) => format!("{what} took longer than {COMMAND_TIMEOUT:?}"),
        };
        let report = self.report(&problem).await;
        panic!("{report}");
    }

    /// `message` with the current URL and the start of the page's body, for a panic.
    async fn report(&self, message: &str) -> String {
        const EXCERPT_CHARS: usize = 3_000;
        let quick = Duration::from_secs(5);
        let url = match tokio::time::timeout(quick, self.client.current_url()).await {
            Ok(Ok(url)) => url.to_string(),
            Ok(Err(error)) => format!("(unknown: {error})"),
            Err(_) => "(unknown: the browser does not answer)".to_owned(),
        };
        let excerpt = match tokio::time::timeout(quick, self.client.source()).await {
            Ok(Ok(source)) => {
                // The body is what tells what the page shows; the head is mostly noise.
                let body = source.find("<body").map_or(&source[..], |at| &source[at..]);
                let mut excerpt: String = body.chars().take(EXCERPT_CHARS).collect();
                if body.chars().nth(EXCERPT_CHARS).is_some() {
                    excerpt.push_str("\n[…]");
                }
                excerpt
            }
            Ok(Err(error)) => format!("(unavailable: {error})"),
            Err(_) => "(unavailable: the browser does not answer)".to_owned(),
        };
        format!("browser: {message}\ncurrent URL: {url}\npage source:\n{excerpt}")
    }
}

impl Drop for Browser {
    /// The clean-up of [`Browser::close`] for a browser that was not closed (a test that
    /// panicked): it cannot await, so it ends the session with a plain blocking request, and
    /// kills what is left.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let session_ended = http_request(
            self.driver_port,
            "DELETE",
            &format!("/session/{}", self.session_id),
            EXIT_TIMEOUT,
        )
        .is_ok();
        let _ = self.driver.start_kill();
        // Once the session is over Chromium is on its way out; if it could not be ended
        // (chromedriver is gone or stuck), there is no point in waiting.
        let grace = if session_ended {
            EXIT_TIMEOUT
        } else {
            Duration::ZERO
        };
        stop_processes(&self.profile, grace);
        let _ = self.driver.try_wait();
        remove_profile(&self.profile);
    }
}

/// The path of a binary from `variable`, else `default`; panics, saying how to install it,
/// if there is no such file.
fn find_binary(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: the browser tests need Chromium and chromedriver (Debian: \
         `apt-get install chromium chromium-driver`), at /usr/bin/chromium and \
         /usr/bin/chromedriver or wherever MINITWIT_CHROMIUM and MINITWIT_CHROMEDRIVER say",
        path.display()
    );
    path
}

fn chromium_args(profile: &Path, viewport: Viewport) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
    ]
    .map(String::from)
    .into();
    args.push(format!("--user-data-dir={}", profile.display()));
    // A window is never narrower than 500 px; the device metrics set the page area anyway.
    args.push(format!(
        "--window-size={},{}",
        viewport.width.max(500),
        viewport.height
    ));
    args
}

/// A path for a new profile directory, under Cargo's scratch dir for integration tests,
/// that no other browser, of this run or another, has.
fn new_profile_path() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let parent = crate::scratch_dir().join("browser-profiles");
    std::fs::create_dir_all(&parent)
        .unwrap_or_else(|error| panic!("creating {}: {error}", parent.display()));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    parent.join(format!(
        "{}-{}-{nanos:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn remove_profile(profile: &Path) {
    // Chromium may still be flushing a file as it exits; a second try catches that.
    for _ in 0..3 {
        if std::fs::remove_dir_all(profile).is_ok() || !profile.exists() {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Spawns chromedriver on a free port, marked as `profile`'s (see [`BROWSER_MARKER`]), and
/// waits until it answers. A port picked free can be
/// taken before chromedriver binds it, so a chromedriver that exits early is tried again.
async fn spawn_chromedriver(chromedriver: &Path, profile: &Path) -> (tokio::process::Child, u16) {
    const ATTEMPTS: usize = 3;
    let quiet = std::env::var_os("TEST_LOG").is_none();
    let output = || {
        if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        }
    };
    let mut exits = Vec::new();
    for _ in 0..ATTEMPTS {
        let port = free_port();
        let mut command = tokio::process::Command::new(chromedriver);
        command
            .arg(format!("--port={port}"))
            .env(BROWSER_MARKER, profile);
        if !quiet {
            // Chromium's own output too, which is where a failed start says why.
            command.arg("--enable-chrome-logs");
        }
        let mut driver = command
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {}: {error}", chromedriver.display()));
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = driver.try_wait() {
                exits.push(format!("port {port}: {status}"));
                break;
            }
            let answered = tokio::task::spawn_blocking(move || {
                http_request(port, "GET", "/status", Duration::from_secs(2))
            })
            .await
            .expect("the status request does not panic");
            if answered.is_ok_and(|body| body.contains("\"ready\":true")) {
                return (driver, port);
            }
            assert!(
                Instant::now() < deadline,
                "{} on port {port} did not answer within {DRIVER_START_TIMEOUT:?}",
                chromedriver.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!(
        "{} exited before answering, {ATTEMPTS} times: {exits:?} \
         (run with TEST_LOG=1 to see its output)",
        chromedriver.display()
    );
}

/// One bodiless HTTP request to chromedriver, with blocking I/O (so that `Drop` can use it);
/// returns the response's body.
fn http_request(port: u16, method: &str, path: &str, timeout: Duration) -> std::io::Result<String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )?;
    // Chromedriver answers `Connection: close` but keeps the connection open, so the
    // response ends where its Content-Length says, not at the end of the stream.
    let mut response = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let read = stream.read(&mut chunk)?;
        response.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if read == 0 || length.is_some_and(|length| body.len() >= length) {
                return Ok(body.to_owned());
            }
        }
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Stops every process of the browser with `profile`: waits up to `grace` for them to exit,
/// then kills them, and waits (up to [`EXIT_TIMEOUT`]) until they are gone. Returns the
/// ones still there.
fn stop_processes(profile: &Path, grace: Duration) -> Vec<i32> {
    let started = Instant::now();
    // A process on its way out no longer shows its environment or command line, so the
    // ones found are followed by pid until they are gone.
    let mut tracked = Vec::new();
    loop {
        for pid in processes_of(profile) {
            if !tracked.contains(&pid) {
                tracked.push(pid);
            }
        }
        tracked.retain(|&pid| is_exiting_or_ours(pid, profile));
        let waited = started.elapsed();
        if tracked.is_empty() || waited >= grace + EXIT_TIMEOUT {
            return tracked;
        }
        if waited >= grace {
            // Only what still shows the mark is killed: a tracked pid may be another
            // process's by now.
            kill_all(&processes_of(profile));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The live processes of the browser with `profile`: those that carry its
/// [`BROWSER_MARKER`] in their environment (chromedriver hands its environment to Chromium,
/// and Chromium to every helper, its crash handler included) or its profile in their
/// command line (readable even where the environment is not).
fn processes_of(profile: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| shows_mark(pid, profile) == Some(true) && !is_zombie(pid))
        .collect()
}

/// Whether `pid` shows the mark of the browser with `profile`, or `None` if it shows
/// nothing at all (it is exiting, or has exited).
fn shows_mark(pid: i32, profile: &Path) -> Option<bool> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if environ.is_empty() && cmdline.is_empty() {
        return None;
    }
    let marker = format!("{BROWSER_MARKER}={}", profile.display());
    let flag = format!("--user-data-dir={}", profile.display());
    let has = |bytes: &[u8], wanted: &str| {
        bytes
            .split(|&byte| byte == 0)
            .any(|entry| entry == wanted.as_bytes())
    };
    Some(has(&environ, &marker) || has(&cmdline, &flag))
}

/// Whether `pid` still runs and is either the browser's or too far gone to tell.
fn is_exiting_or_ours(pid: i32, profile: &Path) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !is_zombie(pid)
        && shows_mark(pid, profile) != Some(false)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name, which may itself hold ") ".
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

fn kill_all(pids: &[i32]) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `test-artifacts/screenshots` in Cargo's target directory.
fn screenshot_dir() -> PathBuf {
    crate::target_dir().join("test-artifacts/screenshots")
}
