//! The token endpoint (`POST /v2/oauth2`): trading a code or a refresh token for tokens
//! (`requesttoken`), revoking (`revoke`) and Withings' demo account (`getdemoaccess`).

use chrono::{DateTime, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::api::error::ApiError;
use crate::api::signature::signed_params;
use crate::api::transport::{TOKEN_BODY_LIMIT, post_form};
use crate::config::{AuthMethod, Client};
use crate::credentials::{Credentials, UserId, is_token_text, is_token_type};
use crate::json::number_or_digits;
use crate::scope::Scopes;
use crate::secret::{AccessToken, AuthorizationCode, RefreshToken};
use crate::store::LeaseTerm;

/// What is traded for tokens.
pub(crate) enum Grant<'a> {
    Code {
        code: &'a AuthorizationCode,
        redirect_uri: &'a Url,
    },
    Refresh {
        refresh_token: &'a RefreshToken,
        /// Kept if the answer omits `userid`: a refresh never changes the user.
        user_id: UserId,
        /// The term of the lease the refresh goes under, if any: the request leaves only
        /// while it holds, with a timeout that ends before it.
        fence: Option<&'a LeaseTerm>,
    },
}

/// Posts `form` to `/v2/oauth2`. `secret` (the code or refresh token sent, if any) and the
/// client secret are masked if Withings' error text repeats them. A refresh under a lease is
/// `fence`d by its term.
async fn post_oauth2<T: DeserializeOwned>(
    client: &Client,
    form: &[(&str, &str)],
    secret: Option<&str>,
    fence: Option<&LeaseTerm>,
) -> Result<T, ApiError> {
    let client_secret = client.client_secret().expose_secret();
    let secrets: &[&str] = match secret {
        Some(secret) => &[secret, client_secret],
        None => &[client_secret],
    };
    post_form(
        client,
        "v2/oauth2",
        form,
        None,
        secrets,
        TOKEN_BODY_LIMIT,
        fence,
    )
    .await
}

/// A signed `/v2/oauth2` call of `action`: `client_id`, a fresh nonce and its signature, then
/// `params`.
async fn signed_oauth2<T: DeserializeOwned>(
    client: &Client,
    action: &str,
    params: &[(&str, &str)],
) -> Result<T, ApiError> {
    let signed = signed_params(client, action).await?;
    let mut form = vec![("action", action), ("client_id", client.client_id())];
    form.extend(signed.params());
    form.extend_from_slice(params);
    post_oauth2(client, &form, None, None).await
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
    if let Grant::Code { redirect_uri, .. } = &grant {
        form.push(("redirect_uri", redirect_uri.as_str()));
    }
    let signed;
    match client.auth_method() {
        AuthMethod::ClientSecret => {
            form.push(("client_secret", client.client_secret().expose_secret()));
        }
        AuthMethod::Signature => {
            signed = signed_params(client, "requesttoken").await?;
            form.extend(signed.params());
        }
    }
    // Expiry counts from before the request left, so it errs early.
    let sent_at = Utc::now();
    let fence = match &grant {
        Grant::Refresh { fence, .. } => *fence,
        Grant::Code { .. } => None,
    };
    let body: TokenBody = post_oauth2(client, &form, Some(secret_value), fence).await?;
    let fallback_user = match grant {
        Grant::Code { .. } => None,
        Grant::Refresh { user_id, .. } => Some(user_id),
    };
    body.into_credentials(sent_at, fallback_user, previous_scopes)
}

/// `action=revoke` (signed).
pub(crate) async fn revoke(client: &Client, user_id: UserId) -> Result<(), ApiError> {
    let user = user_id.to_string();
    let _: serde::de::IgnoredAny = signed_oauth2(client, "revoke", &[("userid", &user)]).await?;
    Ok(())
}

/// `action=getdemoaccess` (signed).
pub(crate) async fn demo_access(client: &Client, scopes: &Scopes) -> Result<Credentials, ApiError> {
    let scope = scopes.to_string();
    let sent_at = Utc::now();
    let body: TokenBody =
        signed_oauth2(client, "getdemoaccess", &[("scope_oauth2", &scope)]).await?;
    body.into_credentials(sent_at, Some(UserId::DEMO), scopes)
}

