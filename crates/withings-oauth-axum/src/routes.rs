//! The two routes: connect parks a login and sends the browser to Withings; callback takes the
//! login back, once, and finishes it at once (Withings' code lives 30 seconds).

use axum::extract::{RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tracing::{info, warn};
use withings_oauth::{BrowserBinding, Session, StateHash, Unauthorized};

use crate::cookie::{read_binding, set_cookie};
use crate::error::LoginError;
use crate::login::{Connected, WithingsLogin};

/// `GET|POST {connect_path}`.
pub(crate) async fn connect(State(login): State<WithingsLogin>, parts: Parts) -> Response {
    match start(&login, &parts).await {
        Ok(response) => response,
        Err(error) => {
            warn!(kind = error.kind(), "Withings login not started");
            error.page(&login.inner.after_login)
        }
    }
}

async fn start(login: &WithingsLogin, parts: &Parts) -> Result<Response, LoginError> {
    let inner = &login.inner;
    let owner = (inner.owner)(parts).ok_or(LoginError::NotSignedIn)?;
    // A browser keeps its binding across logins: two logins started in two tabs both finish.
    let binding = match read_binding(&parts.headers, inner.secure) {
        Some(binding) => binding,
        None => BrowserBinding::new_random().map_err(|e| LoginError::Server(e.to_string()))?,
    };
    let pending = Unauthorized::new(&inner.client, inner.scopes.clone())
        .begin()
        .map_err(|e| LoginError::Server(e.to_string()))?;
    let authorize_url = pending.authorize_url().clone();
    inner
        .pending
        .put(pending.park_revealing_state(owner, &binding))
        .await
        .map_err(|e| LoginError::Server(e.to_string()))?;
    info!("Withings login parked, browser sent to the authorize page");
    let cookie = HeaderValue::from_str(&set_cookie(&binding, inner.secure))
        .map_err(|e| LoginError::Server(e.to_string()))?;
    let location = HeaderValue::from_str(authorize_url.as_str())
        .map_err(|e| LoginError::Server(e.to_string()))?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// `GET {callback_path}`.
pub(crate) async fn callback(
    State(login): State<WithingsLogin>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match finish(&login, &headers, query).await {
        Ok(()) => Redirect::to(&login.inner.after_login).into_response(),
        Err(error) => {
            warn!(kind = error.kind(), "Withings callback refused");
            error.page(&login.inner.after_login)
        }
    }
}

async fn finish(
    login: &WithingsLogin,
    headers: &HeaderMap,
    query: Option<String>,
) -> Result<(), LoginError> {
    let inner = &login.inner;
    // The callback URL as the login expects it: the configured redirect URI (never the
    // request's Host header, which the client chooses) with the request's query.
    let mut callback = inner.client.redirect_uri().clone();
    callback.set_query(query.as_deref());
    let state = StateHash::of_callback(&callback).ok_or(LoginError::BadCallback)?;
    // No cookie: not the browser that started the login (or one that lost its cookies).
    let binding = read_binding(headers, inner.secure).ok_or(LoginError::OtherBrowser)?;
    let parked = inner
        .pending
        .take(&state, &binding.hash())
        .await
        .map_err(LoginError::from_take)?;
    let owner = parked.owner().to_owned();
    let pending = parked
        .restore(&inner.client)
        .map_err(|e| LoginError::Server(e.to_string()))?;
    let authorized = pending
        .complete(&callback)
        .await
        .map_err(LoginError::from_login)?;
    let scopes = authorized.scopes().clone();
    let session = Session::start(authorized, inner.tokens.clone())
        .await
        .map_err(LoginError::from_session)?;
    let user_id = session.user_id();
    login.keep_session(session).await;
    info!(user_id = %user_id, "Withings login finished");
    if let Some(hook) = &inner.on_connected {
        hook(Connected {
            owner,
            user_id,
            scopes,
        })
        .await
        .map_err(LoginError::NotRecorded)?;
    }
    Ok(())
}
