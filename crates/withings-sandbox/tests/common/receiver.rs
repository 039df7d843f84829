//! A notification receiver served by the tests themselves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::mpsc;

/// A notification receiver on 127.0.0.1: `/ok` answers 200 to `HEAD` and records each POST,
/// `/broken` answers 500, `/refusing` answers 200 to `HEAD` and 500 to a POST.
pub struct Receiver {
    addr: SocketAddr,
    posts: mpsc::UnboundedReceiver<HashMap<String, String>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let (tx, posts) = mpsc::unbounded_channel();
        let app = Router::new()
            .route(
                "/ok",
                get(|| async { StatusCode::OK }).post(
                    move |Form(form): Form<HashMap<String, String>>| async move {
                        let _ = tx.send(form);
                        StatusCode::OK
                    },
                ),
            )
            .route(
                "/refusing",
                get(|| async { StatusCode::OK })
                    .post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route(
                "/broken",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR })
                    .post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, posts }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn next(&mut self) -> HashMap<String, String> {
        tokio::time::timeout(Duration::from_secs(10), self.posts.recv())
            .await
            .expect("a notification within 10 s")
            .expect("the receiver is running")
    }
}
