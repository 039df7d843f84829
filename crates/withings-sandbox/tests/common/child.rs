//! The `withings-sandbox` binary as a child process: started, its printed base URL read, and
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use url::Url;

/// The binary's process; killed (and waited for) when dropped, even when an assertion fails.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` (the binary with its arguments and environment) with its standard output
/// piped, and returns it with the base URL of its first line.
pub async fn spawn(mut command: Command) -> (Child, Url) {
    let mut child = Child(command.stdout(Stdio::piped()).spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("withings-sandbox listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let base = Url::parse(base).unwrap();
    assert_ne!(base.port(), Some(0));
    (child, base)
}
