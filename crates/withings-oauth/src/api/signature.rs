//! Signed calls: nonces from `/v2/signature` and HMAC-SHA256 signatures.
//!
//! A signature is the lowercase hex HMAC-SHA256, keyed by the client secret, of the values of the
//! signed parameters sorted by parameter name and joined with commas.

use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;

use crate::api::error::ApiError;
use crate::api::transport::{TOKEN_BODY_LIMIT, post_form};
use crate::config::Client;

/// Signs `params`: sorts them by name, joins the values with commas, and returns the lowercase
/// hex HMAC-SHA256 keyed by `secret` (a [`ClientSecret`](crate::ClientSecret) or any
/// [`secrecy`] secret string).
///
/// ```
/// use secrecy::SecretString;
/// use withings_oauth::sign;
///
/// let secret = SecretString::from("my-client-secret");
/// let sig = sign(&secret, &[("timestamp", "1700000000"), ("action", "getnonce"), ("client_id", "my-id")]);
/// assert_eq!(sig.len(), 64);
/// // The same as signing the values in name order.
/// assert_eq!(sig, sign(&secret, &[("action", "getnonce"), ("client_id", "my-id"), ("timestamp", "1700000000")]));
/// ```
pub fn sign<S: ExposeSecret<str> + ?Sized>(secret: &S, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let joined = sorted.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(",");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(joined.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Deserialize)]
struct NonceBody {
    nonce: String,
}

/// Gets a fresh nonce (`action=getnonce`): single-use, valid 30 minutes.
pub async fn get_nonce(client: &Client) -> Result<String, ApiError> {
    let timestamp = Utc::now().timestamp().to_string();
    let params = [
        ("action", "getnonce"),
        ("client_id", client.client_id()),
        ("timestamp", timestamp.as_str()),
    ];
    let signature = sign(client.client_secret(), &params);
    let mut form = params.to_vec();
    form.push(("signature", &signature));
    let body: NonceBody = post_form(
        client,
        "v2/signature",
        &form,
        None,
        &[client.client_secret().expose_secret()],
        TOKEN_BODY_LIMIT,
        None,
    )
    .await?;
    if body.nonce.is_empty() || !body.nonce.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::Malformed {
            reason: "body: the nonce is empty or not printable".into(),
        });
    }
    tracing::debug!(client_id = client.client_id(), "got a nonce");
    Ok(body.nonce)
}

/// The `nonce` and `signature` of one signed call.
pub(crate) struct Signed {
    nonce: String,
    signature: String,
}

impl Signed {
    /// The two form parameters.
    pub(crate) fn params(&self) -> [(&'static str, &str); 2] {
        [("nonce", &self.nonce), ("signature", &self.signature)]
    }
}

/// The `nonce` and `signature` for a signed call of `action`.
pub(crate) async fn signed_params(client: &Client, action: &str) -> Result<Signed, ApiError> {
    let nonce = get_nonce(client).await?;
    let signature = sign(
        client.client_secret(),
        &[
            ("action", action),
            ("client_id", client.client_id()),
            ("nonce", &nonce),
        ],
    );
    Ok(Signed { nonce, signature })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn known_vector() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b'secret',b'getnonce,client,1700000000',hashlib.sha256).hexdigest())"
        let sig = sign(
            &SecretString::from("secret"),
            &[
                ("client_id", "client"),
                ("timestamp", "1700000000"),
                ("action", "getnonce"),
            ],
        );
        assert_eq!(
            sig,
            "4b8337ee03dce86858470675ac49d649acea0f1afaaafcd539b925f6e26084ee"
        );
    }
}
