//! The history: one JSON line per operation, written by every process of a campaign into its
//! own file of the run's directory (`history-<instance>.jsonl`).
//!
//! A line holds the operation's kind, the instance that ran it, its invocation and completion
//! times (unix milliseconds), its outcome, its user and what it saw (a store version, the
//! SHA-256 of an access token). Tokens are never written: only their hashes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A fleet instance handed out an access token (`Fleet::access_token`).
    Token,
    /// A data call through a fleet (`Fleet::get_meas`).
    Data,
    /// A read of the user's entry in the store: the version it saw.
    Read,
    /// A login through a web instance, from sign-in to the page showing the connection.
    Login,
    /// A disconnect through a web instance: the login removed.
    Logout,
    /// A revoke through a fleet (`Fleet::revoke`): the login removed.
    Revoke,
    /// A login stored directly at the start of a campaign (the fleet's users).
    Seed,
    /// A fault the campaign applied: `detail` names it, `instance` its target; `done` is when
    /// it healed.
    Fault,
    /// The moment every fault had healed (the campaign's quiet phase starts).
    Healed,
    /// The store's keys were rotated (a new key first, the old one still read).
    KeyRotation,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded, and was acknowledged to its caller.
    Ok,
    /// It failed, and its caller was told so.
    Failed,
    /// Its caller never learned the outcome (the process died, a timeout).
    Unknown,
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// What it did.
    pub op: OpKind,
    /// The instance that ran it (`fleet-1`, `web-0`, `campaign`...).
    pub instance: String,
    /// When it was invoked, unix milliseconds.
    pub inv: u64,
    /// When it completed, unix milliseconds; `None` if it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Its user (a Withings user id), if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u64>,
    /// The store version it saw (reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The SHA-256 of the access token it got (tokens), lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// Free text: a fault's kind, a failure's kind (never a token nor a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Op {
    /// An operation of `kind` on `instance`, invoked now, its outcome unknown so far.
    pub fn start(kind: OpKind, instance: &str) -> Self {
        Self {
            op: kind,
            instance: instance.to_owned(),
            inv: now_ms(),
            done: None,
            outcome: Outcome::Unknown,
            user: None,
            version: None,
            access: None,
            detail: None,
        }
    }

    /// For `user`.
    pub fn user(mut self, user: u64) -> Self {
        self.user = Some(user);
        self
    }

    /// Completed now with `outcome`.
    pub fn end(mut self, outcome: Outcome) -> Self {
        self.done = Some(now_ms());
        self.outcome = outcome;
        self
    }

    /// With `detail`.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// When it completed, or `horizon` for an operation that never did.
    pub fn done_or(&self, horizon: u64) -> u64 {
        self.done.unwrap_or(horizon)
    }
}

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The SHA-256 of a secret, in lowercase hex: what the history and the ledger keep of a token.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// An append-only history file; each operation one `write` of one line, so that a process
/// killed at any moment leaves whole lines behind (or none).
#[derive(Debug)]
pub struct HistoryWriter {
    file: Mutex<File>,
}

impl HistoryWriter {
    /// Opens `path` for appending, creating it if missing.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Appends `op`. A failed write is reported on stderr: the run goes on, and the checker
    /// sees the operation missing.
    pub fn record(&self, op: &Op) {
        let mut line = match serde_json::to_string(op) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("history: an operation could not be encoded: {e}");
                return;
            }
        };
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("history: an operation could not be written: {e}");
        }
    }
}

/// Every operation of every `history-*.jsonl` file in `dir`, by invocation time. A line cut
/// short (a process killed mid-write) is skipped and counted in the second value.
pub fn read_dir(dir: &Path) -> std::io::Result<(Vec<Op>, usize)> {
    let mut ops = Vec::new();
    let mut torn = 0;
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("history-") && n.ends_with(".jsonl"))
        })
        .collect();
    paths.sort();
    for path in paths {
        for line in BufReader::new(File::open(&path)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Op>(&line) {
                Ok(op) => ops.push(op),
                Err(_) => torn += 1,
            }
        }
    }
    ops.sort_by_key(|o| (o.inv, o.done));
    Ok((ops, torn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_through_a_file_and_torn_lines_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let writer = HistoryWriter::open(&dir.path().join("history-a.jsonl")).unwrap();
        let op = Op::start(OpKind::Read, "fleet-1").user(7).end(Outcome::Ok);
        writer.record(&op);
        std::fs::write(dir.path().join("history-b.jsonl"), "{\"op\":\"tok").unwrap();
        let (ops, torn) = read_dir(dir.path()).unwrap();
        assert_eq!((ops, torn), (vec![op], 1));
    }
}
