//! The `withings-oauth` binary end to end, against a sandbox started by each test on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::assert::OutputAssertExt;
use predicates::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use withings_oauth::{Credentials, Expected};
use withings_oauth::{StoredEntry, TokenStore};
use withings_oauth_store::FileStore;
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEMO_USERID, Endpoint, Fault, HTTPS_CALLBACK,
    SEEDED_EMAIL, SEEDED_PASSWORD, SEEDED_USERID, Sandbox, SandboxConfig, TokenKind,
};

const BIN: &str = env!("CARGO_BIN_EXE_withings-oauth");

/// A sandbox, a scratch home and a store path that belong to one test.
struct World {
    sandbox: Sandbox,
    home: tempfile::TempDir,
    http: reqwest::Client,
}

impl World {
    async fn start() -> Self {
        Self::start_with(SandboxConfig::default()).await
    }

    async fn start_with(config: SandboxConfig) -> Self {
        let sandbox = Sandbox::start(config.auto_approve(true))
            .await
            .expect("sandbox starts");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        World {
            sandbox,
            home: tempfile::tempdir().unwrap(),
            http,
        }
    }

    fn store_path(&self) -> PathBuf {
        self.home.path().join("store").join("credentials.json")
    }

    /// The binary with a configuration pointing at the sandbox, and nothing from the real
    /// environment (home, config, store).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env("WITHINGS_CLIENT_ID", DEFAULT_CLIENT_ID)
            .env("WITHINGS_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
            .env("WITHINGS_REDIRECT_URI", HTTPS_CALLBACK)
            .env("WITHINGS_BASE_URL", self.sandbox.base_url().as_str())
            .env("WITHINGS_STORE", self.store_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(self.command(args)).await
    }

    async fn run_with(&self, mut cmd: Command) -> Output {
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("the command finishes within a minute")
            .expect("the binary runs")
    }

    /// `login --agent paste`, playing the user: read the authorize URL from stderr, open it on
    /// the auto-approving sandbox, paste the address it redirects to.
    async fn login_paste(&self, extra: &[&str]) -> Output {
        let mut args = vec!["login", "--agent", "paste"];
        args.extend_from_slice(extra);
        self.login_interactive(self.command(&args), Deliver::Paste)
            .await
    }

    /// Runs a login command, opens the authorize URL it prints on the auto-approving sandbox
    /// and brings the callback back as `deliver` says.
    async fn login_interactive(&self, mut cmd: Command, deliver: Deliver) -> Output {
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let authorize = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
                .await
                .expect("the login prints the authorize URL")
                .unwrap()
                .unwrap_or_else(|| panic!("stderr ended before an authorize URL: {seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if let Some(start) = line.find("http") {
                let candidate = line[start..].trim();
                if candidate.contains("/oauth2_user/authorize2") {
                    break url::Url::parse(candidate).unwrap();
                }
            }
        };
        let response = match &deliver {
            Deliver::PasteAfterForm(answers) => {
                // The consent form, submitted as the page would: the authorize parameters,
                // then what the user chose.
                let mut form: Vec<(String, String)> =
                    authorize.query_pairs().into_owned().collect();
                form.push(("scopes_chosen".into(), "1".into()));
                form.push(("email".into(), SEEDED_EMAIL.into()));
                form.push(("password".into(), SEEDED_PASSWORD.into()));
                form.extend(answers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                let mut target = authorize.clone();
                target.set_query(None);
                self.http.post(target).form(&form).send().await.unwrap()
            }
            _ => self.http.get(authorize).send().await.unwrap(),
        };
        assert_eq!(response.status(), 302);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        match deliver {
            Deliver::Paste | Deliver::PasteAfterForm(_) => {
                stdin
                    .write_all(format!("{location}\n").as_bytes())
                    .await
                    .unwrap();
                drop(stdin);
            }
            Deliver::Visit => {
                // What the browser does next: follow the redirect to the CLI's listener.
                let page = self.http.get(location).send().await.unwrap();
                assert_eq!(page.status(), 200);
            }
        }
        let mut rest = String::new();
        while let Some(line) = stderr.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
        }
        let mut output = finish(child).await;
        output.stderr = format!("{seen}{rest}").into_bytes();
        output
    }

    /// Runs `args`, which must succeed, print each of `shows` on stdout, and show no token.
    async fn succeeds(&self, args: &[&str], shows: &[&str]) {
        let out = self.run(args).await;
        assert_no_secret(&out, &self.live_tokens());
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        for shown in shows {
            assert!(stdout.contains(shown), "{shown:?} not in: {stdout}");
        }
    }

    /// A login of the seeded user that succeeded and showed no token.
    fn assert_logged_in(&self, login: &Output) {
        assert_no_secret(login, &self.live_tokens());
        login
            .clone()
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "Logged in user {SEEDED_USERID}"
            )));
    }

    fn live_tokens(&self) -> Vec<String> {
        self.sandbox
            .handle()
            .live_tokens()
            .into_iter()
            .map(|t| t.token)
            .collect()
    }

    /// Withings' `status` for `getmeas` with `token`.
    async fn measure_status(&self, token: &str) -> i64 {
        let body: serde_json::Value = self
            .http
            .post(self.sandbox.api_url().join("measure").unwrap())
            .bearer_auth(token)
            .form(&[("action", "getmeas")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["status"].as_i64().unwrap()
    }

    async fn token(&self) -> String {
        self.token_with(&["token"]).await
    }

    /// `token` with `args`: the one line it prints.
    async fn token_with(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let out = out.assert().success().get_output().clone();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines().count(),
            1,
            "only the token on stdout: {text:?}"
        );
        text.trim().to_owned()
    }
}