/// The body of a token answer. `Debug` hides the tokens.
#[derive(Deserialize)]
pub(crate) struct TokenBody {
    #[serde(default)]
    userid: Option<UserId>,
    access_token: AccessToken,
    refresh_token: RefreshToken,
    #[serde(deserialize_with = "expires_in")]
    expires_in: u64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

impl std::fmt::Debug for TokenBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBody")
            .field("userid", &self.userid)
            .finish_non_exhaustive()
    }
}

/// `expires_in`, as a number or a string of digits.
fn expires_in<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    number_or_digits(d, "expires_in")
}

/// The shortest lifetime an access token is given, whatever `expires_in` says.
///
/// A token Withings says expires at once (`expires_in` 0, or a few seconds) would have to be
/// refreshed on every call, one refresh per call for as long as the program runs: that is a
/// server bug, not a lifetime. Such a token is used for this long; if it really is dead sooner,
/// the data call says so (401 `invalid_token`) and the session refreshes once and retries once.
pub const MIN_TOKEN_LIFETIME: u64 = 60;

/// `sent_at + expires_in`, saturating at the largest representable time.
pub(crate) fn expiry(sent_at: DateTime<Utc>, expires_in: u64) -> DateTime<Utc> {
    let secs = i64::try_from(expires_in).unwrap_or(i64::MAX);
    TimeDelta::try_seconds(secs)
        .and_then(|d| sent_at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `expires_in`, raised to [`MIN_TOKEN_LIFETIME`].
fn lifetime(expires_in: u64) -> u64 {
    if expires_in < MIN_TOKEN_LIFETIME {
        tracing::warn!(
            expires_in,
            used = MIN_TOKEN_LIFETIME,
            "Withings gave the access token a lifetime too short to use; using the minimum"
        );
    }
    expires_in.max(MIN_TOKEN_LIFETIME)
}

impl TokenBody {
    /// Turns the body into credentials. `fallback_user` is used when the body has no `userid`
    /// (demo access); `asked` when it has no `scope`.
    pub(crate) fn into_credentials(
        self,
        sent_at: DateTime<Utc>,
        fallback_user: Option<UserId>,
        asked: &Scopes,
    ) -> Result<Credentials, ApiError> {
        let user_id = self
            .userid
            .or(fallback_user)
            .ok_or_else(|| ApiError::Malformed {
                reason: "body: missing field `userid`".into(),
            })?;
        for (name, token) in [
            ("access_token", self.access_token.expose_secret()),
            ("refresh_token", self.refresh_token.expose_secret()),
        ] {
            if !is_token_text(token) {
                return Err(ApiError::Malformed {
                    reason: format!("body: {name} is empty or not printable"),
                });
            }
        }
        Ok(Credentials {
            user_id,
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_at: expiry(sent_at, lifetime(self.expires_in)),
            scopes: match self.scope {
                Some(s) => Scopes::parse_granted(&s),
                None => asked.clone(),
            },
            token_type: self
                .token_type
                .filter(|t| is_token_type(t))
                .unwrap_or_else(|| "Bearer".to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::envelope::parse_answer;
    use proptest::prelude::*;

    fn parse(body: &str) -> Result<TokenBody, ApiError> {
        parse_answer(200, Some("application/json"), body.as_bytes(), &[])
    }

    #[test]
    fn expiry_saturates() {
        let now = Utc::now();
        assert_eq!(expiry(now, u64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(expiry(now, 10800), now + TimeDelta::seconds(10800));
    }

    proptest! {
        #[test]
        fn any_expires_in_is_fine(expires_in: u64) {
            let body = format!(r#"{{"status":0,"body":{{"userid":1,"access_token":"a","refresh_token":"r","expires_in":{expires_in}}}}}"#);
            let creds = parse(&body).unwrap().into_credentials(Utc::now(), None, &Scopes::empty()).unwrap();
            prop_assert!(creds.expires_at() > Utc::now() - TimeDelta::seconds(5));
        }

    }
}
