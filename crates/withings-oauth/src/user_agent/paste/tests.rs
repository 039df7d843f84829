//! Tests of the paste agent: what it accepts, refuses, prints and never prints.

use super::*;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A writer whose output the test can read afterwards.
#[derive(Clone, Default)]
pub(crate) struct SharedOutput(Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedOutput {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl AsyncWrite for SharedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const REDIRECT: &str = "https://app.example.com/withings/callback";
/// The `state` of the logins made by [`authorize_url`].
pub(crate) const STATE: &str = "the-right-state-0123456789";

/// The authorize URL of a login with `redirect_uri` and [`STATE`].
pub(crate) fn authorize_url(redirect_uri: &str) -> Url {
    let mut url: Url = "https://account.withings.com/oauth2_user/authorize2"
        .parse()
        .unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "cid")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "user.metrics")
        .append_pair("state", STATE);
    url
}

async fn paste(
    input: &str,
    agent: impl FnOnce(PasteAgent) -> PasteAgent,
) -> (Result<Url, UserAgentError>, String) {
    let out = SharedOutput::default();
    let reader = io::Cursor::new(input.as_bytes().to_vec());
    let agent = agent(PasteAgent::new(reader, out.clone()));
    let result = agent
        .run(
            Prepared::new(REDIRECT.parse().unwrap()),
            &authorize_url(REDIRECT),
        )
        .await;
    (result, out.text())
}

#[tokio::test]
async fn garbage_then_wrong_state_then_the_right_address() {
    let input = format!(
        "hello\n{REDIRECT}?code=SECRETCODE1&state=someone-elses\n  \"{REDIRECT}?code=SECRETCODE2&state={STATE}\"  \n"
    );
    let (result, out) = paste(&input, |a| a).await;
    assert_eq!(
        result.unwrap().as_str(),
        format!("{REDIRECT}?code=SECRETCODE2&state={STATE}")
    );
    assert!(out.contains(authorize_url(REDIRECT).as_str()), "{out}");
    assert!(out.contains("valid for 30 seconds"), "{out}");
    assert!(out.contains("That is not the redirect address"), "{out}");
    assert!(out.contains("belongs to another login"), "{out}");
    assert!(
        out.contains("attempt 2 of 3") && out.contains("attempt 3 of 3"),
        "{out}"
    );
    assert!(!out.contains("SECRETCODE"), "{out}");
    assert!(!out.contains("someone-elses"), "{out}");
}

#[tokio::test]
async fn the_query_alone_is_enough_with_or_without_question_mark() {
    for typed in [
        format!("code=C0DE&state={STATE}"),
        format!("?code=C0DE&state={STATE}\r"),
    ] {
        let (result, _) = paste(&format!("{typed}\n"), |a| a).await;
        assert_eq!(
            result.unwrap().as_str(),
            format!("{REDIRECT}?code=C0DE&state={STATE}")
        );
    }
}

#[tokio::test]
async fn a_denial_ends_at_once_but_a_forged_one_does_not() {
    let input = format!(
        "{REDIRECT}?error=access_denied&state=forged\n{REDIRECT}?error=access_denied&state={STATE}\n"
    );
    let (result, out) = paste(&input, |a| a).await;
    assert!(result.unwrap().as_str().contains("error=access_denied"));
    assert!(out.contains("belongs to another login"), "{out}");
}

#[tokio::test]
async fn other_addresses_and_missing_codes_are_refused_with_advice() {
    let input = format!(
        "https://evil.example.com/withings/callback?code=X&state={STATE}\n{REDIRECT}?state={STATE}\n"
    );
    let (result, out) = paste(&input, |a| a.max_attempts(2)).await;
    assert!(matches!(
        result,
        Err(UserAgentError::TooManyAttempts { attempts: 2 })
    ));
    assert!(out.contains("does not go to the redirect URI"), "{out}");
    assert!(out.contains("has no authorization code"), "{out}");
    assert!(!out.contains("evil.example.com"), "{out}");
}

#[tokio::test]
async fn end_of_input_cancels() {
    let (result, out) = paste("\n\nnot it\n", |a| a).await;
    assert!(matches!(result, Err(UserAgentError::Cancelled)));
    assert!(out.contains("cancelled"), "{out}");
}

#[tokio::test]
async fn too_many_attempts_stop_the_login() {
    let right = format!("{REDIRECT}?code=C&state={STATE}\n");
    let (result, out) = paste(&format!("a\nb\nc\n{right}"), |a| a).await;
    match result {
        Err(e @ UserAgentError::TooManyAttempts { attempts: 3 }) => {
            assert!(e.to_string().contains("copy the whole address"));
        }
        other => panic!("expected TooManyAttempts, got {other:?}"),
    }
    assert!(out.contains("after 3 attempts"), "{out}");
    let (result, _) = paste(&format!("a\n{right}"), |a| a.max_attempts(1)).await;
    assert!(matches!(
        result,
        Err(UserAgentError::TooManyAttempts { attempts: 1 })
    ));
}

#[tokio::test]
async fn blank_lines_do_not_count_and_long_lines_are_skipped_whole() {
    let long = "x".repeat(MAX_LINE * 2 + 5);
    let input = format!("\n \n{long}\ncode=C&state={STATE}\n");
    let (result, out) = paste(&input, |a| a.max_attempts(2)).await;
    assert!(result.is_ok(), "{out}");
    assert!(out.contains("longer than"), "{out}");
    assert!(out.contains("attempt 2 of 2"), "{out}");
}

