//! Everything that speaks HTTP to Withings: the transport, the `{status, body}` envelope and
//! its status codes, signed calls, the token endpoint and the Measure API.
//!
//! Dependencies point down this list: `measure` and `token` use `signature`, which uses
//! `transport`, which uses `envelope`, which uses `status` and `error`.

pub(crate) mod envelope;
pub(crate) mod error;
pub(crate) mod measure;
pub(crate) mod signature;
pub(crate) mod status;
pub(crate) mod token;
pub(crate) mod transport;
