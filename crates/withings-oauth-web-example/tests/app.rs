//! The application over HTTP, in-process on a SQLite file: sign-in (a wrong password, the
//! session cookie's attributes, a new session id at every sign-in, sign-out), cross-site
//! `POST`s refused, and a failure page that shows a reference, not the database's message.

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use withings_oauth::{Client, DEFAULT_PENDING_LOGIN_TTL};
use withings_oauth_axum::CookieKey;
use withings_oauth_sql::SqlOptions;
use withings_oauth_web_example::{Config, Shared, demo_password, router};

struct App {
    base: url::Url,
    origin: String,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start() -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let shared = Shared::open(&url, SqlOptions::default(), DEFAULT_PENDING_LOGIN_TTL)
        .await
        .unwrap();
    shared.users.seed_demo_accounts().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let client = Client::builder()
        .client_id("sandbox-client-id")
        .client_secret("sandbox-client-secret")
        .redirect_uri(format!("{origin}/callback").as_str())
        .base_url("http://127.0.0.1:9".parse::<url::Url>().unwrap())
        .build()
        .unwrap();
    let mut config = Config::new(client, CookieKey::generate().unwrap());
    config.demo_accounts = true;
    let app = router(config, shared);
    tokio::spawn(async move { axum::serve(listener, app).await });
    App {
        base: format!("{origin}/").parse().unwrap(),
        origin,
        url,
        _dir: dir,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The session cookie a response sets (`name=value`), and its whole `Set-Cookie`.
fn session_cookie(response: &reqwest::Response) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("web-example-session="))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v))
}

impl App {
    async fn sign_in(&self, name: &str, password: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = http()
            .post(self.base.join("sign-in").unwrap())
            .header("origin", &self.origin)
            .form(&[("name", name), ("password", password)]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    async fn home(&self, cookie: &str) -> (StatusCode, String) {
        let response = http()
            .get(self.base.clone())
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_renews_the_session_and_its_cookie_is_httponly_and_lax() {
    let app = start().await;
    let wrong = app.sign_in("alice", "not-her-password", None).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(session_cookie(&wrong).is_none());
    assert!(wrong.text().await.unwrap().contains("do not match"));
    let unknown = app.sign_in("mallory", "anything", None).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

    let signed_in = app.sign_in("alice", &demo_password("alice"), None).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let (alice, set) = session_cookie(&signed_in).expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "http: not Secure ({set})");
    let (status, page) = app.home(&alice).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"signed-in-as\">alice<"), "{page}");
    assert!(!page.contains("demo-bob"), "signed in: no passwords shown");

    // Signing in again, as bob, from alice's session: a new session id; alice's is gone.
    let again = app
        .sign_in("bob", &demo_password("bob"), Some(&alice))
        .await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let (bob, _) = session_cookie(&again).expect("a new session cookie");
    assert_ne!(bob, alice);
    assert!(app.home(&bob).await.1.contains("id=\"signed-in-as\">bob<"));
    assert!(app.home(&alice).await.1.contains("id=\"sign-in-form\""));

    // Sign-out: refused without an Origin, done with it.
    let url = app.base.join("sign-out").unwrap();
    let forged = http()
        .post(url.clone())
        .header("cookie", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("data-kind=\"cross-site\"")
    );
    assert!(app.home(&bob).await.1.contains("signed-in-as"));
    let out = http()
        .post(url)
        .header("cookie", &bob)
        .header("origin", &app.origin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()[LOCATION], "/");
    assert!(app.home(&bob).await.1.contains("id=\"sign-in-form\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_changing_post_from_another_site_is_refused() {
    let app = start().await;
    let signed_in = app.sign_in("alice", &demo_password("alice"), None).await;
    let (alice, _) = session_cookie(&signed_in).unwrap();
    for path in [
        "disconnect?user=bob",
        "withings/connect?user=bob",
        "sign-out",
    ] {
        let response = http()
            .post(app.base.join(path).unwrap())
            .header("cookie", &alice)
            .header("sec-fetch-site", "same-site")
            .header("origin", "http://127.0.0.1:1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(response.headers().get(SET_COOKIE).is_none(), "{path}");
    }
    // A sign-in posted from another site (login CSRF) is refused too.
    let response = http()
        .post(app.base.join("sign-in").unwrap())
        .header("origin", "http://evil.example")
        .form(&[("name", "alice"), ("password", &demo_password("alice"))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(session_cookie(&response).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_page_shows_a_reference_not_the_databases_message() {
    let app = start().await;
    let signed_in = app.sign_in("alice", &demo_password("alice"), None).await;
    let (alice, _) = session_cookie(&signed_in).unwrap();
    // The accounts table disappears under the running application.
    let pool = sqlx::SqlitePool::connect(&app.url).await.unwrap();
    sqlx::query("DROP TABLE web_example_accounts")
        .execute(&pool)
        .await
        .unwrap();
    let (status, page) = app.home(&alice).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("id=\"reference\""), "{page}");
    assert!(page.contains("Try again"), "{page}");
    for internal in ["web_example_accounts", "no such table", "app.db", "sqlite"] {
        assert!(!page.contains(internal), "{internal} in {page}");
    }
}