/// How the test brings the callback back to the CLI.
enum Deliver {
    /// Types it on stdin.
    Paste,
    /// Visits it, as the browser would (loopback listener).
    Visit,
    /// Submits the consent form with these fields instead of relying on auto-approve, then
    /// types the callback on stdin.
    PasteAfterForm(&'static [(&'static str, &'static str)]),
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Checks a failed command: its exit code, and that stderr says each of `says`.
fn assert_fails(output: &Output, code: i32, says: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
    for said in says {
        assert!(stderr.contains(said), "{said:?} not in stderr: {stderr}");
    }
}

/// [`assert_fails`], and nothing on stdout: a script's `$(withings-oauth token)` gets no
/// half-answer.
fn assert_fails_quietly(output: &Output, code: i32, says: &[&str]) {
    assert_fails(output, code, says);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "",
        "{}",
        text(output)
    );
}

/// Waits for `child`, at most a minute.
async fn finish(child: Child) -> Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the command finishes within a minute")
        .unwrap()
}

fn assert_no_secret(output: &Output, secrets: &[String]) {
    let all = text(output);
    for secret in secrets {
        assert!(!all.contains(secret.as_str()), "a token leaked into: {all}");
    }
}

/// Sets every stored access token's expiry an hour in the past, as if the machine slept.
async fn age_store(path: &Path) {
    let store = FileStore::open(path).unwrap();
    for user in store.users().await.unwrap() {
        let Some(entry) = store.load(user).await.unwrap() else {
            continue;
        };
        if let StoredEntry::Credentials(credentials) = entry.entry {
            let mut stored = credentials.reveal_for_storage();
            stored.expires_at = chrono::Utc::now() - chrono::TimeDelta::hours(1);
            let aged = Credentials::from_stored(stored).unwrap();
            store
                .save(user, &aged, Expected::Version(entry.version))
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_every_step_offline_and_prints_no_secret() {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(BIN)
            .arg("demo")
            .env_remove("WITHINGS_CLIENT_ID")
            .env_remove("WITHINGS_STORE")
            .output(),
    )
    .await
    .expect("the demo finishes")
    .unwrap();
    let all = text(&output);
    output.assert().success();
    for step in 1..=7 {
        assert!(
            all.contains(&format!("[{step}/7]")),
            "step {step} missing: {all}"
        );
    }
    for needle in [
        "Logged in user 1001",
        "20 measure groups (one page",
        "Sleep summaries of the last week: 7 nights; the last one",
        "the access token changed",
        "Users left in the store: 0",
        "status 401",
        "[redacted, 40 chars]",
        "state=[redacted]",
    ] {
        assert!(all.contains(needle), "{needle:?} missing: {all}");
    }
    assert!(!all.contains(DEFAULT_CLIENT_SECRET), "{all}");
    // The demo's sandbox lives in the demo's process, so its tokens can't be listed here:
    // instead, no token-, code- or state-shaped word may appear (they are 40 hex digits or
    // 43 base64url characters; nothing the demo prints legitimately is 20 such characters
    // with a digit).
    let mut run = String::new();
    for c in all.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            run.push(c);
            continue;
        }
        assert!(
            run.len() < 20 || !run.chars().any(|c| c.is_ascii_digit()),
            "secret-shaped word {run:?} in: {all}"
        );
        run.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paste_login_then_status_token_refresh_revoke() {
    let w = World::start().await;

    let login = w.login_paste(&["--scope", "user.metrics,user.info"]).await;
    w.assert_logged_in(&login);
    login
        .assert()
        .stdout(predicate::str::contains("user.metrics"));

    w.succeeds(
        &["status"],
        &[
            &format!("user {SEEDED_USERID}"),
            "user.metrics",
            "valid until",
        ],
    )
    .await;

    let first = w.token().await;
    assert_eq!(w.measure_status(&first).await, 0);
    assert_eq!(
        w.token().await,
        first,
        "a fresh token is not refreshed again"
    );

    w.succeeds(&["refresh"], &[]).await;
    let second = w.token().await;
    assert_ne!(second, first);
    assert_eq!(w.measure_status(&second).await, 0);

    w.run(&["revoke"]).await.assert().success();
    assert_eq!(w.measure_status(&second).await, 401, "revoked at Withings");
    assert_fails_quietly(&w.run(&["token"]).await, 3, &["withings-oauth login"]);
}

/// `withings-oauth token | head -c 0`: the reader closes stdout before anything is written.
/// The command stops quietly with exit code 0 (not a panic and 101), and what it did is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_a_command_quietly() {
    let w = World::start().await;
    w.login_paste(&[]).await.assert().success();
    age_store(&w.store_path()).await;
    for args in [&["token"][..], &["status"], &["refresh"]] {
        let mut child = w.command(args).spawn().unwrap();
        drop(child.stdout.take());
        let out = finish(child).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
    // `token` refreshed and saved the expired pair although nobody read the token, and
    // `refresh` rotated it once more.
    let refreshes = w.sandbox.handle().counters().token_refresh;
    assert_eq!(refreshes, 2);
    let token = w.token().await;
    assert_eq!(w.measure_status(&token).await, 0);
    assert_eq!(w.sandbox.handle().counters().token_refresh, refreshes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_whose_reader_leaves_stops_quietly() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .env_remove("WITHINGS_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().unwrap_or_default();
    assert!(first.starts_with("withings-oauth demo"), "{first}");
    drop(stdout);
    let out = finish(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_id_names_the_variable() {
    let w = World::start().await;
    let mut cmd = w.command(&["login", "--agent", "paste"]);
    cmd.env_remove("WITHINGS_CLIENT_ID");
    assert_fails(
        &w.run_with(cmd).await,
        2,
        &["WITHINGS_CLIENT_ID", "--client-id"],
    );
    assert_eq!(w.sandbox.handle().counters().authorize_page, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_named_and_left_alone() {
    let w = World::start().await;
    let path = w.store_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let garbage = b"{\"format\":1,\"users\":{\"1001\": trunc";
    std::fs::write(&path, garbage).unwrap();
    set_mode(&path, 0o600);

    for args in [&["token"][..], &["status"], &["refresh"], &["logout"]] {
        assert_fails(
            &w.run(args).await,
            5,
            &[&path.display().to_string(), "fix or delete it"],
        );
    }
    // A login would be lost after the user went through it: it does not start.
    let out = w.run(&["login", "--agent", "paste"]).await;
    out.assert().code(5);
    assert_eq!(w.sandbox.handle().counters().authorize_page, 0);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is not modified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_revoked_elsewhere_must_log_in_again() {
    let w = World::start().await;
    w.login_paste(&[]).await.assert().success();
    // Another copy of the credentials (another machine) revokes the access.
    let copy = std::fs::read(w.store_path()).unwrap();
    w.run(&["revoke"]).await.assert().success();
    std::fs::write(w.store_path(), copy).unwrap();

    assert_fails(&w.run(&["refresh"]).await, 3, &["withings-oauth login"]);
    // Recorded in the store: no need to ask Withings again.
    let refreshes = w.sandbox.handle().counters().token_refresh;
    let refused = "Withings refused the refresh token";
    w.run(&["status"])
        .await
        .assert()
        .code(3)
        .stdout(predicate::str::contains(format!(
            "login required: {refused}"
        )));
    // `token` says it in the same words.
    assert_fails_quietly(
        &w.run(&["token"]).await,
        3,
        &["withings-oauth login", refused],
    );
    assert_eq!(w.sandbox.handle().counters().token_refresh, refreshes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_others_can_read_is_refused() {
    let w = World::start().await;
    w.login_paste(&[]).await.assert().success();
    set_mode(&w.store_path(), 0o644);
    assert_fails_quietly(&w.run(&["token"]).await, 5, &["chmod 600"]);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_users_need_user_and_each_gets_its_own_token() {
    let w = World::start().await;
    w.login_paste(&[]).await.assert().success();
    w.login_paste(&["--demo"])
        .await
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("user {DEMO_USERID}")));

    assert_fails_quietly(
        &w.run(&["token"]).await,
        2,
        &[
            "--user",
            &SEEDED_USERID.to_string(),
            &DEMO_USERID.to_string(),
        ],
    );

    let mut tokens = Vec::new();
    for user in [SEEDED_USERID, DEMO_USERID] {
        tokens.push(w.token_with(&["--user", &user.to_string(), "token"]).await);
    }
    let live = w.sandbox.handle().live_tokens();
    for (user, token) in [SEEDED_USERID, DEMO_USERID].into_iter().zip(&tokens) {
        let info = live
            .iter()
            .find(|t| &t.token == token)
            .expect("a live token");
        assert_eq!((info.userid, info.kind), (user, TokenKind::Access));
    }

    let users = [SEEDED_USERID, DEMO_USERID].map(|u| format!("user {u}"));
    w.succeeds(&["status"], &[&users[0], &users[1]]).await;

    w.run(&["logout", "--user", "999999"])
        .await
        .assert()
        .success();
    assert_eq!(w.token().await, tokens[0], "one user left: implicit");
}

/// Kills the CLI while Withings has rotated the tokens but its answer has not arrived: the
/// stored pair must still get a valid token afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_a_refresh_loses_nothing() {
    let w = World::start().await;
    w.login_paste(&[]).await.assert().success();
    let handle = w.sandbox.handle();
    // The access token expires for both sides: the sandbox's clock and the stored expiry.
    handle.advance_clock(Duration::from_secs(4 * 3600));
    age_store(&w.store_path()).await;
    let before = std::fs::read(w.store_path()).unwrap();

    handle.inject_fault(Endpoint::Token, Fault::Delay(Duration::from_secs(30)), 1);
    let mut child: Child = w.command(&["token"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.counters().token_refresh == 0 {
        assert!(
            Instant::now() < deadline,
            "the refresh never reached the sandbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    assert_eq!(
        std::fs::read(w.store_path()).unwrap(),
        before,
        "store untouched"
    );

    let token = w.token().await;
    assert_eq!(w.measure_status(&token).await, 0);
    assert_eq!(handle.counters().token_refresh, 2);
    assert_eq!(w.token().await, token, "the new pair was saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_catches_the_redirect_on_a_loopback_listener() {
    let w = World::start().await;
    for agent in ["browser", "auto"] {
        let mut cmd = w.command(&["login", "--agent", agent, "--no-browser"]);
        cmd.env("WITHINGS_REDIRECT_URI", "http://127.0.0.1:0/callback");
        w.assert_logged_in(&w.login_interactive(cmd, Deliver::Visit).await);
    }
    let token = w.token().await;
    assert_eq!(w.measure_status(&token).await, 0);
}

/// Writes a `BROWSER` program into `dir` that saves the address it is given to `opened`, as a
/// browser would show it, and exits.
fn browser_program(dir: &Path, opened: &Path) -> PathBuf {
    let program = dir.join("browser");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" > '{}'\n",
            opened.display()
        ),
    )
    .unwrap();
    set_mode(&program, 0o755);
    program
}

/// Waits for the `BROWSER` program to have written the address it was given.
async fn opened_address(opened: &Path) -> url::Url {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(opened)
            && text.ends_with('\n')
        {
            return url::Url::parse(text.trim()).unwrap();
        }
        assert!(Instant::now() < deadline, "the browser was never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_login_shows_the_state_only_when_the_address_must_be_copied() {
    let w = World::start().await;
    let opened = w.home.path().join("opened");
    let login = |browser: &Path| {
        let mut cmd = w.command(&["login", "--agent", "browser"]);
        cmd.env("WITHINGS_REDIRECT_URI", "http://127.0.0.1:0/callback")
            .env("BROWSER", browser);
        cmd
    };

    // The browser opens: it gets a one-time link, and the terminal shows no URL with the state.
    let child = login(&browser_program(w.home.path(), &opened))
        .spawn()
        .unwrap();
    let start = opened_address(&opened).await;
    assert!(
        start.query().is_none_or(|q| !q.contains("state=")),
        "{start}"
    );
    // Play the browser: the start link, the sandbox's page (auto-approve), the listener.
    let mut next = start;
    let mut state = None;
    for _ in 0..3 {
        let response = w.http.get(next.clone()).send().await.unwrap();
        let Some(location) = response.headers().get("location") else {
            assert_eq!(response.status(), 200);
            break;
        };
        next = next.join(location.to_str().unwrap()).unwrap();
        if let Some((_, s)) = next.query_pairs().find(|(k, _)| k == "state") {
            state = Some(s.into_owned());
        }
    }
    let state = state.expect("the login went through an authorize URL with a state");
    let out = finish(child).await;
    w.assert_logged_in(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(&state), "the state was shown: {stderr}");
    assert!(
        !stderr.contains("authorize2"),
        "the authorize URL was shown: {stderr}"
    );

    // No browser can be opened: the address is shown, since the user must copy it.
    let mut cmd = login(&w.home.path().join("no-such-browser"));
    cmd.env("PATH", "/nonexistent").arg("--timeout").arg("1");
    let out = w.run_with(cmd).await;
    assert_fails(&out, 1, &["/oauth2_user/authorize2?", "state="]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_work_says_what_to_use_instead() {
    let w = World::start().await;
    // The https callback can't be caught by a local listener.
    assert_fails(
        &w.run(&["login", "--agent", "browser"]).await,
        2,
        &["loopback redirect URI", "--agent paste"],
    );
    if !cfg!(feature = "webview") {
        assert_fails(
            &w.run(&["login", "--agent", "webview"]).await,
            2,
            &["--features webview"],
        );
    }
    assert_eq!(w.sandbox.handle().counters().authorize_page, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_login_ended_without_an_address_fails_cleanly() {
    let w = World::start().await;
    // stdin is closed at once: the user pressed Ctrl-D.
    assert_fails(&w.run(&["login", "--agent", "paste"]).await, 1, &["login"]);
    assert!(!w.store_path().exists(), "nothing saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_withings_keeps_the_stored_login() {
    let w = World::start().await;
    w.login_paste(&[]).await.assert().success();
    age_store(&w.store_path()).await;
    let before = std::fs::read(w.store_path()).unwrap();

    w.sandbox
        .handle()
        .inject_fault(Endpoint::Token, Fault::Http500, 1);
    assert_fails_quietly(&w.run(&["token"]).await, 4, &["retry"]);
    assert_eq!(std::fs::read(w.store_path()).unwrap(), before);

    // Nothing listens there any more: a connection failure.
    let mut cmd = w.command(&["refresh"]);
    cmd.env("WITHINGS_BASE_URL", "http://127.0.0.1:9/");
    w.run_with(cmd).await.assert().code(4);

    let token = w.token().await;
    assert_eq!(w.measure_status(&token).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_refresh_once() {
    let w = World::start().await;
    w.login_paste(&[]).await.assert().success();
    age_store(&w.store_path()).await;
    // Slow enough that the second process arrives during the first one's refresh.
    w.sandbox
        .handle()
        .inject_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(500)), 1);
    let (a, b) = tokio::join!(w.run(&["token"]), w.run(&["token"]));
    let a = a.assert().success().get_output().stdout.clone();
    let b = b.assert().success().get_output().stdout.clone();
    assert_eq!(a, b, "both got the one refreshed token");
    assert_eq!(w.sandbox.handle().counters().token_refresh, 1);
    let token = String::from_utf8(a).unwrap();
    assert_eq!(w.measure_status(token.trim()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_is_never_shown() {
    let w = World::start().await;
    for args in [&["--help"][..], &["login", "--help"], &["status"]] {
        let out = w.run(args).await;
        assert!(
            !text(&out).contains(DEFAULT_CLIENT_SECRET),
            "{args:?}: {}",
            text(&out)
        );
    }
    // A config file is read too: the secret there is not echoed when the file is invalid, not
    // even when it is a number (toml's own message would quote it).
    let config = w.home.path().join("config.toml");
    for (contents, secret, line) in [
        (
            format!("client_secret = \"{DEFAULT_CLIENT_SECRET}\"\nbogus = 1\n"),
            DEFAULT_CLIENT_SECRET,
            "line 2",
        ),
        (
            "client_id = \"x\"\nclient_secret = 12345678\n".to_owned(),
            "12345678",
            "line 2 (`client_secret`)",
        ),
    ] {
        std::fs::write(&config, contents).unwrap();
        let mut cmd = w.command(&["login"]);
        cmd.env_remove("WITHINGS_CLIENT_SECRET")
            .env("WITHINGS_CONFIG", &config);
        let out = w.run_with(cmd).await;
        assert!(!text(&out).contains(secret), "{}", text(&out));
        assert_fails(&out, 2, &[&config.display().to_string(), line]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_does_not_show_the_store_url_or_its_password() {
    let w = World::start().await;
    for args in [&["--help"][..], &["status", "--help"]] {
        let mut cmd = w.command(args);
        cmd.env(
            "WITHINGS_STORE",
            "postgres://app:s3cret-pw@db.internal/withings",
        );
        let out = w.run_with(cmd).await;
        let shown = text(&out);
        assert!(shown.contains("WITHINGS_STORE"), "{args:?}: {shown}");
        assert!(!shown.contains("s3cret-pw"), "{args:?}: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_the_config_file_when_not_in_the_environment() {
    let w = World::start().await;
    let config = w
        .home
        .path()
        .join("config")
        .join("withings-oauth")
        .join("config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "client_id = \"{DEFAULT_CLIENT_ID}\"\nclient_secret = \"{DEFAULT_CLIENT_SECRET}\"\nredirect_uri = \"{HTTPS_CALLBACK}\"\n"
        ),
    )
    .unwrap();
    set_mode(&config, 0o600);
    // The default config path (XDG_CONFIG_HOME) is found; the environment no longer says.
    let from_file_only = |args: &[&str]| {
        let mut cmd = w.command(args);
        cmd.env_remove("WITHINGS_CLIENT_ID")
            .env_remove("WITHINGS_CLIENT_SECRET")
            .env_remove("WITHINGS_REDIRECT_URI");
        cmd
    };
    w.login_interactive(
        from_file_only(&["login", "--agent", "paste"]),
        Deliver::Paste,
    )
    .await
    .assert()
    .success()
    .stderr(predicate::str::contains("warning").not());
    w.run_with(from_file_only(&["refresh"]))
        .await
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").not());
    // A flag beats the file: a wrong client id is refused by Withings as a configuration error.
    assert_fails(
        &w.run(&["refresh", "--client-id", "not-our-app"]).await,
        2,
        &["WITHINGS_CLIENT_ID"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_others_can_read_with_the_secret_is_refused() {
    let w = World::start().await;
    let config = w.home.path().join("config.toml");
    std::fs::write(
        &config,
        format!("client_secret = \"{DEFAULT_CLIENT_SECRET}\"\n"),
    )
    .unwrap();
    for mode in [0o640, 0o604, 0o660] {
        set_mode(&config, mode);
        let mut cmd = w.command(&["login", "--agent", "paste", "--config"]);
        cmd.arg(&config).env_remove("WITHINGS_CLIENT_SECRET");
        let out = w.run_with(cmd).await;
        assert_fails_quietly(&out, 2, &[&format!("run `chmod 600 {}`", config.display())]);
        assert_no_secret(&out, &[DEFAULT_CLIENT_SECRET.to_owned()]);
    }
    assert_eq!(
        w.sandbox.handle().counters().authorize_page,
        0,
        "no login began"
    );
    assert!(!w.store_path().exists(), "nothing saved");
    // Once only its owner can read it, the file is used.
    set_mode(&config, 0o600);
    let mut cmd = w.command(&["login", "--agent", "paste", "--config"]);
    cmd.arg(&config).env_remove("WITHINGS_CLIENT_SECRET");
    w.assert_logged_in(&w.login_interactive(cmd, Deliver::Paste).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_scopes_than_asked_are_reported() {
    let w = World::start().await;
    let cmd = w.command(&[
        "login",
        "--agent",
        "paste",
        "--scope",
        "user.metrics",
        "--scope",
        "user.info",
    ]);
    let answers = &[("grant_scope", "user.metrics"), ("decision", "allow")];
    let out = w
        .login_interactive(cmd, Deliver::PasteAfterForm(answers))
        .await;
    out.assert()
        .success()
        .stdout(predicate::str::contains("with scopes user.metrics."))
        .stderr(predicate::str::contains(
            "warning: Withings did not grant user.info",
        ));
    w.run(&["status"])
        .await
        .assert()
        .success()
        .stdout(predicate::str::contains("scopes: user.metrics\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_login_saves_nothing() {
    let w = World::start().await;
    let cmd = w.command(&["login", "--agent", "paste"]);
    let out = w
        .login_interactive(cmd, Deliver::PasteAfterForm(&[("decision", "deny")]))
        .await;
    assert_fails(&out, 1, &["denied", "allow access"]);
    assert!(!w.store_path().exists());
}

/// A script calling `token` in a loop while the user logs in, out and in again with another
/// scope set: every `token` of the loop refreshes (the access token lives less than the refresh
/// margin), so refreshes race every write of the user's commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_loop_racing_login_logout_login_leaves_exactly_the_last_login() {
    let w = std::sync::Arc::new(
        World::start_with(SandboxConfig::default().access_token_lifetime(Duration::from_secs(120)))
            .await,
    );
    w.login_paste(&["--scope", "user.metrics"])
        .await
        .assert()
        .success();
    // Slow token answers widen every race window: a refresh is in flight most of the time.
    w.sandbox.handle().inject_fault(
        Endpoint::Token,
        Fault::Delay(Duration::from_millis(150)),
        1000,
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let (w, stop) = (w.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut tokens, mut logged_out) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = w.run(&["token"]).await;
                match out.status.code() {
                    Some(0) => tokens += 1,
                    // Between the logout and the next login there is no one to refresh.
                    Some(3) => logged_out += 1,
                    _ => panic!("`token` failed: {}", text(&out)),
                }
            }
            (tokens, logged_out)
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    w.run(&["logout"]).await.assert().success();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = w
        .login_paste(&["--scope", "user.metrics,user.activity"])
        .await;
    last.assert().success();
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (tokens, _) = looping.await.unwrap();
    assert!(
        tokens >= 2,
        "the loop ran during the logins ({tokens} tokens)"
    );

    let store = FileStore::open(w.store_path()).unwrap();
    assert_eq!(store.users().await.unwrap().len(), 1);
    let entry = store
        .load(withings_oauth::UserId::new(SEEDED_USERID))
        .await
        .unwrap();
    let Some(StoredEntry::Credentials(stored)) = entry.map(|e| e.entry) else {
        panic!("the last login is not in the store");
    };
    assert_eq!(
        stored.scopes().to_string(),
        "user.metrics,user.activity",
        "the store holds the last login (or its refresh), not an earlier one"
    );
    let counters = w.sandbox.handle().counters();
    assert_eq!(
        counters.refresh_dead_token, 0,
        "no refresh token was used after it was rotated away"
    );
    assert_eq!(counters.refresh_rejected, 0);
    assert_eq!(
        w.measure_status(stored.access_token().expose_secret())
            .await,
        0,
        "the stored access token is live"
    );
}
