//! A fault campaign for withings-oauth: the sandbox, fleet instances and web instances as OS
//! processes on one PostgreSQL database or one SQLite file, faults on a random schedule from a
//! seed, every operation recorded in a history, and a checker that proves properties over the
//! history, the sandbox's ledger and the final database.
//!
//! - [`history`]: the history's format (one JSON line per operation), written by every process.
//! - [`ledger`]: the sandbox's ledger of every token issued and presented.
//! - [`check`]: the checker.
//!
//! The binary `withings-oauth-chaos` runs a campaign (see `docs/reliability.md`);
//! `withings-oauth-chaos-fleet` is one fleet instance of it.

pub mod check;
pub mod history;
pub mod ledger;
