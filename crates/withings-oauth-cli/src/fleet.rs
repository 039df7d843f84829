//! `fleet status` and `fleet sweep`: the stored users of a fleet at a glance, and one pass of
//! the fleet's sweep of idle logins. Both work on any store; on a database store the sweep
//! waits for the rate limit the fleet's instances share, and the status shows it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use withings_oauth::{DEFAULT_MARGIN, StoredEntry};
use withings_oauth_fleet::{Fleet, FleetError, RateLimit, RateLimiter};

use crate::cli::{FleetStatusArgs, FleetSweepArgs, RateLimitArgs};
use crate::error::{CliError, Kind};
use crate::ops;
use crate::out::say;
use crate::settings::Settings;
use crate::store::{Store, store_error};

/// How many users a text line names before it says "and N more".
const NAMED: usize = 20;

/// What `fleet status` reports (`--json` prints it as is).
#[derive(Debug, Default, Serialize)]
struct Status {
    store: String,
    users: usize,
    /// The access token is valid beyond the refresh margin ([`DEFAULT_MARGIN`]).
    fresh: usize,
    /// It expires within the margin: the next use refreshes it.
    due: usize,
    /// It has expired: the next use refreshes it (the refresh token lives a year).
    expired: usize,
    /// Withings refused the refresh token: the user must log in again.
    login_required: usize,
    /// Among the expired, those unused for `idle_after_seconds`: what `fleet sweep` renews.
    idle: usize,
    idle_after_seconds: u64,
    login_required_users: Vec<u64>,
    /// The login refreshed least recently (its access token expires first).
    least_recently_refreshed: Option<Oldest>,
    /// The shared rate limit of a database store.
    rate_limit: Option<RateLimitStatus>,
}

