//! The two routes: connect parks a login and sends the browser to Withings; callback takes the
//! login back, once, and finishes it at once (Withings' code lives 30 seconds).

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tracing::{Instrument, info, info_span, warn};
use withings_oauth::chrono::Utc;
use withings_oauth::{BrowserBinding, Session, StateHash, Unauthorized};

use crate::cookie::IssuedBinding;
use crate::error::LoginError;
use crate::login::{Connected, WithingsLogin};
use crate::telemetry;

/// `POST {connect_path}`.
pub(crate) async fn connect(State(login): State<WithingsLogin>, mut parts: Parts) -> Response {
    match start(&login, &mut parts).await {
        Ok(response) => response,
        Err(error) => {
            warn!(kind = error.kind(), "Withings login not started");
            error.page(&login.inner.after_login)
        }
    }
}

async fn start(login: &WithingsLogin, parts: &mut Parts) -> Result<Response, LoginError> {
    let inner = &login.inner;
    let owner = (inner.owner)(parts).await.ok_or(LoginError::NotSignedIn)?;
    let now = Utc::now();
    // A browser keeps its binding across logins, so that two logins started in two tabs both
    // finish; but only a binding this server issued to this owner, recently. A planted cookie
    // (another key, another owner) is ignored and the browser gets a binding of its own.
    let binding = match inner.cookie.read(&parts.headers) {
        Some(issued) if issued.is_valid_for(&owner, inner.pending_lifetime, now) => issued.binding,
        _ => BrowserBinding::new_random().map_err(|e| LoginError::Server(e.to_string()))?,
    };
    let pending = Unauthorized::new(&inner.client, inner.scopes.clone())
        .begin()
        .map_err(|e| LoginError::Server(e.to_string()))?;
    let authorize_url = pending.authorize_url().clone();
    inner
        .pending
        .put(pending.park_revealing_state(owner.clone(), &binding))
        .await
        .map_err(|e| LoginError::Server(e.to_string()))?;
    telemetry::parked();
    info!("Withings login parked, browser sent to the authorize page");
    // Issued again now: the cookie is honoured for a pending login's lifetime after the last
    // connect.
    let issued = IssuedBinding::new(binding, &owner, now);
    let cookie = HeaderValue::from_str(&inner.cookie.set_cookie(&issued))
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
pub(crate) async fn callback(State(login): State<WithingsLogin>, mut parts: Parts) -> Response {
    // No field from the request: its query holds the code and the state.
    let span = info_span!(
        "withings_oauth.login.callback",
        outcome = tracing::field::Empty
    );
    let result = finish(&login, &mut parts).instrument(span.clone()).await;
    telemetry::finished(&result);
    span.record(
        "outcome",
        result.as_ref().map_or_else(LoginError::kind, |()| "ok"),
    );
    match result {
        Ok(()) => Redirect::to(&login.inner.after_login).into_response(),
        Err(error) => {
            warn!(kind = error.kind(), "Withings callback refused");
            error.page(&login.inner.after_login)
        }
    }
}

async fn finish(login: &WithingsLogin, parts: &mut Parts) -> Result<(), LoginError> {
    let inner = &login.inner;
    // The callback URL as the login expects it: the configured redirect URI (never the
    // request's Host header, which the client chooses) with the request's query.
    let mut callback = inner.client.redirect_uri().clone();
    callback.set_query(parts.uri.query());
    let state = StateHash::of_callback(&callback).ok_or(LoginError::BadCallback)?;
    let signed_in = (inner.owner)(parts).await.ok_or(LoginError::NotSignedIn)?;
    // No cookie this server issued to this user: not the browser that started the login (or
    // one that lost its cookies).
    let issued = inner
        .cookie
        .read(&parts.headers)
        .filter(|issued| issued.is_valid_for(&signed_in, inner.pending_lifetime, Utc::now()))
        .ok_or(LoginError::OtherBrowser)?;
    let parked = inner
        .pending
        .take(&state, &issued.binding.hash())
        .await
        .map_err(LoginError::from_take);
    telemetry::taken(&parked.as_ref().map(drop));
    let parked = parked?;
    // Checked before the code is spent: the login is the signed-in user's, or nobody's.
    if parked.owner() != signed_in {
        return Err(LoginError::OtherUser);
    }
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
