//! Logging in by pasting, against the sandbox, with the https callback Withings' dashboard asks
//! for: the test reads the instructions the agent writes, "opens" the authorize URL (an
//! auto-approving sandbox redirects at once) and types lines back, mistakes first.

use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream,
};
use url::Url;
use withings_oauth::BrowserOrPasteAgent;
use withings_oauth::PasteAgent;
use withings_oauth::{Authorized, Error, Scope, Scopes, UserAgent, authorize};
use withings_oauth_e2e::{client, follow_authorize, getmeas_status, query_param, start_sandbox};
use withings_sandbox::{DEFAULT_CLIENT_ID, HTTPS_CALLBACK, Sandbox, SandboxConfig};

/// The user's side of the terminal: what they type, and what the agent prints.
struct Terminal {
    keyboard: DuplexStream,
    screen: BufReader<DuplexStream>,
    seen: String,
}

impl Terminal {
    /// A terminal and the agent's ends of it (reader, writer).
    fn new() -> (Terminal, BufReader<DuplexStream>, DuplexStream) {
        let (keyboard, agent_in) = tokio::io::duplex(64 * 1024);
        let (agent_out, screen) = tokio::io::duplex(64 * 1024);
        let terminal = Terminal {
            keyboard,
            screen: BufReader::new(screen),
            seen: String::new(),
        };
        (terminal, BufReader::new(agent_in), agent_out)
    }

    /// Reads the screen until the authorize URL appears (the agent prints it on its own line).
    async fn authorize_url(&mut self) -> Url {
        for _ in 0..50 {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.screen.read_line(&mut line))
                .await
                .expect("the agent prints its instructions at once")
                .expect("reading the agent's output");
            assert!(
                n > 0,
                "the agent stopped writing before the URL: {}",
                self.seen
            );
            self.seen.push_str(&line);
            if let Ok(url) = Url::parse(line.trim())
                && url.path() == "/oauth2_user/authorize2"
            {
                return url;
            }
        }
        panic!("no authorize URL in the agent's output: {}", self.seen);
    }

    async fn type_line(&mut self, text: &str) {
        self.keyboard
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("typing");
    }

    /// Everything the agent printed, once it is gone.
    async fn rest(mut self) -> String {
        drop(self.keyboard);
        let mut rest = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            self.screen.read_to_string(&mut rest),
        )
        .await
        .expect("the agent's output ends")
        .expect("reading the agent's output");
        self.seen + &rest
    }
}

async fn sandbox() -> Sandbox {
    start_sandbox(SandboxConfig::default().auto_approve(true)).await
}

fn scopes() -> Scopes {
    [Scope::Info, Scope::Metrics].into_iter().collect()
}

/// Runs `authorize` with `agent` on its own task, so the test can play the user meanwhile.
fn spawn_login(
    sandbox: &Sandbox,
    agent: impl UserAgent + 'static,
) -> tokio::task::JoinHandle<Result<Authorized, Error>> {
    let client = client(sandbox, HTTPS_CALLBACK);
    tokio::spawn(async move { authorize(&client, scopes(), &agent).await })
}

async fn finish(
    login: tokio::task::JoinHandle<Result<Authorized, Error>>,
) -> Result<Authorized, Error> {
    tokio::time::timeout(Duration::from_secs(20), login)
        .await
        .expect("the login ends")
        .expect("the login task does not panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_wrong_state_are_refused_then_the_pasted_address_logs_in() {
    let sandbox = sandbox().await;
    let (mut terminal, reader, writer) = Terminal::new();
    let login = spawn_login(&sandbox, PasteAgent::new(reader, writer));

    let authorize_url = terminal.authorize_url().await;
    assert_eq!(
        query_param(&authorize_url, "redirect_uri").as_deref(),
        Some(HTTPS_CALLBACK)
    );
    let callback = follow_authorize(&authorize_url).await;
    assert!(callback.as_str().starts_with(HTTPS_CALLBACK), "{callback}");
    let code = query_param(&callback, "code").expect("the sandbox sent a code");

    let mut wrong_state = callback.clone();
    wrong_state
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "a-state-from-another-login");
    terminal.type_line("I clicked allow, now what?").await;
    terminal.type_line(wrong_state.as_str()).await;
    terminal.type_line(&format!("  '{callback}'  ")).await;

    let authorized = finish(login).await.expect("the third input logs in");
    assert_eq!(
        getmeas_status(&sandbox, authorized.access_token()).await,
        0,
        "the sandbox accepts the access token"
    );
    let screen = terminal.rest().await;
    assert!(screen.contains("valid for 30 seconds"), "{screen}");
    assert!(
        screen.contains("That is not the redirect address"),
        "{screen}"
    );
    assert!(screen.contains("belongs to another login"), "{screen}");
    assert!(
        screen.contains("attempt 2 of 3") && screen.contains("attempt 3 of 3"),
        "{screen}"
    );
    assert!(!screen.contains(&code), "the code was echoed: {screen}");
    assert!(!screen.contains(authorized.access_token().expose_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_part_alone_is_enough_even_in_browser_or_paste() {
    let sandbox = sandbox().await;
    let (mut terminal, reader, writer) = Terminal::new();
    let agent = BrowserOrPasteAgent::new(reader, writer).open_browser(false);
    let login = spawn_login(&sandbox, agent);

    let authorize_url = terminal.authorize_url().await;
    let callback = follow_authorize(&authorize_url).await;
    terminal
        .type_line(&format!("?{}", callback.query().expect("a query")))
        .await;

    let authorized = finish(login).await.expect("the query alone logs in");
    assert_eq!(getmeas_status(&sandbox, authorized.access_token()).await, 0);
    let screen = terminal.rest().await;
    assert!(screen.contains("Open this address"), "{screen}");
    assert!(screen.contains("valid for 30 seconds"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_denial_is_a_typed_denial_and_eof_cancels() {
    let sandbox = start_sandbox(SandboxConfig::default()).await;
    let (mut terminal, reader, writer) = Terminal::new();
    let login = spawn_login(&sandbox, PasteAgent::new(reader, writer));

    // The user clicks Deny on the consent page: the form's submission redirects with an error.
    let authorize_url = terminal.authorize_url().await;
    let denied = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(sandbox.base_url().join("oauth2_user/authorize2").unwrap())
        .form(&[
            ("response_type", "code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", HTTPS_CALLBACK),
            ("scope", &query_param(&authorize_url, "scope").unwrap()),
            ("state", &query_param(&authorize_url, "state").unwrap()),
            ("decision", "deny"),
        ])
        .send()
        .await
        .expect("the consent form answers");
    let location = denied.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("error=access_denied"), "{location}");
    terminal.type_line(&location).await;
    let err = finish(login).await.expect_err("denied");
    assert!(err.is_denied(), "{err:?}");

    // Nothing pasted at all: end of input cancels the login.
    let (mut terminal, reader, writer) = Terminal::new();
    let login = spawn_login(&sandbox, PasteAgent::new(reader, writer));
    terminal.authorize_url().await;
    let screen = terminal.rest().await;
    let err = finish(login).await.expect_err("cancelled");
    assert!(
        matches!(
            err,
            Error::UserAgent(withings_oauth::UserAgentError::Cancelled)
        ),
        "{err:?}"
    );
    assert!(screen.contains("cancelled"), "{screen}");
    assert_eq!(sandbox.handle().counters().token_code, 0);
}
