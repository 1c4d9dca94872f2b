//! What a page gives people who do not see it or do not use a mouse, read from a real
//! [`Browser`]: an accessibility audit by axe-core, and Chromium's own accessibility tree —
//! the roles, names and live regions a screen reader is handed.
//!
//! axe-core is the npm package `scripts/test` installs (pinned) under
//! `target/tools/axe-core`; it names the script, `axe.min.js`, in [`AXE_CORE_VARIABLE`].
//! [`audit`] puts that script into the page, as a WebDriver script (which, unlike a
//! `<script>` element, no Content-Security-Policy of the page can refuse), and runs it.
//!
//! The accessibility tree comes from Chromium's DevTools protocol, which chromedriver passes
//! on (`/session/{id}/goog/cdp/execute`): the node of an element is what assistive technology
//! reads for it, names computed from text, labels and ARIA, hidden parts left out.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{json, Value};

use crate::browser::Browser;

/// The environment variable naming axe-core's `axe.min.js`; `scripts/test` sets it.
pub const AXE_CORE_VARIABLE: &str = "MINITWIT_AXE_CORE";

/// The rule sets an audit runs: WCAG 2.0 and 2.1, levels A and AA, and axe's best practices.
const AUDITED_TAGS: [&str; 5] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"];

/// The bound on one audit or one DevTools command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A rule of axe-core that a page breaks, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// axe's id of the rule, e.g. `color-contrast`.
    pub rule: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    /// What the rule asks for, in a sentence.
    pub help: String,
    /// Each offending element: its CSS selector, its markup and what is wrong with it.
    pub elements: Vec<String>,
}

impl Violation {
    /// Whether it keeps some people from using the page: axe's `serious` and `critical`.
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_str(), "serious" | "critical")
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.rule, self.impact, self.help)?;
        for element in &self.elements {
            write!(f, "\n    {}", element.replace('\n', "\n      "))?;
        }
        Ok(())
    }
}

/// Runs axe-core on the page `browser` shows, as it is now, and returns every violation of
/// the [`AUDITED_TAGS`] rules, of any impact.
pub async fn audit(browser: &Browser) -> Vec<Violation> {
    let client = browser.client();
    let loaded = run(
        "checking for axe-core in the page",
        client.execute("return typeof window.axe === 'object';", Vec::new()),
    )
    .await;
    if loaded != Value::Bool(true) {
        // The script defines `window.axe`, which stays until the page is left.
        run(
            "putting axe-core into the page",
            client.execute(axe_core_script(), Vec::new()),
        )
        .await;
    }
    let script = r"
        const done = arguments[arguments.length - 1];
        axe.run(document, {
            runOnly: { type: 'tag', values: arguments[0] },
            resultTypes: ['violations'],
        }).then(
            results => done(results.violations.map(violation => ({
                rule: violation.id,
                impact: violation.impact || 'unknown',
                help: violation.help,
                elements: violation.nodes.map(node =>
                    node.target.join(' ') + ' ' + node.html + '\n' + node.failureSummary),
            }))),
            error => done({ error: String(error) }),
        );";
    let answer = run(
        "running axe-core",
        client.execute_async(script, vec![json!(AUDITED_TAGS)]),
    )
    .await;
    let Value::Array(violations) = answer else {
        panic!("axe-core failed: {answer}");
    };
    violations
        .iter()
        .map(|violation| {
            let text = |key: &str| violation[key].as_str().unwrap_or_default().to_owned();
            Violation {
                rule: text("rule"),
                impact: text("impact"),
                help: text("help"),
                elements: violation["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|element| element.as_str().map(str::to_owned))
                    .collect(),
            }
        })
        .collect()
}

/// axe-core's script, read once per test binary.
fn axe_core_script() -> &'static str {
    static SCRIPT: OnceLock<String> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let path = std::env::var_os(AXE_CORE_VARIABLE).map(PathBuf::from);
        match path.as_deref().map(std::fs::read_to_string) {
            Some(Ok(script)) => script,
            _ => panic!(
                "axe-core is not installed: run the tests through scripts/test, which installs \
                 the pinned version under target/tools/axe-core and sets {AXE_CORE_VARIABLE} to \
                 its axe.min.js (or set it to an axe.min.js yourself); {AXE_CORE_VARIABLE} is \
                 {path:?}"
            ),
        }
    })
}

/// What assistive technology is told about one element: Chromium's accessibility node of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessibleNode {
    /// Its role, e.g. `link`, `list`, `textbox`.
    pub role: String,
    /// Its accessible name: what a screen reader says for it (a link's or a list's, say).
    pub name: String,
    /// How changes inside it are announced, when it is a live region: `polite`, `assertive`.
    pub live: Option<String>,
}

/// The accessibility node of the first element matching `css` on the page `browser` shows;
/// panics if nothing matches.
pub async fn accessible_node(browser: &Browser, css: &str) -> AccessibleNode {
    let found = dev_tools(
        browser,
        "Runtime.evaluate",
        json!({ "expression": format!("document.querySelector({})", json!(css)) }),
    )
    .await;
    let Some(object) = found["result"]["objectId"].as_str() else {
        panic!("no element matches {css:?}");
    };
    let tree = dev_tools(
        browser,
        "Accessibility.getPartialAXTree",
        json!({ "objectId": object, "fetchRelatives": false }),
    )
    .await;
    let node = &tree["nodes"][0];
    let property = |name: &str| {
        node["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|property| property["name"] == name)
            .and_then(|property| property["value"]["value"].as_str())
            .map(str::to_owned)
    };
    let value = |key: &str| node[key]["value"].as_str().unwrap_or_default().to_owned();
    AccessibleNode {
        role: value("role"),
        name: value("name"),
        live: property("live"),
    }
}

/// Runs one DevTools protocol command in the browser's page and returns its result.
async fn dev_tools(browser: &Browser, method: &'static str, params: Value) -> Value {
    run(
        &format!("DevTools {method}"),
        browser
            .client()
            .issue_cmd(DevToolsCommand { method, params }),
    )
    .await
}

/// chromedriver's pass-through to the DevTools protocol, which WebDriver itself lacks.
#[derive(Debug)]
struct DevToolsCommand {
    method: &'static str,
    params: Value,
}

// reqwest's `Url` and `Method` are the `url` and `http` types fantoccini's trait names (and
// the `Url`'s parse error is `url`'s), so this needs neither crate as a dependency.
impl WebDriverCompatibleCommand for DevToolsCommand {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as FromStr>::Err> {
        let session = session_id.expect("a WebDriver session is open");
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({ "cmd": self.method, "params": self.params });
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// Awaits one browser command under [`COMMAND_TIMEOUT`]; panics, saying `what` it was for,
/// if it fails or takes longer.
async fn run<T>(
    what: &str,
    command: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
) -> T {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what} failed: {error}"),
        Err(_) => panic!("{what} took longer than {COMMAND_TIMEOUT:?}"),
    }
}
