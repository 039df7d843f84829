//! `fleet sweep --every`: the sweep as a long-lived service, one per instance, with `/metrics`
//! (Prometheus), `/healthz` and `/readyz` on an address of its own, stopping cleanly on SIGTERM
//! or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use withings_oauth_fleet::Fleet;

use crate::error::{CliError, Kind};
use crate::out::{note, say};
use crate::store::Store;

/// Buckets of the durations (`*_seconds`): from a cached database read to a slow Withings.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the group-commit batch sizes.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Sweeps `fleet` every `every` (the first pass at once) until SIGTERM or Ctrl-C, serving the
/// operations endpoints on `listen` if given. A failed pass is reported on stderr; the service
/// goes on.
pub(crate) async fn run(
    fleet: &Fleet,
    store: &Store,
    every: Duration,
    batch: usize,
    listen: Option<SocketAddr>,
) -> Result<(), CliError> {
    let operations = match listen {
        Some(address) => {
            let metrics = install_recorder()?;
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                CliError::new(
                    Kind::Config,
                    format!("cannot listen on {address} for the metrics: {e}"),
                )
            })?;
            let local = listener
                .local_addr()
                .map_err(|e| CliError::new(Kind::Config, format!("the metrics listener: {e}")))?;
            say!("metrics at http://{local}/metrics")?;
            let app = router(metrics, store.clone());
            Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ))
        }
        None => None,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {}
        }
        // A pass is not cut short by the signal: it ends, then the service stops.
        match fleet.sweep_once(batch).await {
            Ok(report) => note!(
                "swept {}: {} idle login(s) due, {} renewed, {} left to another instance, {} failed",
                store.location(),
                report.due,
                report.renewed,
                report.claimed_elsewhere,
                report.failed
            ),
            Err(e) => note!("the sweep failed (the next one runs in {every:?}): {e}"),
        }
    }
    note!("stopping: the sweep service got a stop signal");
    if let Some(operations) = operations {
        operations.abort();
    }
    Ok(())
}

/// Resolves on SIGTERM (what a service manager sends) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn install_recorder() -> Result<PrometheusHandle, CliError> {
    let failed = |e: metrics_exporter_prometheus::BuildError| {
        CliError::new(Kind::Config, format!("cannot set up the metrics: {e}"))
    };
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(failed)?
        .set_buckets_for_metric(
            Matcher::Full("withings_oauth_store_group_commit_batch_size".into()),
            BATCH_BUCKETS,
        )
        .map_err(failed)?
        .install_recorder()
        .map_err(failed)
}

fn router(metrics: PrometheusHandle, store: Store) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready).with_state(store))
}

async fn render(State(metrics): State<PrometheusHandle>) -> Response {
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

/// Ready when the store answers (and, for a database, its migrations are applied).
async fn ready(State(store): State<Store>) -> Response {
    match store.check_ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}
