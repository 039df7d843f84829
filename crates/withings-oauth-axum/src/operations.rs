//! What an operator's tools ask a running program, on a listener of its own: `/metrics` for
//! Prometheus, `/healthz` (the process is up) and `/readyz` (what it depends on answers).

use std::fmt::Display;
use std::future::Future;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

/// Buckets of the durations (`*_seconds`): from a cached database read to a slow Withings.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the group-commit batch sizes: powers of two up to the largest batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the process-wide recorder that the withings-oauth libraries' metrics go to, and
/// returns the handle that renders them in Prometheus' text format ([`operations_router`]
/// serves it). Durations and batch sizes are histograms with fixed buckets, so that instances
/// add up. Fails if a recorder is installed already. Feature `operations`.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("withings_oauth_store_group_commit_batch_size".into()),
            BATCH_BUCKETS,
        )?
        .install_recorder()
}

/// `/metrics` (rendered from `metrics`), `/healthz` (always "ok") and `/readyz` (ready when
/// `ready()` succeeds; 503 with its error otherwise, e.g. a database that does not answer or
/// lacks its migrations). Serve it on an address of its own, reachable by the monitoring
/// only: it tells how many users there are and how their logins fare. Feature `operations`.
///
/// ```
/// use axum::body::Body;
/// use axum::http::Request;
/// use tower::ServiceExt as _;
/// use withings_oauth_axum::operations_router;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
/// let app = operations_router(metrics, || async { Err::<(), _>("the database does not answer") });
/// let ready = app.oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(ready.status(), 503);
/// # }
/// ```
pub fn operations_router<F, Fut, E>(metrics: PrometheusHandle, ready: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    Router::new()
        .route("/metrics", get(move || render(metrics.clone())))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready().await {
                        Ok(()) => "ready\n".into_response(),
                        Err(e) => {
                            warn!(error = %e, "not ready");
                            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
                                .into_response()
                        }
                    }
                }
            }),
        )
}

async fn render(metrics: PrometheusHandle) -> Response {
    // No task of the exporter's own runs: its housekeeping happens at each scrape.
    metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}