#[test]
fn pasted_text_is_trimmed_of_quotes_and_space() {
    assert_eq!(pasted_text("  '<https://a/b?c=d>'\t"), "https://a/b?c=d");
    let redirect: Url = REDIRECT.parse().unwrap();
    assert!(parse_pasted("just some words", &redirect).is_none());
    assert!(parse_pasted("c0de", &redirect).is_none());
    assert_eq!(
        parse_pasted(
            "HTTPS://app.example.com/withings/callback?code=1",
            &redirect
        )
        .unwrap()
        .as_str(),
        "https://app.example.com/withings/callback?code=1"
    );
}

/// Set in a child process of [`stdio_reads_standard_input_and_writes_standard_error`]: which
/// login the child runs on its real standard input.
const CHILD_MODE: &str = "WITHINGS_OAUTH_TEST_STDIO_CHILD";

/// Runs this test binary again as a child, with `mode`, `input` on its standard input (kept
/// open unless `close_stdin`); returns (exit success, stdout, stderr).
fn run_child(mode: &str, input: &str, close_stdin: bool) -> (bool, String, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "user_agent::paste::tests::stdio_child",
            "--nocapture",
        ])
        .env(CHILD_MODE, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let held_open = if close_stdin {
        drop(stdin);
        None
    } else {
        Some(stdin)
    };
    let mut finished = false;
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if !finished {
        let _ = child.kill();
    }
    drop(held_open);
    let output = child.wait_with_output().unwrap();
    (
        finished && output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn stdio_reads_standard_input_and_writes_standard_error() {
    let input = format!("garbage\n{REDIRECT}?code=SECRETCODE&state={STATE}\n");
    let (ok, stdout, stderr) = run_child("paste", &input, false);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "CALLBACK {REDIRECT}?code=SECRETCODE&state={STATE}"
        )),
        "{stdout}"
    );
    assert!(stderr.contains("valid for 30 seconds"), "{stderr}");
    assert!(stderr.contains("attempt 2 of 3"), "{stderr}");
    assert!(!stderr.contains("SECRETCODE"), "{stderr}");

    let (ok, stdout, stderr) = run_child("paste", "", true);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("CANCELLED"), "{stdout}");
}

/// The browser answers while standard input is open and silent: the login ends and the
/// process exits, without waiting for a line nobody types.
#[cfg(feature = "loopback")]
#[test]
fn a_pending_stdin_read_does_not_hold_up_the_process() {
    let (ok, stdout, stderr) = run_child("browser-or-paste", "", false);
    assert!(ok, "the child did not exit by itself: {stdout}{stderr}");
    assert!(stdout.contains("CALLBACK http://127.0.0.1:"), "{stdout}");
}

#[tokio::test]
#[ignore = "a child process of the stdio tests: it reads the test binary's own stdin"]
async fn stdio_child() {
    // Not a test of its own: without the variable (`--include-ignored`) there is nothing to do.
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let result = match mode.as_str() {
        "paste" => {
            PasteAgent::stdio()
                .run(
                    Prepared::new(REDIRECT.parse().unwrap()),
                    &authorize_url(REDIRECT),
                )
                .await
        }
        #[cfg(feature = "loopback")]
        "browser-or-paste" => {
            let agent = crate::BrowserOrPasteAgent::stdio().open_browser(false);
            let prepared = agent
                .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
                .await
                .unwrap();
            let redirect = prepared.redirect_uri().clone();
            let authorize = authorize_url(redirect.as_str());
            let port = redirect.port().unwrap();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let request =
                    format!("GET /callback?code=C&state={STATE} HTTP/1.1\r\nHost: x\r\n\r\n");
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer).await;
            });
            agent.run(prepared, &authorize).await
        }
        other => panic!("unknown mode {other}"),
    };
    match result {
        Ok(url) => println!("CALLBACK {url}"),
        Err(UserAgentError::Cancelled) => println!("CANCELLED"),
        Err(e) => panic!("{e}"),
    }
}

proptest::proptest! {
    /// Whatever is typed: no panic, nothing typed is written back, and only this login's
    /// callback (or its denial) comes out.
    #[test]
    fn any_input_is_screened_and_never_echoed(
        lines in proptest::collection::vec("ZQX[ -~]{0,40}|ZQX\\PC{0,40}|code=ZQX[a-z]{0,8}&state=[a-zA-Z0-9_-]{0,30}|\\??code=ZQX[a-z]{0,8}&state=the-right-state-0123456789", 1..5),
    ) {
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (result, out) = runtime.block_on(paste(&input, |a| a));
        proptest::prop_assert!(!out.contains("ZQX"), "{}", out);
        match result {
            Ok(url) => {
                let screened = screen_callback(&authorize_url(REDIRECT), &url);
                proptest::prop_assert!(
                    matches!(screened, Ok(()) | Err(CallbackError::Denied { .. })),
                    "{:?}", screened
                );
            }
            Err(UserAgentError::Cancelled | UserAgentError::TooManyAttempts { .. }) => {}
            Err(other) => proptest::prop_assert!(false, "{:?}", other),
        }
    }
}
