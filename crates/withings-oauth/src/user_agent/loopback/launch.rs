//! Opening the system browser, and how long a login waits for its callback.

use std::io;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

/// Default for the whole login of either agent.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Opens the system browser at `url`: a start link, or the authorize URL when there is no
/// listener. It goes on the command line of the program that opens the browser.
pub(super) async fn open_in_browser(url: &SecretString) -> io::Result<()> {
    let url = url.expose_secret().to_owned();
    tokio::task::spawn_blocking(move || webbrowser::open(&url))
        .await
        .map_err(io::Error::other)?
}
