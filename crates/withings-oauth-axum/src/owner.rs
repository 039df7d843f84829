//! [`LoginOwner`]: who the signed-in user of a request is, as the application's own
//! authentication says.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use withings_oauth::BoxFuture;

/// The signed-in user of a request, as the application's own authentication says: the owner
/// of the logins the connect route starts, and the only user whose login the callback route
/// finishes.
///
/// Implement it on an extractor of your own (reading your session, or what your
/// authentication middleware put in the request's extensions). An extractor that rejects the
/// request means "nobody is signed in": the connect and callback routes then answer
/// [`LoginError::NotSignedIn`](crate::LoginError::NotSignedIn). The owner is never taken from
/// the query or a form: a request can't name whose login it starts.
///
/// ```
/// use axum::extract::FromRequestParts;
/// use axum::http::StatusCode;
/// use axum::http::request::Parts;
/// use withings_oauth_axum::LoginOwner;
///
/// /// What the application's authentication middleware puts in the request's extensions.
/// #[derive(Clone)]
/// struct SignedIn {
///     user_id: i64,
/// }
///
/// impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
///     type Rejection = StatusCode;
///
///     async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
///         parts.extensions.get::<SignedIn>().cloned().ok_or(StatusCode::UNAUTHORIZED)
///     }
/// }
///
/// impl LoginOwner for SignedIn {
///     fn owner_id(&self) -> String {
///         self.user_id.to_string()
///     }
/// }
/// ```
pub trait LoginOwner: FromRequestParts<()> + Send + 'static {
    /// The application's stable id of the user: what the pending login and
    /// [`Connected::owner`](crate::Connected::owner) carry.
    fn owner_id(&self) -> String;
}

/// The owner of a request, type-erased.
pub(crate) type OwnerFn =
    dyn for<'a> Fn(&'a mut Parts) -> BoxFuture<'a, Option<String>> + Send + Sync;

/// The owner function of `O`.
pub(crate) fn owner_fn<O: LoginOwner>() -> Box<OwnerFn> {
    Box::new(|parts| {
        Box::pin(async move {
            O::from_request_parts(parts, &())
                .await
                .ok()
                .map(|owner| owner.owner_id())
        })
    })
}
