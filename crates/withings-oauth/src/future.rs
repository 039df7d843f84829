//! [`BoxFuture`]: the future the object-safe traits of this crate ([`UserAgent`](crate::UserAgent),
//! [`TokenStore`](crate::TokenStore)) return, so they work as `dyn Trait` without a macro.

use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future: methods returning it can run on any runtime thread and be called
/// through `dyn Trait`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
