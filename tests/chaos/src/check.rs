//! The checker: proves the campaign's properties over the history, the sandbox's ledger and
//! the final database, and nothing else. It shares no code with what it checks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::history::{Op, OpKind, Outcome, hash};
use crate::ledger::Event;

/// The file of a run's directory holding the final database's entries (by user).
pub const FINAL_DB_FILE: &str = "final-db.json";
/// The file of a run's directory holding the checker's [`Settings`].
pub const SETTINGS_FILE: &str = "settings.json";
/// The sandbox's ledger in a run's directory.
pub const LEDGER_FILE: &str = "ledger.jsonl";
/// How soon after its instance was thawed a first exchange counts as a request that left as
/// the instance thawed (the answer possibly dropped by its lapsed timeout).
const SENT_ON_THAW_MS: u64 = 1_000;

/// What a run's directory holds, read back for [`check`].
#[derive(Debug)]
pub struct Run {
    /// Every operation, by invocation time.
    pub ops: Vec<Op>,
    /// History lines cut short (a process killed mid-write).
    pub torn: usize,
    /// The sandbox's ledger.
    pub ledger: Vec<Event>,
    /// The final database.
    pub final_db: BTreeMap<u64, FinalEntry>,
    /// Every log (`logs/*`) and history file, by name: scanned for secrets.
    pub logs: Vec<(String, String)>,
    /// The checker's settings.
    pub settings: Settings,
}

fn json_file<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
}

/// Reads a run's directory: the history files, the ledger, the final database, the settings,
/// the logs. A run can be checked again from it alone.
pub fn read_run(dir: &Path) -> std::io::Result<Run> {
    let (ops, torn) = crate::history::read_dir(dir)?;
    let ledger = crate::ledger::read(&dir.join(LEDGER_FILE))?;
    let final_db = json_file(&dir.join(FINAL_DB_FILE))?;
    let settings = json_file(&dir.join(SETTINGS_FILE))?;
    let mut logs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("logs"))?
        .chain(std::fs::read_dir(dir)?)
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.parent().is_some_and(|d| d.ends_with("logs"))
                || p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("history-"))
        })
        .collect();
    files.sort();
    for path in files {
        let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        logs.push((name, text));
    }
    Ok(Run {
        ops,
        torn,
        ledger,
        final_db,
        logs,
        settings,
    })
}

/// What the final database holds for a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalEntry {
    /// A login: the SHA-256 of its refresh token.
    Credentials {
        /// SHA-256 of the stored refresh token, lowercase hex.
        refresh: String,
    },
    /// The entry says the user must log in again.
    LoginRequired,
}

/// What the checker is told besides the records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// The sandbox's rate limit: requests in any window.
    pub rate_limit: usize,
    /// The rate limit's window, milliseconds.
    pub rate_window_ms: u64,
    /// The bound: after the last fault healed, every user with a live grant gets a token
    /// within this many milliseconds.
    pub recovery_bound_ms: u64,
    /// How close to a refresh token's first exchange a SIGKILL or SIGSTOP of the instance that
    /// made it must be for a later reuse to be blamed on the fault (the exchange's answer was
    /// lost with the process, or the process froze with it past its lease).
    pub in_flight_ms: u64,
    /// Secrets that must appear in no log line: the client secret, the keys...
    pub secrets: Vec<String>,
}

/// One property's result.
#[derive(Clone, Debug, Default)]
pub struct Property {
    /// What it says.
    pub name: &'static str,
    /// How many times it was checked.
    pub checks: u64,
    /// How many checks failed.
    pub violations: u64,
    /// Checks that failed for a reason outside the code under test (said in `note`).
    pub excused: u64,
    /// What the excused checks are, and other figures.
    pub note: String,
    /// The shortest excerpt of the records that shows a violation.
    pub excerpt: Vec<String>,
}

impl Property {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }

    fn violation(&mut self, excerpt: Vec<String>) {
        self.violations += 1;
        if self.excerpt.is_empty() || excerpt.len() < self.excerpt.len() {
            self.excerpt = excerpt;
        }
    }
}

