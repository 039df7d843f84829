//! [`RateLimiter`]: one budget of requests to Withings for the whole application, and
//! [`TokenBucket`], the limiter of one process.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use withings_oauth::{BeforeRequest, BoxFuture};

/// Waits for the right to send one request to Withings, for every call of the application.
///
/// Object-safe, so that a limiter shared by several instances (in a database, say) can stand
/// in for the local [`TokenBucket`]: the fleet holds an `Arc<dyn RateLimiter>`.
///
/// # Cancellation
/// Dropping the future returned by [`acquire`](Self::acquire) gives up the wait and takes
/// nothing from the budget: a caller that times out or is dropped does not spend a request.
pub trait RateLimiter: Send + Sync {
    /// Resolves when one request may be sent, and counts it.
    fn acquire(&self) -> BoxFuture<'_, ()>;

    /// Withings answered 601 (too many requests): slow down, the budget is smaller than
    /// configured (other applications of the same account, or a limit lower than documented).
    fn rate_limited(&self);
}

/// Puts `limiter` in front of every request of a client:
/// [`ClientBuilder::before_request`](withings_oauth::ClientBuilder::before_request).
///
/// ```
/// use std::sync::Arc;
/// use withings_oauth::Client;
/// use withings_oauth_fleet::{RateLimit, TokenBucket, request_gate};
///
/// let limiter = Arc::new(TokenBucket::new(RateLimit::default()));
/// let client = Client::builder()
///     .client_id("my-client-id")
///     .client_secret("my-client-secret")
///     .redirect_uri("https://app.example.com/withings/callback")
///     .before_request(request_gate(limiter))
///     .build()
///     .unwrap();
/// # let _ = client;
/// ```
pub fn request_gate(limiter: Arc<dyn RateLimiter>) -> BeforeRequest {
    Arc::new(move || {
        let limiter = limiter.clone();
        Box::pin(async move {
            let asked = std::time::Instant::now();
            limiter.acquire().await;
            crate::telemetry::granted(asked.elapsed());
        })
    })
}

/// A request budget: at most `requests` in any window of `per`, of which `burst` may go at
/// once.
///
/// The default is 120 requests a minute with bursts of 10: the figure integrators report for
/// Withings (it is not on a Withings page), counting token calls too since whether they count
/// is not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    requests: u32,
    per: Duration,
    burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::per_minute(120)
    }
}

impl RateLimit {
    /// `requests` a minute, with bursts of a twelfth of them (at least 1).
    pub fn per_minute(requests: u32) -> Self {
        Self::new(requests, Duration::from_secs(60), requests.div_ceil(12))
    }

    /// At most `requests` in any window of `per`, `burst` of them at once. `requests` is at
    /// least 1, `burst` at least 1 and below `requests` (unless `requests` is 1), and `per` at
    /// least a millisecond.
    pub fn new(requests: u32, per: Duration, burst: u32) -> Self {
        let requests = requests.max(1);
        let burst = if requests == 1 {
            1
        } else {
            burst.clamp(1, requests - 1)
        };
        Self {
            requests,
            per: per.max(Duration::from_millis(1)),
            burst,
        }
    }

    /// The most requests in any window.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The window.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The most requests sent at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Tokens added per second: what is left of the window's budget after a full burst, so
    /// that a burst plus a window of refills stays within `requests`.
    pub(crate) fn refill_per_second(&self) -> f64 {
        let steady = if self.requests == 1 {
            1
        } else {
            self.requests - self.burst
        };
        f64::from(steady) / self.per.as_secs_f64()
    }
}

