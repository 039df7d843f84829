//! Where credentials live between runs: the [`TokenStore`] contract (versions, compare-and-swap,
//! leases), [`MemoryStore`], the stored record format, in-process leases, the private-file
//! checks of stores on disk, and testing helpers.

mod contract;
mod lease;
mod memory;
mod private_file;
mod record;
mod term;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod versioned_map;

pub use contract::{
    Conflict, DEFAULT_LEASE_TTL, Expected, Lease, StoreError, StoreFuture, StoreLocation,
    StoredEntry, TokenStore, Version, VersionedEntry, ensure_owner,
};
pub use lease::LocalLeases;
pub use memory::MemoryStore;
pub use private_file::{check_private_dir, check_private_file};
pub use record::{StoredCredentials, StoredCredentialsError};
pub use term::{LEASE_SLACK, LeaseTerm, MIN_REQUEST_TIMEOUT};
pub use versioned_map::VersionedMap;
