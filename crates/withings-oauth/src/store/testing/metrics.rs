//! What a block of work recorded through the [`metrics`] facade, for tests of what a crate
//! records: its names, labels and values, and that no label holds what it must not.

use std::future::Future;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// One metric a block of work recorded.
#[derive(Debug)]
struct Metric {
    name: String,
    labels: Vec<(String, String)>,
    value: DebugValue,
}

/// What [`record_metrics`] captured.
#[derive(Debug)]
pub struct RecordedMetrics {
    metrics: Vec<Metric>,
}

/// Runs `work` on a tokio runtime of this thread with a recorder of its own (not the global
/// one, so that tests running at the same time don't mix), and returns what it recorded.
///
/// ```
/// use withings_oauth::testing::record_metrics;
///
/// let recorded = record_metrics(|| async {
///     metrics::counter!("demo_total", "outcome" => "ok").increment(2);
/// });
/// assert_eq!(recorded.count("demo_total", &[("outcome", "ok")]), 2);
/// assert_eq!(recorded.count("demo_total", &[("outcome", "failed")]), 0);
/// recorded.assert_no_label_holds(&["secret"]);
/// ```
pub fn record_metrics<F: Future<Output = ()>>(work: impl FnOnce() -> F) -> RecordedMetrics {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the recorded work");
    metrics::with_local_recorder(&recorder, || runtime.block_on(work()));
    let metrics = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            Metric {
                name: key.name().to_owned(),
                labels,
                value,
            }
        })
        .collect();
    RecordedMetrics { metrics }
}

impl RecordedMetrics {
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Metric> {
        self.metrics.iter().filter(move |m| {
            m.name == name
                && labels
                    .iter()
                    .all(|(k, v)| m.labels.iter().any(|(mk, mv)| mk == k && mv == v))
        })
    }

    /// The metric `name` summed over the series that carry `labels` (and maybe others): a
    /// counter's count, a histogram's number of values. Panics on a gauge: see
    /// [`value`](Self::value).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|m| match &m.value {
                DebugValue::Counter(n) => *n,
                DebugValue::Histogram(values) => values.len() as u64,
                DebugValue::Gauge(_) => panic!("{name} is a gauge: read it with `value`"),
            })
            .sum()
    }

    /// The metric `name` summed over the series that carry `labels` (and maybe others), as a
    /// number: a counter's count, a gauge's value, a histogram's number of values.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|m| match &m.value {
                DebugValue::Counter(n) => *n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(values) => values.len() as f64,
            })
            .sum()
    }

    /// Whether a series of the metric `name` carries `labels` (and maybe others), whatever its
    /// value (a gauge set to zero is there).
    pub fn contains(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }

    /// Every label of every series: `(metric, key, value)`.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.metrics.iter().flat_map(|m| {
            m.labels
                .iter()
                .map(move |(k, v)| (m.name.as_str(), k.as_str(), v.as_str()))
        })
    }

    /// Panics, naming the metric and the label, if any label value holds one of `forbidden`
    /// (a user id, a token, a secret, a URL's scheme).
    pub fn assert_no_label_holds(&self, forbidden: &[&str]) {
        for metric in &self.metrics {
            for (key, value) in &metric.labels {
                for held in forbidden {
                    assert!(
                        !value.contains(held),
                        "{} has the label {key}={value}, which holds {held}",
                        metric.name
                    );
                }
            }
        }
    }
}