/// A token bucket in one process: [`RateLimit::burst`] tokens at most, refilled so that no
/// window of [`RateLimit::per`] sees more than [`RateLimit::requests`] requests. Waiters are
/// served in arrival order.
///
/// After a 601 ([`RateLimiter::rate_limited`]) the bucket is emptied and refills at half speed
/// for one window; another 601 within that window starts the window again.
///
/// ```
/// use std::time::Duration;
/// use withings_oauth_fleet::{RateLimit, RateLimiter, TokenBucket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bucket = TokenBucket::new(RateLimit::new(10, Duration::from_secs(1), 3));
/// for _ in 0..3 {
///     bucket.acquire().await; // the burst: no wait
/// }
/// # }
/// ```
pub struct TokenBucket {
    limit: RateLimit,
    /// Whoever holds this waits for the next token; the others queue behind it, in order.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

struct State {
    tokens: f64,
    refilled_at: Instant,
    slowed_until: Option<Instant>,
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                tokens: f64::from(limit.burst),
                refilled_at: Instant::now(),
                slowed_until: None,
            }),
        }
    }

    /// The budget.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token if there is one; otherwise how long until there is.
    pub(crate) fn try_take(&self) -> Result<(), Duration> {
        let mut state = self.state();
        let now = Instant::now();
        let rate = match state.slowed_until {
            Some(until) if until > now => self.limit.refill_per_second() / 2.0,
            _ => self.limit.refill_per_second(),
        };
        let elapsed = now.saturating_duration_since(state.refilled_at);
        state.tokens =
            (state.tokens + elapsed.as_secs_f64() * rate).min(f64::from(self.limit.burst));
        state.refilled_at = now;
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - state.tokens) / rate))
        }
    }
}

impl RateLimiter for TokenBucket {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // One waiter at a time watches the bucket, so that waiters don't all wake for each
            // token. Dropped while waiting, it takes nothing: the token is taken only here.
            let _turn = self.turn.lock().await;
            while let Err(wait) = self.try_take() {
                tokio::time::sleep(wait).await;
            }
        })
    }

    fn rate_limited(&self) {
        let mut state = self.state();
        let now = Instant::now();
        state.tokens = 0.0;
        state.refilled_at = now;
        state.slowed_until = Some(now + self.limit.per);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn time_for(bucket: &TokenBucket, requests: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..requests {
            bucket.acquire().await;
        }
        start.elapsed()
    }

    #[test]
    fn limits_are_kept_sensible() {
        let limit = RateLimit::new(0, Duration::ZERO, 0);
        assert_eq!((limit.requests(), limit.burst()), (1, 1));
        assert!(limit.per() > Duration::ZERO);
        assert_eq!(RateLimit::new(10, Duration::from_secs(1), 50).burst(), 9);
        assert_eq!(RateLimit::default().requests(), 120);
        assert_eq!(RateLimit::default().per(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_sees_more_than_the_limit() {
        // 10 a second, 4 at once: the 4 go at once, the next 6 take the rest of the second.
        let bucket = TokenBucket::new(RateLimit::new(10, Duration::from_secs(1), 4));
        assert_eq!(time_for(&bucket, 4).await, Duration::ZERO);
        let next = time_for(&bucket, 6).await;
        assert!(next >= Duration::from_millis(999), "{next:?}");
        // Steady state: 6 a second.
        let steady = time_for(&bucket, 60).await;
        assert!(steady >= Duration::from_millis(9_999), "{steady:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_601_empties_the_bucket_and_halves_the_rate_for_a_window() {
        let bucket = TokenBucket::new(RateLimit::new(10, Duration::from_secs(1), 4));
        bucket.rate_limited();
        // 3 tokens a second instead of 6, and no burst left.
        let slowed = time_for(&bucket, 3).await;
        assert!(slowed >= Duration::from_millis(999), "{slowed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_takes_nothing() {
        let bucket = Arc::new(TokenBucket::new(RateLimit::new(
            2,
            Duration::from_secs(1),
            1,
        )));
        bucket.acquire().await;
        // Gives up before the next token: the token stays for the next caller.
        let gave_up = tokio::time::timeout(Duration::from_millis(100), bucket.acquire()).await;
        assert!(gave_up.is_err());
        let start = Instant::now();
        bucket.acquire().await;
        assert!(start.elapsed() <= Duration::from_millis(900));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_order() {
        let bucket = Arc::new(TokenBucket::new(RateLimit::new(
            2,
            Duration::from_secs(1),
            1,
        )));
        bucket.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (bucket, order) = (bucket.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                bucket.acquire().await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }
}
