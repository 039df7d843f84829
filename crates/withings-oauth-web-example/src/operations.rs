//! What an operator's tools ask the application, on a listener of its own: `/metrics` for
//! Prometheus, `/healthz` (the process is up) and `/readyz` (the database answers and its
//! migrations are applied), served by [`withings_oauth_axum::operations_router`].

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::Shared;

/// `/metrics`, `/healthz` and `/readyz` for this application: ready when its database answers
/// with its migrations applied. Serve it on its own address, reachable by the monitoring only
/// (it tells how many users there are and how their logins fare). The recorder comes from
/// [`withings_oauth_axum::install_metrics_recorder`].
///
/// ```
/// use axum::body::Body;
/// use axum::http::Request;
/// use tower::ServiceExt as _;
/// use withings_oauth_web_example::{Shared, operations_router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
/// let app = operations_router(metrics, Shared::in_memory());
/// let ready = app.oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(ready.status(), 200);
/// # }
/// ```
pub fn operations_router(metrics: PrometheusHandle, shared: Shared) -> Router {
    withings_oauth_axum::operations_router(metrics, move || {
        let shared = shared.clone();
        async move { shared.check_ready().await }
    })
}
