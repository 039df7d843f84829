//! Ports and child processes, for tests that start programs: a free port to give one, and
//! waits on children that fail the test when the child does.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A port of 127.0.0.1 that was free a moment ago: for a program that must be told its port
/// before it starts, or for an address nothing listens on. Another program may take it
/// meanwhile: a test that starts a server on it should start again on another port when the
/// bind fails.
///
/// ```
/// let port = withings_oauth::testing::free_port();
/// assert_ne!(port, 0);
/// ```
///
/// # Panics
/// If no port of 127.0.0.1 can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Waits until `path` exists (a file a child process creates to say where it is), checking
/// every 20 ms.
///
/// # Panics
/// If `child` exits before, or `within` passes first: the test fails saying which.
pub async fn wait_for_file(path: &Path, child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        if let Some(status) = child.try_wait().expect("the child's status") {
            panic!(
                "a child exited ({status}) before creating {}",
                path.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared within {within:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `child` to exit, without blocking the runtime.
///
/// # Panics
/// If it exits unsuccessfully (or can't be waited for).
pub async fn wait_for_success(mut child: Child) {
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("the wait ran")
        .expect("the child could be waited for");
    assert!(status.success(), "a child process failed: {status}");
}