/// Every property's result.
#[derive(Clone, Debug)]
pub struct Report {
    /// In the order of the requirement.
    pub properties: Vec<Property>,
    /// The worst time from the last fault's healing to a user's token, milliseconds.
    pub worst_recovery_ms: Option<u64>,
    /// By kind of fault: the worst time from a fault's healing to the next token handed out
    /// by the fleet instance it struck (by every fleet instance, for the database's and the
    /// sandbox's faults), milliseconds.
    pub recovery_by_fault: BTreeMap<String, u64>,
}

impl Report {
    /// Whether no property was violated.
    pub fn passed(&self) -> bool {
        self.properties.iter().all(|p| p.violations == 0)
    }

    /// The property named `name`.
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.properties {
            write!(
                f,
                "{:<58} checks {:>8}  violations {:>4}",
                p.name, p.checks, p.violations
            )?;
            if p.excused > 0 {
                write!(f, "  excused {}", p.excused)?;
            }
            if !p.note.is_empty() {
                write!(f, "  ({})", p.note)?;
            }
            writeln!(f)?;
        }
        if let Some(ms) = self.worst_recovery_ms {
            writeln!(
                f,
                "worst time to a token after the last fault healed: {ms} ms"
            )?;
        }
        if !self.recovery_by_fault.is_empty() {
            writeln!(
                f,
                "worst time from a fault's healing to the next token of the instances it struck:"
            )?;
            for (kind, ms) in &self.recovery_by_fault {
                writeln!(f, "  {kind:<28} {ms:>8} ms")?;
            }
        }
        for p in self.properties.iter().filter(|p| p.violations > 0) {
            writeln!(f, "\nVIOLATION of \"{}\"; shortest excerpt:", p.name)?;
            for line in &p.excerpt {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// Names of the properties, as printed.
pub mod names {
    /// No forked chain.
    pub const NO_FORK: &str = "no rotated refresh token presented again";
    /// No lost or undone login.
    pub const NO_LOST_LOGIN: &str = "every acknowledged login kept until replaced";
    /// Versions only go forward.
    pub const MONOTONIC: &str = "no reader saw a user's version go back";
    /// The rate limit.
    pub const RATE: &str = "rate limit kept in every sliding window";
    /// Recovery.
    pub const RECOVERY: &str = "every live grant gets a token after healing";
    /// No secret in logs.
    pub const NO_SECRET: &str = "no secret in any log line or output";
    /// Tokens go to their users.
    pub const OWN_TOKEN: &str = "every token handed out was issued to its user";
}

fn show_event(e: &Event) -> String {
    format!("ledger {e:?}")
}

fn show_op(o: &Op) -> String {
    format!(
        "history {}",
        serde_json::to_string(o).unwrap_or_else(|_| format!("{o:?}"))
    )
}

/// The instance a ledger `User-Agent` belongs to: the fleet workers say theirs
/// (`withings-oauth-chaos/fleet-1`); every other agent is one of the web instances.
fn agent_instance(agent: &str) -> Option<&str> {
    agent.strip_prefix("withings-oauth-chaos/")
}

/// Runs every check.
pub fn check(
    ops: &[Op],
    ledger: &[Event],
    final_db: &BTreeMap<u64, FinalEntry>,
    logs: &[(String, String)],
    settings: &Settings,
) -> Report {
    let horizon = ops
        .iter()
        .map(|o| o.done.unwrap_or(o.inv))
        .chain(ledger.iter().map(Event::time))
        .max()
        .unwrap_or(0)
        + 1;
    // Faults that take an instance's answers or writes away: instance -> the times when an
    // exchange's new pair could be lost with them. A kill or a stop loses what is in flight
    // when it strikes; failing writes lose every pair received while they last.
    let mut faults: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for o in ops.iter().filter(|o| o.op == OpKind::Fault) {
        let kind = o.detail.as_deref().unwrap_or_default();
        let until = if kind.starts_with("writes fail") {
            o.done_or(horizon)
        } else if kind.starts_with("kill") || kind.starts_with("stop") {
            o.inv
        } else {
            continue;
        };
        let windows = faults.entry(o.instance.as_str()).or_default();
        windows.push((o.inv, until));
        // A skew is healed by killing the instance and starting it again without it, just
        // before the fault's end is recorded: a second kill.
        if let (true, Some(done)) = (kind.starts_with("kill+skew"), o.done) {
            windows.push((done, done));
        }
    }
    // SIGSTOPs: instance -> (stopped, thawed).
    let mut stops: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for o in ops.iter().filter(|o| o.op == OpKind::Fault) {
        if o.detail.as_deref().is_some_and(|d| d.starts_with("stop")) {
            stops
                .entry(o.instance.as_str())
                .or_default()
                .push((o.inv, o.done_or(horizon)));
        }
    }
    // A refresh request that left right after its instance was thawed, the instance having
    // been stopped before the token's first exchange: it was on its way (its lease checked)
    // when the instance froze, and its lease lapsed meanwhile. A lease cannot fence a frozen
    // holder; only Withings could (it takes no fencing token).
    let thawed_with_it = |agent: &str, first: u64, t: u64| -> bool {
        let Some(instance) = agent_instance(agent) else {
            return false;
        };
        stops.get(instance).is_some_and(|windows| {
            windows.iter().any(|&(stopped, thawed)| {
                stopped <= first && thawed <= t && t <= thawed + settings.in_flight_ms
            })
        })
    };
    // The other way round: the first exchange itself was a request that left as its instance
    // was thawed, its lease (and the request's timeout) lapsed during the stop. The timeout
    // fires as the thawed process runs again, and may drop an answer the server sent: the
    // instance never has the new pair. The same limit, seen from the exchanging side.
    let sent_on_thaw = |agent: &str, first: u64| -> bool {
        let Some(instance) = agent_instance(agent) else {
            return false;
        };
        stops.get(instance).is_some_and(|windows| {
            windows
                .iter()
                .any(|&(_, thawed)| thawed <= first && first <= thawed + SENT_ON_THAW_MS)
        })
    };
    let faulted_near = |agent: &str, t: u64| -> bool {
        let near = |windows: &Vec<(u64, u64)>| {
            windows.iter().any(|&(from, until)| {
                from <= t + settings.in_flight_ms && t <= until + settings.in_flight_ms
            })
        };
        match agent_instance(agent) {
            Some(instance) => faults.get(instance).is_some_and(near),
            None => faults
                .iter()
                .filter(|(i, _)| i.starts_with("web"))
                .any(|(_, times)| near(times)),
        }
    };

    // Chains and tokens from the ledger.
    let mut chain_of_refresh: HashMap<&str, u64> = HashMap::new();
    let mut chain_start: HashMap<u64, u64> = HashMap::new();
    let mut issued_access: HashMap<&str, u64> = HashMap::new();
    let mut token_hashes: HashSet<&str> = HashSet::new();
    for e in ledger {
        if let Event::Issued {
            t,
            user,
            chain,
            access,
            refresh,
            ..
        } = e
        {
            chain_of_refresh.insert(refresh, *chain);
            chain_start.entry(*chain).or_insert(*t);
            issued_access.insert(access, *user);
            token_hashes.insert(access);
            token_hashes.insert(refresh);
        }
    }

    // 1. No forked chain.
    let mut fork = Property::new(names::NO_FORK);
    let mut exchanged: HashMap<&str, (u64, &str, &Event)> = HashMap::new();
    let mut excused_chains: HashSet<u64> = HashSet::new();
    let mut dead_chains: HashMap<u64, u64> = HashMap::new();
    for e in ledger {
        match e {
            Event::Refresh {
                t, token, agent, ..
            } => {
                fork.checks += 1;
                if let Some((t1, first_agent, first)) = exchanged.get(token.as_str()) {
                    let chain = chain_of_refresh.get(token.as_str()).copied();
                    if faulted_near(first_agent, *t1)
                        || thawed_with_it(agent, *t1, *t)
                        || sent_on_thaw(first_agent, *t1)
                    {
                        fork.excused += 1;
                        if let Some(chain) = chain {
                            excused_chains.insert(chain);
                        }
                    } else {
                        let mut excerpt: Vec<String> = ledger
                            .iter()
                            .filter(|x| match x {
                                Event::Issued {
                                    refresh, parent, ..
                                } => refresh == token || parent.as_deref() == Some(token),
                                _ => false,
                            })
                            .map(show_event)
                            .collect();
                        excerpt.push(show_event(first));
                        excerpt.push(show_event(e));
                        fork.violation(excerpt);
                    }
                } else if e_is_exchange(e) {
                    exchanged.insert(token, (*t, agent, e));
                }
            }
            Event::ChainKilled { t, chain } => {
                dead_chains.insert(*chain, *t);
            }
            _ => {}
        }
    }
    if fork.excused > 0 {
        fork.note = "excused: the instance that made the first exchange was killed or stopped \
                     with it in flight, could not write, or sent it as it was thawed; or the one \
                     presenting it again had sent it as it was stopped"
            .into();
    }
    // A user's revocations: chains started before one are dead.
    let mut revoked: HashMap<u64, Vec<u64>> = HashMap::new();
    for e in ledger {
        if let Event::Revoked { t, user } = e {
            revoked.entry(*user).or_default().push(*t);
        }
    }
    let chain_alive = |chain: u64, user: u64| -> bool {
        if dead_chains.contains_key(&chain) {
            return false;
        }
        let start = chain_start.get(&chain).copied().unwrap_or(0);
        !revoked
            .get(&user)
            .is_some_and(|ts| ts.iter().any(|&r| r >= start))
    };

    // 2. Every acknowledged login kept until a later logout or login replaced it.
    let mut lost = Property::new(names::NO_LOST_LOGIN);
    let mut by_user: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for o in ops {
        if let Some(user) = o.user {
            by_user.entry(user).or_default().push(o);
        }
    }
    let mut uncertain = 0;
    for (user, user_ops) in &by_user {
        let last_login = user_ops
            .iter()
            .filter(|o| matches!(o.op, OpKind::Login | OpKind::Seed) && o.outcome == Outcome::Ok)
            .max_by_key(|o| o.done_or(horizon));
        let Some(login) = last_login else { continue };
        let login_done = login.done_or(horizon);
        // A removal invoked after the login was acknowledged: the login may be gone.
        let removed_after = user_ops.iter().any(|o| {
            matches!(o.op, OpKind::Logout | OpKind::Revoke) && o.done_or(horizon) > login_done
        });
        if removed_after {
            uncertain += 1;
            continue;
        }
        lost.checks += 1;
        let mut excerpt = vec![show_op(login)];
        let verdict = match final_db.get(user) {
            None => Err("the final database has no entry for the user".to_owned()),
            Some(FinalEntry::LoginRequired) => {
                Err("the final database says the user must log in again".to_owned())
            }
            Some(FinalEntry::Credentials { refresh }) => {
                match chain_of_refresh.get(refresh.as_str()) {
                    None => Err("the stored refresh token was never issued".to_owned()),
                    Some(chain) => {
                        let start = chain_start.get(chain).copied().unwrap_or(0);
                        if start < login.inv {
                            Err(format!(
                                "the stored login (chain {chain}) is older than the acknowledged one"
                            ))
                        } else if !chain_alive(*chain, *user) {
                            Err(format!("the stored login (chain {chain}) was revoked"))
                        } else {
                            Ok(())
                        }
                    }
                }
            }
        };
        if let Err(why) = verdict {
            // A chain killed because of an excused reuse: lost to the fault, not the code.
            let killed_by_fault = ledger.iter().any(|e| match e {
                Event::Issued { user: u, chain, .. } => {
                    u == user
                        && excused_chains.contains(chain)
                        && chain_start.get(chain).copied().unwrap_or(0) >= login.inv
                }
                _ => false,
            });
            if killed_by_fault {
                lost.excused += 1;
                continue;
            }
            excerpt.push(format!("final database: {why}"));
            lost.violation(excerpt);
        }
    }
    lost.note = format!("{uncertain} users skipped: a removal after their last login");
    if lost.excused > 0 {
        lost.note
            .push_str("; excused: the login's chain died of an excused in-flight reuse");
    }

    // 3. No reader saw a user's version go back.
    let mut mono = Property::new(names::MONOTONIC);
    for user_ops in by_user.values() {
        let reads: Vec<&&Op> = user_ops
            .iter()
            .filter(|o| o.op == OpKind::Read && o.outcome == Outcome::Ok && o.version.is_some())
            .collect();
        let removals: Vec<&&Op> = user_ops
            .iter()
            .filter(|o| matches!(o.op, OpKind::Logout | OpKind::Revoke))
            .collect();
        for r2 in &reads {
            let r2_done = r2.done_or(horizon);
            // Reads before the last removal that may precede r2 belong to an older entry.
            let fence = removals
                .iter()
                .filter(|d| d.inv < r2_done)
                .map(|d| d.done_or(horizon))
                .max()
                .unwrap_or(0);
            mono.checks += 1;
            let before = reads
                .iter()
                .filter(|r1| r1.done_or(horizon) < r2.inv && r1.inv >= fence)
                .max_by_key(|r1| r1.version);
            if let Some(r1) = before
                && r1.version > r2.version
            {
                mono.violation(vec![show_op(r1), show_op(r2)]);
            }
        }
    }

    // 4. The rate limit in every sliding window.
    let mut rate = Property::new(names::RATE);
    // Each request's time and whether a fleet instance sent it.
    let mut window: VecDeque<(u64, bool)> = VecDeque::new();
    let mut busiest = (0, 0);
    for e in ledger {
        if let Event::Rate { t, agent, .. } = e {
            rate.checks += 1;
            while window
                .front()
                .is_some_and(|&(w, _)| w + settings.rate_window_ms <= *t)
            {
                window.pop_front();
            }
            window.push_back((*t, agent_instance(agent).is_some()));
            if window.len() > busiest.0 {
                busiest = (window.len(), window.iter().filter(|(_, f)| *f).count());
            }
            if window.len() > settings.rate_limit {
                rate.violation(vec![
                    format!(
                        "{} requests between {} and {} ms (limit {} per {} ms)",
                        window.len(),
                        window.front().map(|(w, _)| *w).unwrap_or_default(),
                        t,
                        settings.rate_limit,
                        settings.rate_window_ms
                    ),
                    show_event(e),
                ]);
            }
        }
    }
    rate.note = format!(
        "busiest window {} of {}, {} of them from the fleets",
        busiest.0, settings.rate_limit, busiest.1
    );

    // 5. After the last fault healed, every user with a live grant gets a token in time.
    let mut recovery = Property::new(names::RECOVERY);
    let healed = ops
        .iter()
        .filter(|o| o.op == OpKind::Healed)
        .map(|o| o.inv)
        .max();
    let mut worst = None;
    if let Some(healed) = healed {
        for (user, entry) in final_db {
            let FinalEntry::Credentials { refresh } = entry else {
                continue;
            };
            let Some(&chain) = chain_of_refresh.get(refresh.as_str()) else {
                continue;
            };
            if !chain_alive(chain, *user) {
                continue;
            }
            recovery.checks += 1;
            // A grant made after the healing (a login in the quiet time) is owed a token from
            // its making on.
            let since = healed.max(chain_start.get(&chain).copied().unwrap_or(0));
            let first = by_user.get(user).and_then(|user_ops| {
                user_ops
                    .iter()
                    .filter(|o| {
                        o.op == OpKind::Token && o.outcome == Outcome::Ok && o.inv >= healed
                    })
                    .filter_map(|o| o.done)
                    .filter(|&done| done >= since)
                    .min()
            });
            match first {
                Some(done) if done - since <= settings.recovery_bound_ms => {
                    worst = Some(worst.unwrap_or(0).max(done - since));
                }
                other => {
                    let mut excerpt = vec![format!(
                        "user {user}: live grant (chain {chain}) owed a token from {since} ms (healed at {healed} ms), first token {}",
                        other.map_or("never".to_owned(), |d| format!("at {d} ms"))
                    )];
                    if let Some(user_ops) = by_user.get(user) {
                        excerpt.extend(
                            user_ops
                                .iter()
                                .filter(|o| o.inv >= healed)
                                .take(5)
                                .map(|o| show_op(o)),
                        );
                    }
                    recovery.violation(excerpt);
                }
            }
        }
        recovery.note = format!("bound {} ms", settings.recovery_bound_ms);
    } else {
        recovery.note = "no healing recorded".into();
    }

    // 6. No secret in any log line.
    let mut secret = Property::new(names::NO_SECRET);
    for (name, text) in logs {
        for (number, line) in text.lines().enumerate() {
            secret.checks += 1;
            let literal = settings
                .secrets
                .iter()
                .any(|s| !s.is_empty() && line.contains(s.as_str()));
            let token = hex_runs(line, 40).any(|run| token_hashes.contains(hash(run).as_str()));
            if literal || token {
                secret.violation(vec![format!(
                    "{name}:{}: a {} (line not shown)",
                    number + 1,
                    if literal {
                        "configured secret"
                    } else {
                        "token"
                    }
                )]);
            }
        }
    }

    // 7. Every token handed out was issued to its user.
    let mut own = Property::new(names::OWN_TOKEN);
    for o in ops
        .iter()
        .filter(|o| o.op == OpKind::Token && o.outcome == Outcome::Ok)
    {
        let (Some(user), Some(access)) = (o.user, o.access.as_deref()) else {
            continue;
        };
        own.checks += 1;
        if issued_access.get(access) != Some(&user) {
            own.violation(vec![
                show_op(o),
                format!(
                    "the sandbox issued that token to {}",
                    issued_access
                        .get(access)
                        .map_or("nobody".to_owned(), |u| format!("user {u}"))
                ),
            ]);
        }
    }

    Report {
        properties: vec![fork, lost, mono, rate, recovery, secret, own],
        worst_recovery_ms: worst,
        recovery_by_fault: recovery_by_fault(ops),
    }
}

/// The kind of a fault from its detail: `kill`, `stop`, `skew`, `sandbox delay`,
/// `pg_restart`...
pub fn fault_kind(op: &Op) -> String {
    let detail = op.detail.as_deref().unwrap_or_default();
    let first = detail.split(' ').next().unwrap_or_default();
    match first {
        "kill+skew" => "skew".into(),
        "kill" if detail.contains("key rotation") => "kill (key rotation)".into(),
        "kill" if detail.contains("exited") => "kill (had exited)".into(),
        "writes" => "writes fail".into(),
        _ if op.instance == "sandbox" => format!("sandbox {first}"),
        _ => first.into(),
    }
}

fn recovery_by_fault(ops: &[Op]) -> BTreeMap<String, u64> {
    // Each fleet instance's successful token operations: (invocation, completion).
    let mut served: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for o in ops
        .iter()
        .filter(|o| o.op == OpKind::Token && o.outcome == Outcome::Ok)
    {
        if let Some(done) = o.done {
            served
                .entry(o.instance.as_str())
                .or_default()
                .push((o.inv, done));
        }
    }
    for list in served.values_mut() {
        list.sort_unstable();
    }
    let mut worst: BTreeMap<String, u64> = BTreeMap::new();
    for fault in ops.iter().filter(|o| o.op == OpKind::Fault) {
        let Some(healed) = fault.done else { continue };
        let struck: Vec<&str> = if fault.instance.starts_with("fleet") {
            vec![fault.instance.as_str()]
        } else if fault.instance == "postgres" || fault.instance == "sandbox" {
            served.keys().copied().collect()
        } else {
            continue;
        };
        for instance in struck {
            let Some(list) = served.get(instance) else {
                continue;
            };
            let from = list.partition_point(|(inv, _)| *inv < healed);
            if let Some(done) = list[from..].iter().map(|(_, done)| *done).min() {
                let entry = worst.entry(fault_kind(fault)).or_default();
                *entry = (*entry).max(done - healed);
            }
        }
    }
    worst
}

fn e_is_exchange(e: &Event) -> bool {
    matches!(e, Event::Refresh { outcome, .. } if outcome.starts_with("granted"))
}

/// The runs of exactly `len` hex digits in `line` (the shape of the sandbox's tokens).
fn hex_runs(line: &str, len: usize) -> impl Iterator<Item = &str> {
    let bytes = line.as_bytes();
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        if b.is_ascii_hexdigit() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take()
            && i - s == len
        {
            runs.push(&line[s..i]);
        }
    }
    runs.into_iter()
}
