//! What the login agents say to the user: the instructions before the first prompt, and why a
//! pasted address was refused (without repeating any of it: it may hold a code).

use url::Url;

use crate::callback::CallbackError;

/// What the user has been told already, which changes the instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "loopback"), allow(dead_code))]
pub(crate) enum Intro {
    /// Nothing opened: the user opens the URL.
    Paste,
    /// A browser was opened at the URL; a loopback listener may also be waiting.
    BrowserOpened {
        /// Whether a loopback listener will catch the redirect by itself.
        listening: bool,
    },
    /// The browser could not be opened (or opening it is disabled).
    BrowserNotOpened {
        /// Whether a loopback listener will catch the redirect by itself.
        listening: bool,
    },
}

/// The text shown before the first prompt. `address` is what the user may open: the
/// authorize URL, or with a loopback listener its one-time start link (which keeps the
/// login's `state` out of the output).
pub(crate) fn instructions(address: &str, redirect_uri: &Url, intro: Intro) -> String {
    let open = match intro {
        Intro::Paste | Intro::BrowserNotOpened { .. } => {
            format!("Open this address in a web browser to log in to Withings:\n\n  {address}\n\n")
        }
        Intro::BrowserOpened { listening: false } => format!(
            "A browser window should now show the Withings login. If it does not, open this address:\n\n  {address}\n\n"
        ),
        Intro::BrowserOpened { listening: true } => format!(
            "A browser window should now show the Withings login. Only if it does not, open this address \
             (it works once: opened a second time, it stops the login):\n\n  {address}\n\n"
        ),
    };
    let listening = matches!(
        intro,
        Intro::BrowserOpened { listening: true } | Intro::BrowserNotOpened { listening: true }
    );
    let after = if listening {
        format!(
            "After you allow access, the login finishes by itself. If the browser shows an error page \
             instead, copy the whole address from its address bar (it starts with {redirect_uri}) \
             and paste it here.\n"
        )
    } else {
        format!(
            "After you allow access, the browser goes to {redirect_uri}; that page may fail to load, \
             which is fine. Copy the whole address from the browser's address bar and paste it here.\n"
        )
    };
    format!("{open}{after}Be quick: the code in that address is valid for 30 seconds.\n")
}

pub(crate) fn copy_advice(redirect_uri: &Url) -> String {
    format!(
        "Copy the whole address from the browser's address bar after allowing access; it starts with {redirect_uri}."
    )
}

pub(crate) fn not_an_address(redirect_uri: &Url) -> String {
    format!(
        "That is not the redirect address. {}",
        copy_advice(redirect_uri)
    )
}

/// Why a candidate was refused, without repeating any of it (it may hold a code).
pub(crate) fn complaint(error: &CallbackError, redirect_uri: &Url) -> String {
    match error {
        CallbackError::NotAUrl => not_an_address(redirect_uri),
        CallbackError::RedirectMismatch { .. } => format!(
            "That address does not go to the redirect URI. {}",
            copy_advice(redirect_uri)
        ),
        CallbackError::MissingState
        | CallbackError::StateMismatch
        | CallbackError::RepeatedParameter(_) => "That address belongs to another login (its state does not match). \
             Open the address shown above, allow access, and paste the address you land on."
            .to_owned(),
        CallbackError::MissingCode => {
            "That address has no authorization code: copy all of it, including everything after '?'."
                .to_owned()
        }
        _ => format!("That address can't be used. {}", copy_advice(redirect_uri)),
    }
}
