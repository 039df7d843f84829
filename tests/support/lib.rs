//! Shared helpers for the end-to-end tests.
//!
//! - [`start_sandbox`], [`client`]: a sandbox on 127.0.0.1 and a client configured for it.
//! - [`start_login`]: a login through `LoopbackAgent` on its own task, and its authorize URL.
//! - [`follow_authorize`]: plays a browser against an auto-approving sandbox.
//! - [`getmeas_status`]: whether the sandbox accepts an access token.
//! - [`query_param`]: one parameter of a URL.
//! - [`Browser`]: headless Chromium driven through chromedriver (WebDriver), for tests that need a
//!   real browser. It fails the test, with what to install, when Chromium is missing.
//! - [`web_example`]: the web example's pages in a [`Browser`].

pub mod web_example;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;
use withings_oauth::LoopbackAgent;
use withings_oauth::{AccessToken, Authorized, Client, Error, Scopes, ScriptedAgent, authorize};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sandbox, SandboxConfig, SandboxHandle,
};

/// What to run when the browser tests' programs are missing.
pub const BROWSER_SETUP_HINT: &str =
    "run `bash .ci/test`, which installs the Debian packages chromium and chromium-driver";

/// Starts a sandbox with `config`, panicking with the reason if it can't.
pub async fn start_sandbox(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config)
        .await
        .expect("the sandbox starts on 127.0.0.1")
}

/// A client of the sandbox's default app with `redirect_uri`, secret authentication.
pub fn client(sandbox: &Sandbox, redirect_uri: &str) -> Client {
    Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(redirect_uri)
        .base_url(sandbox.base_url())
        .build()
        .expect("a valid client configuration")
}

/// Starts a login for `scopes` through `LoopbackAgent` (no browser opened, redirect URI
/// `http://127.0.0.1:0/callback`, `timeout`) on its own task; returns the task and the authorize
/// URL the agent showed. Aborting the task drops the login, as an application giving up would.
pub async fn start_login(
    sandbox: &Sandbox,
    scopes: Scopes,
    timeout: Duration,
) -> (JoinHandle<Result<Authorized, Error>>, Url) {
    let client = client(sandbox, "http://127.0.0.1:0/callback");
    let (urls, mut authorize_urls) = mpsc::unbounded_channel::<Url>();
    let agent = LoopbackAgent::new()
        .open_browser(false)
        .timeout(timeout)
        .on_authorize_url(move |url| {
            let _ = urls.send(url.clone());
        });
    let login = tokio::spawn(async move { authorize(&client, scopes, &agent).await });
    let authorize_url = tokio::time::timeout(Duration::from_secs(10), authorize_urls.recv())
        .await
        .expect("the agent shows the authorize URL at once")
        .expect("an authorize URL");
    (login, authorize_url)
}

/// Plays the browser: follows the sandbox's auto-approve redirect and returns its target,
/// after `delay` of sandbox time (to test the code's lifetime).
pub fn scripted_browser(handle: Option<(SandboxHandle, Duration)>) -> ScriptedAgent {
    ScriptedAgent::new().then_async(move |authorize_url: Url| async move {
        let callback = follow_authorize(&authorize_url).await;
        if let Some((handle, delay)) = handle {
            handle.advance_clock(delay);
        }
        Ok(callback)
    })
}

/// Requests `authorize_url` from an auto-approving sandbox without following the redirect, and
/// returns where it redirects to: the callback URL with `code` (or `error`) and `state`.
pub async fn follow_authorize(authorize_url: &Url) -> Url {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let response = http
        .get(authorize_url.clone())
        .send()
        .await
        .expect("the authorize page answers");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::FOUND,
        "the sandbox redirects at once only with auto_approve(true)"
    );
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location header");
    Url::parse(location).expect("an absolute callback URL")
}

