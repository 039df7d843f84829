//! The [`PendingLoginStore`] contract: put a parked login, take it back once.

use chrono::TimeDelta;

use crate::binding::{BindingHash, StateHash};
use crate::future::BoxFuture;
use crate::login::ParkedLogin;
use crate::store::StoreError;

/// How long a parked login waits for its callback by default: 10 minutes, time enough to type
/// a password and read a consent page, short enough that a leaked `state` soon means nothing.
pub const DEFAULT_PENDING_LOGIN_TTL: TimeDelta = TimeDelta::minutes(10);

/// How many logins one owner may have parked at once by default: 5. A user who clicks
/// "Connect" again and again still logs in with the latest clicks, and one owner can't fill
/// the store.
pub const DEFAULT_PENDING_LOGINS_PER_OWNER: usize = 5;

/// Where a web server parks logins between the request that starts them and the request that
/// receives their callback, possibly on another instance sharing the store.
///
/// The two promises a store keeps:
/// - **Once.** [`take`](Self::take) hands a login out at most once, even to instances racing
///   for the same callback: it is a single atomic step that finds and deletes the login (in
///   SQL, `DELETE FROM pending_logins WHERE state_hash = $1 AND browser_hash = $2 RETURNING
///   ...`), never a read followed by a delete.
/// - **Bound to the browser.** A take whose browser binding differs from the parked one finds
///   nothing and leaves the login in place, so a callback replayed from another browser can't
///   use up the login of the browser that started it, which can still finish.
///
/// Logins older than the store's lifetime (by default [`DEFAULT_PENDING_LOGIN_TTL`]) are
/// refused on take and purged.
///
/// **Capped per owner.** A store keeps at most a few logins per owner (by default
/// [`DEFAULT_PENDING_LOGINS_PER_OWNER`]): parking one more drops that owner's oldest. A user
/// who clicks "Connect" again and again still finishes the login they started last, and one
/// owner can't fill the store. (Stores shared by instances may briefly hold one more per
/// owner while two instances park logins for the same owner at the same moment.)
pub trait PendingLoginStore: Send + Sync {
    /// Parks `login` under its [`StateHash`](ParkedLogin::state_hash), drops its owner's
    /// oldest logins beyond the store's cap, and purges expired logins.
    fn put<'a>(&'a self, login: ParkedLogin) -> BoxFuture<'a, Result<(), PendingLoginError>>;

    /// Takes the login parked under `state` if it was started by the browser whose binding
    /// hashes to `browser`, deleting it in the same atomic step.
    ///
    /// Errors: [`PendingLoginError::Unknown`] (never parked, already taken, or purged),
    /// [`PendingLoginError::OtherBrowser`] (parked, left in place), [`PendingLoginError::Expired`]
    /// (parked too long ago; purged).
    fn take<'a>(
        &'a self,
        state: &'a StateHash,
        browser: &'a BindingHash,
    ) -> BoxFuture<'a, Result<ParkedLogin, PendingLoginError>>;
}

/// Why a pending login could not be taken. No message holds a `state`, a hash or a cookie.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PendingLoginError {
    /// Nothing is parked for this callback: it was already used (a replay), expired and was
    /// purged, or was never started here.
    #[error(
        "no login is waiting for this callback: it was already used, or it expired, or it was not started here; start the login again"
    )]
    Unknown,
    /// A login is waiting for this callback, but another browser started it.
    #[error(
        "this login was started in another browser: finish it in the browser that started it, or start a new login here"
    )]
    OtherBrowser,
    /// The login waited longer than the store keeps logins.
    #[error("this login waited too long for its callback and expired: start the login again")]
    Expired,
    /// The store failed: its error says where and what to do.
    #[error("the pending-login store failed: {0}")]
    Store(#[source] StoreError),
}