#[derive(Debug, Serialize)]
struct Oldest {
    user: u64,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct RateLimitStatus {
    name: String,
    requests_per_minute: u32,
    burst: u32,
    tokens: f64,
    slowed_for_seconds: Option<f64>,
}

// Whether a login went unused for `idle`: the fleet's own rule, so that the idle count of
// `status` is what `sweep` renews.
use withings_oauth_fleet::is_idle as idle_since;

fn rate_limit(args: &RateLimitArgs) -> RateLimit {
    RateLimit::per_minute(args.rate_limit)
}

/// `fleet status`.
/// How many users `fleet status` reads at once.
const STATUS_READS_IN_FLIGHT: usize = 256;

pub(crate) async fn status(settings: &Settings, args: &FleetStatusArgs) -> Result<(), CliError> {
    let store = Store::open_setting(settings.store_path()?).await?;
    let mut status = Status {
        store: store.location().to_owned(),
        idle_after_seconds: args.idle_after.as_secs(),
        ..Status::default()
    };
    let now = Utc::now();
    // Many reads in flight, so that a SQL store gathers them into few statements (a store of
    // 100,000 users is read in a few hundred round trips, not 100,000).
    let users = store.users().await?;
    let mut entries = stream::iter(users.into_iter().map(|user| {
        let store = &store;
        async move { (user, store.load(user).await) }
    }))
    .buffered(STATUS_READS_IN_FLIGHT);
    while let Some((user, entry)) = entries.next().await {
        let Some(entry) = entry? else {
            continue; // logged out meanwhile
        };
        status.users += 1;
        match entry {
            StoredEntry::Credentials(credentials) => {
                let expires_at = credentials.expires_at();
                if expires_at <= now {
                    status.expired += 1;
                    if idle_since(expires_at, args.idle_after, now) {
                        status.idle += 1;
                    }
                } else if credentials.expires_within(DEFAULT_MARGIN, now) {
                    status.due += 1;
                } else {
                    status.fresh += 1;
                }
                if status
                    .least_recently_refreshed
                    .as_ref()
                    .is_none_or(|oldest| expires_at < oldest.expires_at)
                {
                    status.least_recently_refreshed = Some(Oldest {
                        user: user.get(),
                        expires_at,
                    });
                }
            }
            _ => {
                status.login_required += 1;
                status.login_required_users.push(user.get());
            }
        }
    }
    status.rate_limit = shared_rate_limit(&store, rate_limit(&args.limit)).await?;
    store.close().await;
    if args.json {
        let json = serde_json::to_string_pretty(&status)
            .map_err(|e| CliError::new(Kind::Output, format!("cannot write the JSON: {e}")))?;
        return say!("{json}");
    }
    print_status(&status, args.idle_after, now)
}

#[cfg(feature = "sql")]
async fn shared_rate_limit(
    store: &Store,
    limit: RateLimit,
) -> Result<Option<RateLimitStatus>, CliError> {
    use withings_oauth_fleet::SqlRateLimiter;
    let Some(sql) = store.sql_store() else {
        return Ok(None);
    };
    let limiter = SqlRateLimiter::new(sql, limit);
    let state = limiter
        .bucket()
        .state()
        .await
        .map_err(|e| store_error(&e))?;
    Ok(Some(RateLimitStatus {
        name: limiter.bucket().name().to_owned(),
        requests_per_minute: limit.requests(),
        burst: limit.burst(),
        tokens: (state.tokens * 10.0).floor() / 10.0,
        slowed_for_seconds: state.slowed_for.map(|d| d.as_secs_f64()),
    }))
}

#[cfg(not(feature = "sql"))]
async fn shared_rate_limit(
    _store: &Store,
    _limit: RateLimit,
) -> Result<Option<RateLimitStatus>, CliError> {
    Ok(None)
}

fn named(users: &[u64]) -> String {
    let mut text: Vec<String> = users.iter().take(NAMED).map(u64::to_string).collect();
    if users.len() > NAMED {
        text.push(format!("and {} more", users.len() - NAMED));
    }
    text.join(", ")
}

fn print_status(status: &Status, idle_after: Duration, now: DateTime<Utc>) -> Result<(), CliError> {
    say!("store: {}", status.store)?;
    say!("users: {}", status.users)?;
    let margin = DEFAULT_MARGIN.num_minutes();
    say!(
        "  fresh:          {:>6}  (access token valid for more than {margin} minutes)",
        status.fresh
    )?;
    say!(
        "  due:            {:>6}  (expires within {margin} minutes: refreshed on the next use)",
        status.due
    )?;
    say!(
        "  expired:        {:>6}  (refreshed on the next use)",
        status.expired
    )?;
    say!(
        "    idle:         {:>6}  (unused for {}: `withings-oauth fleet sweep` renews them)",
        status.idle,
        describe(idle_after)
    )?;
    say!(
        "  login required: {:>6}{}",
        status.login_required,
        if status.login_required_users.is_empty() {
            String::new()
        } else {
            format!(
                "  (must log in again: user {})",
                named(&status.login_required_users)
            )
        }
    )?;
    if let Some(oldest) = &status.least_recently_refreshed {
        say!(
            "least recently refreshed: user {}, access token {}",
            oldest.user,
            ops::describe_expiry(oldest.expires_at, now)
        )?;
    }
    if let Some(limit) = &status.rate_limit {
        let slowed = match limit.slowed_for_seconds {
            Some(s) => format!(", slowed after a 601 for {s:.0} s more"),
            None => String::new(),
        };
        say!(
            "shared rate limit \"{}\": {:.1} of {} requests available ({} a minute){slowed}",
            limit.name,
            limit.tokens,
            limit.burst,
            limit.requests_per_minute
        )?;
    }
    Ok(())
}

/// `30d`, `12h`, `90m`, `45s`: the largest unit that divides `duration`.
fn describe(duration: Duration) -> String {
    let s = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// `fleet sweep`: one pass of [`Fleet::sweep_once`].
pub(crate) async fn sweep(settings: &Settings, args: &FleetSweepArgs) -> Result<(), CliError> {
    let store = Store::open_setting(settings.store_path()?).await?;
    let client = settings.client_builder()?;
    let limit = rate_limit(&args.limit);
    let mut builder = Fleet::builder(client, store.shared())
        .rate_limit(limit)
        .sweep_idle_after(args.idle_after)
        // A user is skipped only if another program holds its lease for a while (a refresh),
        // not because the database took more than a few ms to answer.
        .sweep_claim_wait(Duration::from_secs(2))
        // A command, not a server: a 601 is retried a few times, then reported.
        .backoff(Duration::from_secs(1), Duration::from_secs(10), 4);
    if let Some(limiter) = shared_limiter(&store, limit) {
        builder = builder.limiter(limiter);
    }
    let fleet = builder.build().map_err(|e| settings.client_error(&e))?;
    if let Some(every) = args.every {
        let served = crate::service::run(
            &fleet,
            &store,
            every,
            args.batch as usize,
            args.metrics_listen,
        )
        .await;
        store.close().await;
        return served;
    }
    let swept = fleet.sweep_once(args.batch as usize).await;
    store.close().await;
    let report = swept.map_err(|e| fleet_error(&e))?;
    if args.json {
        let json = serde_json::json!({
            "store": store.location(),
            "due": report.due,
            "renewed": report.renewed,
            "claimed_elsewhere": report.claimed_elsewhere,
            "failed": report.failed,
        });
        say!("{json:#}")?;
    } else {
        say!(
            "Swept {}: {} idle login(s) due, {} renewed, {} left to another instance renewing them, {} failed.",
            store.location(),
            report.due,
            report.renewed,
            report.claimed_elsewhere,
            report.failed
        )?;
    }
    if report.failed > 0 {
        return Err(CliError::new(
            Kind::Remote,
            format!(
                "{} renewal(s) failed: `withings-oauth fleet status` shows who must log in again; retry the others later",
                report.failed
            ),
        ));
    }
    Ok(())
}

#[cfg(feature = "sql")]
fn shared_limiter(store: &Store, limit: RateLimit) -> Option<Arc<dyn RateLimiter>> {
    let sql = store.sql_store()?;
    Some(Arc::new(withings_oauth_fleet::SqlRateLimiter::new(
        sql, limit,
    )))
}

#[cfg(not(feature = "sql"))]
fn shared_limiter(_store: &Store, _limit: RateLimit) -> Option<Arc<dyn RateLimiter>> {
    None
}

fn fleet_error(error: &FleetError) -> CliError {
    match error {
        FleetError::Session(e) => match e {
            withings_oauth::SessionError::Store(e) => store_error(e),
            _ => CliError::new(Kind::Remote, format!("the sweep failed: {error}")),
        },
        other => CliError::new(Kind::Remote, format!("the sweep failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_means_expired_for_at_least_the_period() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        assert!(idle_since(now - chrono::TimeDelta::days(2), day, now));
        assert!(!idle_since(now - chrono::TimeDelta::hours(2), day, now));
        assert!(!idle_since(now, Duration::MAX, now));
    }

    #[test]
    fn durations_are_shown_in_their_largest_unit() {
        assert_eq!(describe(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(describe(Duration::from_secs(7200)), "2h");
        assert_eq!(describe(Duration::from_secs(90)), "90s");
        assert_eq!(describe(Duration::ZERO), "0s");
    }

    #[test]
    fn long_lists_of_users_are_cut() {
        let users: Vec<u64> = (1..=25).collect();
        let text = named(&users);
        assert!(text.ends_with("20, and 5 more"), "{text}");
        assert_eq!(named(&[7]), "7");
    }
}
