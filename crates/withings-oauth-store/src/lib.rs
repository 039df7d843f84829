//! withings-oauth-store (in progress).
