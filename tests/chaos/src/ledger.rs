//! The sandbox's ledger (`withings-sandbox --ledger FILE`): one JSON line per token issued,
//! refresh token presented, chain revoked, user revoked and request counted against the rate
//! limit. Tokens appear only as their SHA-256.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use serde::Deserialize;

/// One line of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// A new access/refresh pair.
    Issued {
        /// Unix milliseconds on the sandbox's clock.
        t: u64,
        /// Its user.
        user: u64,
        /// Its login: a code exchange starts a chain, each refresh continues it.
        chain: u64,
        /// SHA-256 of the access token.
        access: String,
        /// SHA-256 of the refresh token.
        refresh: String,
        /// SHA-256 of the refresh token it rotated away, if it came from a refresh.
        parent: Option<String>,
        /// Its scopes, comma-separated.
        #[serde(default)]
        scope: String,
        /// The `User-Agent` of the request that got it (`minted` for the admin API's).
        #[serde(default)]
        agent: String,
    },
    /// A refresh token presented.
    Refresh {
        /// Unix milliseconds.
        t: u64,
        /// SHA-256 of the refresh token.
        token: String,
        /// Its user, if the sandbox knew the token.
        user: Option<u64>,
        /// `granted`, `granted_in_grace`, `reused`, `dead`, `expired`, `unknown`...
        outcome: String,
        /// The `User-Agent` of the request.
        #[serde(default)]
        agent: String,
    },
    /// Strict rotation revoked a chain.
    ChainKilled {
        /// Unix milliseconds.
        t: u64,
        /// The chain.
        chain: u64,
    },
    /// Every token of a user revoked (`action=revoke`).
    Revoked {
        /// Unix milliseconds.
        t: u64,
        /// The user.
        user: u64,
    },
    /// A request counted against the rate limit.
    Rate {
        /// Unix milliseconds.
        t: u64,
        /// Whether it was let through (`false`: answered 601).
        allowed: bool,
        /// The `User-Agent` of the request.
        #[serde(default)]
        agent: String,
    },
}

impl Event {
    /// When it happened, unix milliseconds on the sandbox's clock.
    pub fn time(&self) -> u64 {
        match self {
            Event::Issued { t, .. }
            | Event::Refresh { t, .. }
            | Event::ChainKilled { t, .. }
            | Event::Revoked { t, .. }
            | Event::Rate { t, .. } => *t,
        }
    }
}

/// Every event of the ledger at `path`, in order. A last line cut short is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Event>> {
    let mut events = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if let Ok(event) = serde_json::from_str::<Event>(&line) {
            events.push(event);
        }
    }
    Ok(events)
}
