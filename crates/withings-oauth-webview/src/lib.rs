//! withings-oauth-webview (in progress).
