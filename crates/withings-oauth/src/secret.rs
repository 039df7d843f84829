//! One type per secret: the client secret, an authorization code, the OAuth `state`, and the
//! access and refresh tokens.
//!
//! Each is a [`SecretString`] behind an `Arc` (cheap to clone, zeroized when the last clone is
//! dropped) with a `Debug` that prints only the type's name. None of them implements
//! `Serialize`, so a secret can't end up in JSON by accident: stores write tokens through the
//! one explicit path, [`Credentials::reveal_for_storage`](crate::Credentials::reveal_for_storage).
//! Distinct types mean a function that wants a refresh token can't be handed an access token.

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

/// Declares a secret type over `Arc<SecretString>`.
macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(Arc<SecretString>);

        impl $name {
            /// Wraps a secret.
            pub fn new(secret: impl Into<String>) -> Self {
                Self(Arc::new(SecretString::from(secret.into())))
            }

            /// The secret's text.
            ///
            /// # Security
            /// Send it only where it belongs; never log it or put it in an error message.
            pub fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl ExposeSecret<str> for $name {
            fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl From<String> for $name {
            fn from(secret: String) -> Self {
                Self::new(secret)
            }
        }

        impl From<&str> for $name {
            fn from(secret: &str) -> Self {
                Self::new(secret)
            }
        }

        impl From<SecretString> for $name {
            fn from(secret: SecretString) -> Self {
                Self(Arc::new(secret))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                SecretString::deserialize(d).map(Self::from)
            }
        }
    };
}

secret_type! {
    /// The app's client secret, from the Withings developer dashboard.
    ClientSecret
}

secret_type! {
    /// An authorization code: valid 30 seconds, once, for one redirect URI.
    AuthorizationCode
}

secret_type! {
    /// The OAuth `state` of one login: it ties the callback to the browser that started it.
    CsrfState
}

secret_type! {
    /// An access token, for `Authorization: Bearer ...`. Cheap to clone.
    AccessToken
}

secret_type! {
    /// A refresh token. Withings rotates it on every refresh: the previous one dies once the new
    /// access token is used (or 8 hours later).
    RefreshToken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_the_type_and_hides_the_value() {
        let token = RefreshToken::new("r3fr3sh-value");
        assert_eq!(format!("{token:?}"), "RefreshToken([redacted])");
        assert_eq!(token.expose_secret(), "r3fr3sh-value");
        let from_json: AccessToken = serde_json::from_str("\"a-value\"").unwrap();
        assert_eq!(format!("{from_json:?}"), "AccessToken([redacted])");
        assert_eq!(from_json.clone().expose_secret(), "a-value");
    }
}
