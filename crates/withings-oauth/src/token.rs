//! The token endpoint (`POST /v2/oauth2`, `action=requesttoken`) and the other `/v2/oauth2`
//! actions.

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::{AuthMethod, Client};
use crate::credentials::{Credentials, UserId};
use crate::error::ApiError;
use crate::scope::Scopes;
use crate::signature::signed_params;
use crate::wire::{TOKEN_BODY_LIMIT, TokenBody, post_form};

/// What is traded for tokens.
pub(crate) enum Grant<'a> {
    Code {
        code: &'a SecretString,
        redirect_uri: &'a Url,
    },
    Refresh {
        refresh_token: &'a SecretString,
        /// Kept if the answer omits `userid`: a refresh never changes the user.
        user_id: UserId,
    },
}

/// Calls `requesttoken` and returns the new credentials.
pub(crate) async fn request_token(
    client: &Client,
    grant: Grant<'_>,
    previous_scopes: &Scopes,
) -> Result<Credentials, ApiError> {
    let (grant_type, secret_param, secret_value) = match &grant {
        Grant::Code { code, .. } => ("authorization_code", "code", code.expose_secret()),
        Grant::Refresh { refresh_token, .. } => (
            "refresh_token",
            "refresh_token",
            refresh_token.expose_secret(),
        ),
    };
    let mut form: Vec<(&str, &str)> = vec![
        ("action", "requesttoken"),
        ("grant_type", grant_type),
        ("client_id", client.client_id()),
        (secret_param, secret_value),
    ];
    let redirect;
    if let Grant::Code { redirect_uri, .. } = &grant {
        redirect = redirect_uri.as_str().to_owned();
        form.push(("redirect_uri", &redirect));
    }
    let signed;
    match client.auth_method() {
        AuthMethod::ClientSecret => {
            form.push(("client_secret", client.client_secret().expose_secret()));
        }
        AuthMethod::Signature => {
            signed = signed_params(client, "requesttoken").await?;
            form.push(("nonce", &signed.0));
            form.push(("signature", &signed.1));
        }
    }
    // Expiry counts from before the request left, so it errs early.
    let sent_at = Utc::now();
    let body: TokenBody = post_form(
        client,
        "v2/oauth2",
        &form,
        None,
        &[secret_value, client.client_secret().expose_secret()],
        TOKEN_BODY_LIMIT,
    )
    .await?;
    let fallback_user = match grant {
        Grant::Code { .. } => None,
        Grant::Refresh { user_id, .. } => Some(user_id),
    };
    body.into_credentials(sent_at, fallback_user, previous_scopes)
}

/// `action=revoke` (signed).
pub(crate) async fn revoke(client: &Client, user_id: UserId) -> Result<(), ApiError> {
    let (nonce, signature) = signed_params(client, "revoke").await?;
    let user = user_id.to_string();
    let form = [
        ("action", "revoke"),
        ("client_id", client.client_id()),
        ("nonce", nonce.as_str()),
        ("signature", signature.as_str()),
        ("userid", user.as_str()),
    ];
    let _: serde::de::IgnoredAny = post_form(
        client,
        "v2/oauth2",
        &form,
        None,
        &[client.client_secret().expose_secret()],
        TOKEN_BODY_LIMIT,
    )
    .await?;
    Ok(())
}

/// `action=getdemoaccess` (signed).
pub(crate) async fn demo_access(client: &Client, scopes: &Scopes) -> Result<Credentials, ApiError> {
    let (nonce, signature) = signed_params(client, "getdemoaccess").await?;
    let scope = scopes.to_string();
    let form = [
        ("action", "getdemoaccess"),
        ("client_id", client.client_id()),
        ("nonce", nonce.as_str()),
        ("signature", signature.as_str()),
        ("scope_oauth2", scope.as_str()),
    ];
    let sent_at = Utc::now();
    let body: TokenBody = post_form(
        client,
        "v2/oauth2",
        &form,
        None,
        &[client.client_secret().expose_secret()],
        TOKEN_BODY_LIMIT,
    )
    .await?;
    body.into_credentials(sent_at, Some(UserId::DEMO), scopes)
}
