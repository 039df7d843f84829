//! What an authorize request is made of, for every step of the login: the redirect URIs a
//! client may use and the authorize URL.

use url::Url;

use crate::config::{Client, ConfigError, is_loopback};
use crate::scope::Scopes;

/// `redirect_uri` if `client` may use it: the configured one, or (for a loopback redirect URI
/// configured with port 0) the same with another port (RFC 8252 §7.3).
pub(super) fn allowed_redirect_uri(client: &Client, redirect_uri: Url) -> Result<Url, ConfigError> {
    let configured = client.redirect_uri();
    if &redirect_uri != configured {
        let mut same_but_port = redirect_uri.clone();
        // Port 0: any free port (RFC 8252 §7.3), see the loopback agent.
        let port_free = is_loopback(configured) && configured.port() == Some(0);
        if !port_free
            || same_but_port.set_port(configured.port()).is_err()
            || &same_but_port != configured
        {
            return Err(ConfigError::InvalidRedirectUri(format!(
                "{redirect_uri} differs from the configured {configured}; only the port of a loopback redirect URI with port 0 may change"
            )));
        }
    }
    Ok(redirect_uri)
}

/// Builds `{account}/oauth2_user/authorize2?...` as the protocol says.
pub(super) fn authorize_url(
    client: &Client,
    scopes: &Scopes,
    redirect_uri: &Url,
    state: &str,
    demo: bool,
) -> Url {
    let mut url = client.account_endpoint("oauth2_user/authorize2");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client.client_id())
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("scope", &scopes.to_string())
            .append_pair("state", state);
        if demo {
            q.append_pair("mode", "demo");
        }
    }
    url
}