/// `POST /measure` with `action=getmeas` and the bearer `access_token`; returns the envelope's
/// `status` (0 when the sandbox accepts the token).
pub async fn getmeas_status(sandbox: &Sandbox, access_token: &AccessToken) -> i64 {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(sandbox.api_url().join("measure").expect("a measure URL"))
        .bearer_auth(access_token.expose_secret())
        .form(&[("action", "getmeas")])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the measure endpoint answers")
        .json()
        .await
        .expect("a JSON envelope");
    answer["status"].as_i64().expect("a numeric status")
}

/// The value of query parameter `name` in `url`, if present.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Headless Chromium under chromedriver, driven through WebDriver ([`fantoccini`]).
///
/// [`Browser::start`] runs chromedriver on a free port of 127.0.0.1, with a fresh profile
/// directory. Dropping the value, even in a panicking test, ends the WebDriver session (Chromium
/// quits) and kills chromedriver by its pid; [`Browser::close`] does the same without blocking.
///
/// The programs are found on `PATH` (`chromium`, `chromedriver`) or through the environment
/// variables `CHROMIUM` and `CHROMEDRIVER`.
pub struct Browser {
    webdriver: fantoccini::Client,
    driver: DriverProcess,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    ///
    /// # Panics
    /// When Chromium or chromedriver is missing or does not start, with a message that says
    /// what to install: a browser test must fail, not pass, when it could not run.
    pub async fn start() -> Browser {
        let chromium = find_program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let chromedriver = find_program("CHROMEDRIVER", &["chromedriver"]);
        let (chromium, chromedriver) = match (chromium, chromedriver) {
            (Some(c), Some(d)) => (c, d),
            (c, d) => panic!(
                "the browser tests need Chromium and chromedriver (found chromium: {}, chromedriver: {}): {BROWSER_SETUP_HINT}",
                c.is_some(),
                d.is_some()
            ),
        };
        let port = withings_oauth::testing::free_port();
        let mut command = tokio::process::Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "chromedriver ({}) did not start: {e}; {BROWSER_SETUP_HINT}",
                chromedriver.display()
            )
        });
        let mut driver = DriverProcess {
            child,
            port,
            session: None,
        };
        let webdriver_url = format!("http://127.0.0.1:{port}");
        wait_until_ready(&webdriver_url).await;

        let profile = tempfile::tempdir().expect("a temporary profile directory");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let webdriver = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&webdriver_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver could not start Chromium ({}): {e}; {BROWSER_SETUP_HINT}",
                chromium.display()
            )
        });
        driver.session = webdriver.session_id().await.ok().flatten();
        Browser {
            webdriver,
            driver,
            _profile: profile,
        }
    }

    /// The WebDriver session.
    pub fn webdriver(&self) -> &fantoccini::Client {
        &self.webdriver
    }

    /// Ends the WebDriver session (Chromium quits), then stops chromedriver.
    pub async fn close(mut self) {
        let closed =
            tokio::time::timeout(Duration::from_secs(10), self.webdriver.clone().close()).await;
        if matches!(closed, Ok(Ok(()))) {
            self.driver.session = None;
        }
    }
}

/// chromedriver; dropping it ends the browser session, then kills chromedriver.
struct DriverProcess {
    child: tokio::process::Child,
    port: u16,
    session: Option<String>,
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        // Drop can't await: end the session with a blocking request, so chromedriver quits
        // Chromium (a killed chromedriver would leave it running), then kill chromedriver itself,
        // by its pid.
        if let Some(session) = &self.session {
            delete_session(self.port, session);
        }
        let _ = self.child.start_kill();
    }
}

/// `DELETE /session/{id}` on chromedriver, over a plain blocking socket, bounded to 10 s.
fn delete_session(port: u16, session: &str) {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    }
}

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    names.iter().find_map(|name| {
        dirs.iter()
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Polls chromedriver's `/status` until it answers, for up to 20 seconds.
async fn wait_until_ready(webdriver_url: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let started = Instant::now();
    for _ in 0..200 {
        if let Ok(response) = http.get(format!("{webdriver_url}/status")).send().await
            && response.status().is_success()
        {
            return;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {webdriver_url} within 20 s; {BROWSER_SETUP_HINT}");
}

/// The repository README's example, compiled as a doc test so it can't rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct RepositoryReadmeExample;
