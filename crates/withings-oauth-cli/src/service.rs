//! `fleet sweep --every`: the sweep as a long-lived service, one per instance, with `/metrics`
//! (Prometheus), `/healthz` and `/readyz` on an address of its own, stopping cleanly on SIGTERM
//! or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use withings_oauth_fleet::Fleet;

use crate::error::{CliError, Kind};
use crate::out::{note, say};
use crate::store::Store;

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
    withings_oauth_axum::install_metrics_recorder()
        .map_err(|e| CliError::new(Kind::Config, format!("cannot set up the metrics: {e}")))
}

/// Ready when the store answers (and, for a database, its migrations are applied).
fn router(metrics: PrometheusHandle, store: Store) -> axum::Router {
    withings_oauth_axum::operations_router(metrics, move || {
        let store = store.clone();
        async move { store.check_ready().await }
    })
}
