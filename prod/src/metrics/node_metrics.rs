//! The metrics of one node: request counters and latencies, recorded as requests end, and
//! tablet-server gauges, set from [`ServerStats`] when scraped.

use std::sync::Mutex;
use std::time::Duration;

use kvtablet_core::tablet_server_stats::ServerStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The OpenMetrics text format that [`NodeMetrics::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    api: &'static str,
    error_code: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    table_id: i64,
    bucket_id: i32,
}

/// 100 µs to about 6.5 s, doubling: a lookup served from memory lands in the first buckets, a
/// put waiting for a slow fsync in the last.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

pub struct NodeMetrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    scanner_sessions: Gauge,
    flush_lag: Family<BucketLabels, Gauge>,
    flush_lag_max: Gauge,
    /// Two scrapes at once would interleave clearing and setting the per-bucket gauges.
    rendering: Mutex<()>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let mut registry = Registry::with_prefix("kvtablet");
        let requests = Family::<ApiLabels, Counter>::default();
        registry.register("requests", "Requests answered, by api key", requests.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "request_errors",
            "Requests answered with an ERROR_RESPONSE, by api key and Fluss error code",
            errors.clone(),
        );
        let latency = Family::<ApiLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's decoding to its answer, by api key",
            latency.clone(),
        );
        let scanner_sessions = Gauge::default();
        registry.register(
            "scanner_sessions",
            "Open KV scan sessions on this server",
            scanner_sessions.clone(),
        );
        let flush_lag = Family::<BucketLabels, Gauge>::default();
        registry.register(
            "bucket_flush_lag_offsets",
            "Log end offset minus flushed offset of each led bucket: changes lookups cannot see yet",
            flush_lag.clone(),
        );
        let flush_lag_max = Gauge::default();
        registry.register(
            "flush_lag_max_offsets",
            "The largest flush lag over the led buckets",
            flush_lag_max.clone(),
        );
        NodeMetrics {
            registry,
            requests,
            errors,
            latency,
            scanner_sessions,
            flush_lag,
            flush_lag_max,
            rendering: Mutex::new(()),
        }
    }

    /// Records one answered request of `api` (a Fluss api key name); `error_code` is the code
    /// of an ERROR_RESPONSE.
    pub fn record_request(&self, api: &'static str, elapsed: Duration, error_code: Option<i32>) {
        let labels = ApiLabels { api };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if let Some(error_code) = error_code {
            self.errors.get_or_create(&ErrorLabels { api, error_code }).inc();
        }
    }

    /// The metrics in the OpenMetrics text format, with the gauges set from `stats` (`None`
    /// once the tablet server is gone: the gauges are dropped).
    pub fn render(&self, stats: Option<&ServerStats>) -> String {
        let _rendering = self.rendering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.flush_lag.clear();
        match stats {
            Some(stats) => {
                self.scanner_sessions.set(saturating_i64(stats.scanner_sessions as u64));
                for bucket in &stats.buckets {
                    if let Some(lag) = bucket.flush_lag() {
                        let labels = BucketLabels {
                            table_id: bucket.bucket.table_id,
                            bucket_id: bucket.bucket.bucket_id,
                        };
                        self.flush_lag.get_or_create(&labels).set(saturating_i64(lag));
                    }
                }
                self.flush_lag_max.set(saturating_i64(stats.max_flush_lag()));
            }
            None => {
                self.scanner_sessions.set(0);
                self.flush_lag_max.set(0);
            }
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Only a failing writer fails, and a String never does.
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use kvtablet_core::tablet_server_stats::BucketStats;
    use kvtablet_core::TableBucket;

    use super::*;

    #[test]
    fn requests_errors_and_latency_are_rendered_by_api() {
        let metrics = NodeMetrics::new();
        metrics.record_request("PUT_KV", Duration::from_millis(3), None);
        metrics.record_request("PUT_KV", Duration::from_millis(5), Some(39));
        let text = metrics.render(None);
        assert!(text.contains("kvtablet_requests_total{api=\"PUT_KV\"} 2\n"), "{text}");
        assert!(
            text.contains("kvtablet_request_errors_total{api=\"PUT_KV\",error_code=\"39\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kvtablet_request_duration_seconds_count{api=\"PUT_KV\"} 2\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn gauges_follow_the_latest_stats() {
        let metrics = NodeMetrics::new();
        let bucket = |bucket_id, flushed_offset| BucketStats {
            bucket: TableBucket::new(5, bucket_id),
            leader_epoch: 1,
            log_end_offset: 10,
            high_watermark: 10,
            flushed_offset,
        };
        let stats =
            ServerStats { scanner_sessions: 3, buckets: vec![bucket(0, Some(4)), bucket(1, None)] };
        let text = metrics.render(Some(&stats));
        assert!(text.contains("kvtablet_scanner_sessions 3\n"), "{text}");
        assert!(
            text.contains("kvtablet_bucket_flush_lag_offsets{table_id=\"5\",bucket_id=\"0\"} 6\n"),
            "{text}"
        );
        assert!(!text.contains("bucket_id=\"1\""), "a follower has no flush lag: {text}");
        assert!(text.contains("kvtablet_flush_lag_max_offsets 6\n"), "{text}");
        let text = metrics.render(Some(&ServerStats::default()));
        assert!(text.contains("kvtablet_scanner_sessions 0\n"), "{text}");
        assert!(!text.contains("bucket_id=\"0\""), "a bucket no longer hosted stays: {text}");
    }
}
