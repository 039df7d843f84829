//! The ledger: one JSON line per token issued, refresh token presented, chain revoked and
//! request counted against the rate limit, written to a file (`SandboxConfig::ledger`,
//! `--ledger FILE`) for checkers that prove properties over a whole run. Tokens appear only
//! as the SHA-256 of their value, in lowercase hex.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// An open ledger file: each event is one `write` of one line, so that a reader sees whole
/// lines even while the sandbox runs.
#[derive(Debug)]
pub(crate) struct Ledger {
    file: File,
}

/// A request's `User-Agent`, for the ledger's `agent` (empty without one).
pub(crate) fn agent(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The SHA-256 of a token, in lowercase hex: what the ledger says instead of the token.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Ledger {
    /// Creates (or truncates) `path`.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: File::create(path)?,
        })
    }

    /// Appends `event` with its time (`t`, unix milliseconds on the sandbox's clock). A
    /// failed write is logged, never fatal: the sandbox keeps serving.
    pub(crate) fn write(&mut self, at: SystemTime, kind: &str, mut event: Value) {
        if let Some(map) = event.as_object_mut() {
            map.insert("t".into(), json!(millis(at)));
            map.insert("ev".into(), json!(kind));
        }
        let mut line = event.to_string();
        line.push('\n');
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "the ledger could not be written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_hashes_and_times() {
        let dir = std::env::temp_dir().join(format!("ledger-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        let mut ledger = Ledger::create(&path).unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        ledger.write(at, "refresh", json!({ "token": hash("secret-token") }));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("secret-token"));
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["t"], 1_500);
        assert_eq!(line["ev"], "refresh");
        assert_eq!(line["token"].as_str().unwrap().len(), 64);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
