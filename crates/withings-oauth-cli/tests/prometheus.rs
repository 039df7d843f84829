//! A real Prometheus scrapes two services: `withings-oauth fleet sweep --every 1s
//! --metrics-listen ...`, renewing a fleet against a sandbox whose rate limit answers 601 to a
//! burst and one of whose users revoked the app; and the web example (its application and
//! operations routers, served by the test process, whose only test this is, so that the
//! process-wide recorder is the web example's), where two users sign in, connect their Withings
//! account over HTTP, and have it refreshed. What Prometheus shows equals what the sandboxes
//! counted. Needs the `prometheus` binary (Debian's package; `.ci/test` installs it): the test
//! fails, loudly, without it.

#![cfg(feature = "sql")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use url::Url;
use withings_oauth::Client;
use withings_oauth::{Expected, TokenStore, UserId, testing};
use withings_oauth_axum::CookieKey;
use withings_oauth_sql::{SqlOptions, SqlStore};
use withings_oauth_web_example::{Config, Shared, demo_password, operations_router, router};
use withings_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sandbox, SandboxConfig, User};

const BIN: &str = env!("CARGO_BIN_EXE_withings-oauth");
/// Idle users the sweep renews.
const IDLE: u32 = 6;
/// How long the test waits for Prometheus to show the expected values.
const PATIENCE: Duration = Duration::from_secs(120);

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Prometheus on a free port of 127.0.0.1, scraping `targets` every second, with its data
/// in `dir`; returns it and its base URL.
fn start_prometheus(dir: &Path, targets: &[(&str, String)]) -> (Running, String) {
    let binary = which("prometheus").unwrap_or_else(|| {
        panic!(
            "the `prometheus` binary is not on PATH: this test needs a real Prometheus. Install Debian's package (`apt-get install prometheus`; `.ci/test` does it)"
        )
    });
    let mut config =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, target) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        ));
    }
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus starts");
    (Running(child), format!("http://127.0.0.1:{port}"))
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The value of the PromQL `query` now, if it has one.
async fn query(prometheus: &str, query: &str) -> Option<f64> {
    let mut url: url::Url = format!("{prometheus}/api/v1/query").parse().unwrap();
    url.query_pairs_mut().append_pair("query", query);
    let answer: serde_json::Value = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// Polls Prometheus until `query` has the value `expected()` has at that moment, or fails after
/// [`PATIENCE`] saying what it saw last.
async fn await_value(prometheus: &str, promql: &str, expected: impl Fn() -> f64) {
    let started = Instant::now();
    loop {
        let seen = query(prometheus, promql).await;
        if seen == Some(expected()) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "Prometheus shows {seen:?} for `{promql}`, expected {}",
            expected()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn user(i: u32) -> UserId {
    UserId::new(User::numbered(i).userid)
}

/// A browser, as far as the web example can tell: it keeps cookies and follows no redirect.
struct Visitor {
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Visitor {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::default(),
        }
    }

    /// Sends `request` with the cookies, keeps those the answer sets, and returns its status
    /// and `Location`.
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Option<Url>) {
        let cookie = {
            let cookies = self.cookies.lock().unwrap();
            cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let response = request
            .header("cookie", cookie)
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if value.is_empty() {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = response
            .headers()
            .get("location")
            .map(|l| response.url().join(l.to_str().unwrap()).unwrap());
        (response.status().as_u16(), location)
    }

    /// Signs in as the demo account `name` and connects its Withings account (the sandbox
    /// approves at once).
    async fn sign_in_and_connect(&self, base: &Url, name: &str) {
        let form = [("name", name.to_owned()), ("password", demo_password(name))];
        let (status, _) = self
            .send(self.http.post(base.join("sign-in").unwrap()).form(&form))
            .await;
        assert_eq!(status, 303, "sign-in of {name}");
        let (status, authorize) = self
            .send(self.http.post(base.join("withings/connect").unwrap()))
            .await;
        assert_eq!(status, 303, "connect of {name}");
        let (_, callback) = self.send(self.http.get(authorize.unwrap())).await;
        let (status, after) = self.send(self.http.get(callback.unwrap())).await;
        assert_eq!(
            (status, after.map(|u| u.path().to_owned())),
            (303, Some("/".to_owned()))
        );
    }

    /// Opens the home page, which shows the connected account's last weight.
    async fn home(&self, base: &Url) {
        let (status, _) = self.send(self.http.get(base.clone())).await;
        assert_eq!(status, 200);
    }
}

/// Serves the web example on 127.0.0.1 against `sandbox`, with its operations routes on another
/// port: returns the application's base URL and the operations' `host:port`.
async fn serve_web_example(sandbox: &Sandbox, database: &str) -> (Url, String) {
    let metrics = withings_oauth_axum::install_metrics_recorder().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base: Url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(base.join("callback").unwrap().as_str())
        .base_url(sandbox.base_url())
        .build()
        .unwrap();
    let shared = Shared::open(
        database,
        SqlOptions::default(),
        withings_oauth::DEFAULT_PENDING_LOGIN_TTL,
    )
    .await
    .unwrap();
    shared.users.seed_demo_accounts().await.unwrap();
    let mut config = Config::new(client, CookieKey::generate().unwrap());
    config.demo_accounts = true;
    let operations = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = operations.local_addr().unwrap().to_string();
    let ops = operations_router(metrics, shared.clone());
    tokio::spawn(async move { axum::serve(operations, ops).await });
    let app = router(config, shared);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_shows_the_logins_refreshes_and_601s_the_sandboxes_counted() {
    // Four requests in any three seconds: the first pass's burst of six refreshes draws 601s.
    let sandbox = Sandbox::start(
        SandboxConfig::default()
            .seed_users(IDLE + 1)
            .rate_limit(Some(4))
            .rate_limit_window(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    for i in 1..=IDLE {
        let login = common::issued_login(&sandbox, user(i), Utc::now() - TimeDelta::days(40));
        store.save(user(i), &login, Expected::Absent).await.unwrap();
    }
    // A user who revoked the app: Withings no longer knows the refresh token.
    let revoked = user(IDLE + 1);
    let login = testing::credentials(
        revoked,
        "revoked-access",
        "revoked-refresh",
        Utc::now() - TimeDelta::days(40),
    );
    store.save(revoked, &login, Expected::Absent).await.unwrap();
    store.close().await;

    let home = dir.path().join("home");
    let mut service = Command::new(BIN)
        .args(["fleet", "sweep", "--every", "1s", "--idle-after", "1d"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("WITHINGS_CLIENT_ID", DEFAULT_CLIENT_ID)
        .env("WITHINGS_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        .env(
            "WITHINGS_REDIRECT_URI",
            "https://app.example.com/withings/callback",
        )
        .env("WITHINGS_BASE_URL", sandbox.base_url().as_str())
        .env("WITHINGS_STORE", &url)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("sweep.log")).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(service.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let service = Running(service);
    let metrics = first
        .trim()
        .strip_prefix("metrics at ")
        .unwrap_or_else(|| panic!("the service said {first:?}"))
        .parse::<url::Url>()
        .unwrap();
    let target = format!("127.0.0.1:{}", metrics.port().unwrap());
    let health = reqwest::get(metrics.join("/readyz").unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "{}", health.text().await.unwrap());

    // The web example, on a sandbox of its own without a rate limit.
    let web_sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let web_database = format!("sqlite://{}", dir.path().join("web.db").display());
    let (web, web_target) = serve_web_example(&web_sandbox, &web_database).await;
    let ready = reqwest::get(format!("http://{web_target}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let (prometheus, api) = start_prometheus(dir.path(), &[("sweep", target), ("web", web_target)]);
    await_value(&api, "up{job=\"sweep\"}", || 1.0).await;
    await_value(&api, "up{job=\"web\"}", || 1.0).await;

    // Two users connect the (auto-approved) Withings account and see their weight; then the
    // sandbox's clock jumps past the access token's life: the next page load's data call is
    // refused, and the session refreshes once and calls again.
    let (alice, bob) = (Visitor::new(), Visitor::new());
    alice.sign_in_and_connect(&web, "alice").await;
    bob.sign_in_and_connect(&web, "bob").await;
    alice.home(&web).await;
    web_sandbox
        .handle()
        .advance_clock(Duration::from_secs(4 * 3600));
    alice.home(&web).await;
    bob.home(&web).await;
    let web_counters = || web_sandbox.handle().counters();
    assert_eq!(web_counters().code_granted, 2);
    assert_eq!(web_counters().refresh_granted, 1);
    await_value(
        &api,
        "sum(withings_oauth_logins_total{job=\"web\",outcome=\"ok\"})",
        || web_counters().code_granted as f64,
    )
    .await;
    await_value(
        &api,
        "sum(withings_oauth_pending_logins_total{job=\"web\",event=\"parked\"})",
        || 2.0,
    )
    .await;
    await_value(
        &api,
        "sum(withings_oauth_pending_logins_total{job=\"web\",event=\"taken\"})",
        || 2.0,
    )
    .await;
    await_value(
        &api,
        "sum(withings_oauth_refreshes_total{job=\"web\",outcome=\"ok\"})",
        || web_counters().refresh_granted as f64,
    )
    .await;
    await_value(
        &api,
        "sum(withings_oauth_api_answers_total{job=\"web\",call=\"data\",class=\"ok\"})",
        || web_counters().data_served as f64,
    )
    .await;
    await_value(
        &api,
        "sum(withings_oauth_api_answers_total{job=\"web\",call=\"data\",class=\"authentication_failed\"})",
        || web_counters().data_rejected as f64,
    )
    .await;

    let counters = || sandbox.handle().counters();
    // Every idle user renewed at last, each once: the 601s delayed them, the sweep went on.
    await_value(
        &api,
        "sum(withings_oauth_refreshes_total{job=\"sweep\",outcome=\"ok\"})",
        || IDLE as f64,
    )
    .await;
    assert_eq!(counters().refresh_granted, u64::from(IDLE));
    await_value(
        &api,
        "sum(withings_oauth_refreshes_total{job=\"sweep\",outcome=\"ok\"})",
        || counters().refresh_granted as f64,
    )
    .await;
    assert!(counters().rate_limited > 0, "the burst drew no 601");
    await_value(
        &api,
        "sum(withings_oauth_api_answers_total{job=\"sweep\",class=\"rate_limited\"})",
        || counters().rate_limited as f64,
    )
    .await;
    await_value(
        &api,
        "sum(withings_oauth_refreshes_total{job=\"sweep\",outcome=\"rate_limited\"})",
        || counters().rate_limited as f64,
    )
    .await;
    await_value(
        &api,
        "sum(withings_oauth_refreshes_total{job=\"sweep\",outcome=\"invalid_refresh_token\"})",
        || counters().refresh_rejected as f64,
    )
    .await;
    assert_eq!(counters().refresh_rejected, 1);
    await_value(
        &api,
        "withings_oauth_fleet_users{state=\"login_required\"}",
        || 1.0,
    )
    .await;
    await_value(&api, "withings_oauth_fleet_users{state=\"fresh\"}", || {
        IDLE as f64
    })
    .await;
    await_value(
        &api,
        "sum(withings_oauth_api_answers_total{job=\"sweep\",call=\"token\"})",
        || {
            let c = counters();
            (c.refresh_granted + c.refresh_rejected + c.rate_limited) as f64
        },
    )
    .await;
    assert!(
        query(&api, "withings_oauth_fleet_sweeps_total{job=\"sweep\"}")
            .await
            .unwrap()
            >= 2.0
    );

    // SIGTERM: the service stops cleanly, with success.
    let mut service = service;
    let pid = service.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = service.0.wait().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(dir.path().join("sweep.log")).unwrap()
    );
    drop(prometheus);
    sandbox.shutdown().await;
    web_sandbox.shutdown().await;
}
