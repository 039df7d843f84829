//! Refresh token rotation: every refresh returns a new pair, the old refresh token dies 8 h
//! later or as soon as the new access token is used, and, with strict rotation, presenting a
//! rotated refresh token again revokes the whole chain.

use std::time::SystemTime;

use crate::clock::later;
use crate::counters::RefreshOutcome;
use crate::state::{Dead, Inner, MAX_TOKENS, Pair, evict_oldest};

/// Who a data call acts for: what an access token grants.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) userid: u64,
    pub(crate) scopes: Vec<String>,
}

impl Grant {
    pub(crate) fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl Inner {
    /// Removes a refresh token; if it had been rotated away, remembers it as dead.
    pub(crate) fn bury(&mut self, token: &str) {
        let Some(r) = self.refresh.remove(token) else {
            return;
        };
        if !r.rotated() {
            return;
        }
        if self.dead.len() >= MAX_TOKENS {
            evict_oldest(&mut self.dead, |d| d.expires_at);
        }
        self.dead.insert(
            token.to_owned(),
            Dead {
                client_id: r.client_id,
                userid: r.userid,
                expires_at: r.expires_at,
                chain: r.chain,
            },
        );
    }

    /// Rotates a refresh token: `None` if it is unknown, belongs to another client, expired
    /// or died (grace over, or its successor's access token was used). Counts the outcome
    /// for the token's user.
    ///
    /// A token still inside its grace period can be rotated again and yields another fresh
    /// pair; its own deadline is not extended. With strict rotation it is refused instead,
    /// and its chain is revoked.
    pub(crate) fn rotate(&mut self, token: &str, client_id: &str, now: SystemTime) -> Option<Pair> {
        let (pair, user, outcome) = self.rotate_inner(token, client_id, now);
        if let Some(ledger) = &mut self.ledger {
            ledger.write(
                now,
                "refresh",
                serde_json::json!({
                    "token": crate::ledger::hash(token),
                    "user": user,
                    "outcome": outcome,
                    "agent": self.agent,
                }),
            );
        }
        pair
    }

    /// [`rotate`](Self::rotate), also answering the token's user (if known) and what came of
    /// it, for the ledger.
    fn rotate_inner(
        &mut self,
        token: &str,
        client_id: &str,
        now: SystemTime,
    ) -> (Option<Pair>, Option<u64>, &'static str) {
        let strict = self.config.strict_rotation;
        let grace = self.config.old_refresh_grace;
        let Some(old) = self.refresh.get_mut(token) else {
            if let Some(dead) = self.dead.get(token).filter(|d| d.client_id == client_id) {
                let (userid, chain) = (dead.userid, dead.chain);
                let outcome = if strict {
                    RefreshOutcome::Reused {
                        killed: self.kill_chain(chain, now),
                    }
                } else {
                    RefreshOutcome::DeadToken
                };
                self.counters.count_refresh(userid, outcome);
                let said = if strict { "reused" } else { "dead" };
                return (None, Some(userid), said);
            }
            return (None, None, "unknown");
        };
        if old.client_id != client_id {
            return (None, None, "other_client");
        }
        let (userid, rotated, chain) = (old.userid, old.rotated(), old.chain);
        if strict && rotated {
            // OAuth 2.0 Security BCP §4.14.2: a rotated refresh token presented again means
            // two parties hold the grant, so none of them keeps it.
            let killed = self.kill_chain(chain, now);
            self.counters
                .count_refresh(userid, RefreshOutcome::Reused { killed });
            return (None, Some(userid), "reused");
        }
        if old.deadline() <= now {
            if rotated {
                self.counters
                    .count_refresh(userid, RefreshOutcome::DeadToken);
                return (None, Some(userid), "dead");
            }
            return (None, Some(userid), "expired");
        }
        old.dies_at.get_or_insert(later(now, grace));
        let scopes = old.scopes.clone();
        self.counters
            .count_refresh(userid, RefreshOutcome::Granted { in_grace: rotated });
        let outcome = if rotated {
            "granted_in_grace"
        } else {
            "granted"
        };
        let pair = self.issue_pair(client_id, userid, scopes, Some(token.to_owned()), now);
        (Some(pair), Some(userid), outcome)
    }

    /// Revokes every access and refresh token of `chain`; its rotated refresh tokens are
    /// remembered as dead, so that presenting one later is still recognised. `true` if the
    /// chain still had a live refresh token that had not been rotated, i.e. a grant ended.
    fn kill_chain(&mut self, chain: u64, now: SystemTime) -> bool {
        self.access.retain(|_, a| a.chain != chain);
        let tokens: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, r)| r.chain == chain)
            .map(|(t, _)| t.clone())
            .collect();
        let alive = tokens.iter().any(|t| {
            self.refresh
                .get(t)
                .is_some_and(|r| !r.rotated() && r.deadline() > now)
        });
        for token in tokens {
            self.bury(&token);
        }
        if let Some(ledger) = &mut self.ledger {
            ledger.write(now, "chain_killed", serde_json::json!({ "chain": chain }));
        }
        if alive {
            tracing::info!(
                chain,
                "strict rotation: a rotated refresh token came back, chain revoked"
            );
        }
        alive
    }

    /// Looks up an access token for a data call and marks it used. On first use the refresh
    /// token it replaced dies. `None` if unknown or expired.
    pub(crate) fn use_access(&mut self, token: &str, now: SystemTime) -> Option<Grant> {
        let access = self.access.get_mut(token)?;
        if access.expires_at <= now {
            return None;
        }
        access.used = true;
        let found = Grant {
            client_id: access.client_id.clone(),
            userid: access.userid,
            scopes: access.scopes.clone(),
        };
        if let Some(old) = access.replaces.take() {
            self.bury(&old);
        }
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::SandboxConfig;
    use crate::state::{Inner, Shared};

    fn inner(config: SandboxConfig) -> Inner {
        Shared::new(config).into_inner()
    }

    #[test]
    fn a_rotated_token_past_its_grace_counts_as_dead_before_and_after_the_purge() {
        let mut s = inner(SandboxConfig::default());
        let id = crate::DEFAULT_CLIENT_ID;
        let t0 = SystemTime::now();
        let first = s.issue_pair(id, 7, vec![], None, t0);
        assert!(s.rotate(&first.refresh_token, id, t0).is_some());
        let after_grace = t0 + s.config.old_refresh_grace;
        assert!(s.rotate(&first.refresh_token, id, after_grace).is_none());
        assert_eq!(s.counters.user(7).refresh_dead_token, 1);
        s.maybe_purge(after_grace);
        assert!(!s.refresh.contains_key(&first.refresh_token));
        assert!(s.rotate(&first.refresh_token, id, after_grace).is_none());
        // Another client presenting it is not this user's client losing a pair.
        assert!(
            s.rotate(&first.refresh_token, "other", after_grace)
                .is_none()
        );
        assert_eq!(s.counters.user(7).refresh_dead_token, 2);
        assert_eq!(s.counters.user(7).rotated_refresh_reused, 2);
        // Forgotten once it would have expired anyway.
        s.maybe_purge(after_grace + Duration::from_secs(366 * 24 * 3600));
        assert!(s.dead.is_empty());
    }

    #[test]
    fn strict_rotation_revokes_only_the_chain_of_the_reused_token() {
        let mut s = inner(SandboxConfig::default().strict_rotation(true));
        let id = crate::DEFAULT_CLIENT_ID;
        let t0 = SystemTime::now();
        let a0 = s.issue_pair(id, 7, vec![], None, t0);
        let b0 = s.issue_pair(id, 7, vec![], None, t0);
        let a1 = s.rotate(&a0.refresh_token, id, t0).expect("first use");
        // The successor's access token was used: a0 is dead, and still recognised.
        assert!(s.use_access(&a1.access_token, t0).is_some());
        assert!(s.rotate(&a0.refresh_token, id, t0).is_none());
        assert!(s.use_access(&a1.access_token, t0).is_none());
        assert!(s.rotate(&a1.refresh_token, id, t0).is_none());
        assert_eq!(
            (s.counters.chains_killed, s.counters.rotated_refresh_reused),
            (1, 1)
        );
        // Another login of the same user lives on.
        assert!(s.rotate(&b0.refresh_token, id, t0).is_some());
        // Presenting a0 once more counts again, but kills nothing more.
        assert!(s.rotate(&a0.refresh_token, id, t0).is_none());
        assert_eq!(
            (s.counters.chains_killed, s.counters.rotated_refresh_reused),
            (1, 2)
        );
    }
}
