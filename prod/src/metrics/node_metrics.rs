//! The metrics of one node: request counters and latencies, recorded as requests end, and
//! tablet-server gauges, set from [`ServerStats`] when scraped.

use std::sync::Mutex;
use std::time::Duration;

use kvtablet_core::lease::LeaseGauges;
use kvtablet_core::tablet_server_stats::{RecoveryStats, ServerStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::gateway::RemoteLogReadStats;
use crate::wire::WireStats;

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

/// A bucket that recovers its KV engine; `partition_id` is empty for a bucket of a table
/// without partitions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveryLabels {
    table_id: i64,
    partition_id: Option<i64>,
    bucket_id: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveryPhaseLabels {
    table_id: i64,
    partition_id: Option<i64>,
    bucket_id: i32,
    phase: &'static str,
}

/// The KV recoveries running (`RecoveryStats`): a node-level count, and per recovering bucket
/// (at most the buckets hosted) its progress. A bucket's series exist only while it recovers:
/// every family is cleared at each scrape and set afresh.
#[derive(Default)]
struct RecoveryGauges {
    recovering_buckets: Gauge,
    phase: Family<RecoveryPhaseLabels, Gauge>,
    attempt: Family<RecoveryLabels, Gauge>,
    snapshot_id: Family<RecoveryLabels, Gauge>,
    downloaded_bytes: Family<RecoveryLabels, Gauge>,
    download_total_bytes: Family<RecoveryLabels, Gauge>,
    replayed_offset: Family<RecoveryLabels, Gauge>,
    replay_target_offset: Family<RecoveryLabels, Gauge>,
}

impl RecoveryGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "kv_recovering_buckets",
            "Buckets recovering their KV engine from KV snapshots and the changelog",
            self.recovering_buckets.clone(),
        );
        registry.register(
            "kv_recovery_phase",
            "1 for the phase a recovering bucket is in: download (the snapshot's files), \
             remote_replay (the tiered changelog) or local_replay (the local log)",
            self.phase.clone(),
        );
        let families = [
            ("kv_recovery_attempt", "The attempt a recovering bucket runs, from 1", &self.attempt),
            (
                "kv_recovery_snapshot_id",
                "The KV snapshot a recovering bucket restores from; 0 before one is chosen",
                &self.snapshot_id,
            ),
            (
                "kv_recovery_downloaded_bytes",
                "Bytes downloaded in the phase's downloads (the snapshot's files or the remote \
                 log segments)",
                &self.downloaded_bytes,
            ),
            (
                "kv_recovery_download_total_bytes",
                "Bytes the phase downloads in all",
                &self.download_total_bytes,
            ),
            (
                "kv_recovery_replayed_offset",
                "The changelog offset a recovering bucket's replay stands at",
                &self.replayed_offset,
            ),
            (
                "kv_recovery_replay_target_offset",
                "The changelog offset the phase's replay runs to",
                &self.replay_target_offset,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
    }

    fn set(&self, stats: Option<&RecoveryStats>) {
        let families = [
            &self.attempt,
            &self.snapshot_id,
            &self.downloaded_bytes,
            &self.download_total_bytes,
            &self.replayed_offset,
            &self.replay_target_offset,
        ];
        for family in families {
            family.clear();
        }
        self.phase.clear();
        let Some(stats) = stats else {
            self.recovering_buckets.set(0);
            return;
        };
        self.recovering_buckets.set(saturating_i64(stats.recovering_buckets() as u64));
        for (bucket, progress) in &stats.buckets {
            let labels = RecoveryLabels {
                table_id: bucket.table_id,
                partition_id: bucket.partition_id,
                bucket_id: bucket.bucket_id,
            };
            let phase = RecoveryPhaseLabels {
                table_id: bucket.table_id,
                partition_id: bucket.partition_id,
                bucket_id: bucket.bucket_id,
                phase: progress.phase.name(),
            };
            self.phase.get_or_create(&phase).set(1);
            let values = [
                (&self.attempt, u64::from(progress.attempt)),
                (&self.snapshot_id, progress.snapshot_id),
                (&self.downloaded_bytes, progress.bytes_downloaded),
                (&self.download_total_bytes, progress.bytes_total),
                (&self.replayed_offset, progress.offset_replayed),
                (&self.replay_target_offset, progress.offset_target),
            ];
            for (family, value) in values {
                family.get_or_create(&labels).set(saturating_i64(value));
            }
        }
    }
}

/// The wire server's counts (`WireStats`), copied in at each scrape.
#[derive(Default)]
struct WireGauges {
    request_bytes_in_flight: Gauge,
    connections_open: Gauge,
    connections_waiting_for_budget: Gauge,
    connections_refused: Gauge,
    frames_timed_out: Gauge,
    connections_idle_closed: Gauge,
    handler_panics: Gauge,
}

impl WireGauges {
    fn register(&self, registry: &mut Registry) {
        let gauges = [
            (
                "wire_request_bytes_in_flight",
                "Request bytes held by the wire server (read or being handled), within \
                 net.max-request-bytes-in-flight",
                &self.request_bytes_in_flight,
            ),
            ("wire_connections_open", "Client connections open", &self.connections_open),
            (
                "wire_connections_waiting_for_budget",
                "Connections waiting for request budget before reading a body",
                &self.connections_waiting_for_budget,
            ),
            (
                "wire_connections_refused",
                "Connections refused at net.max-connections since the start",
                &self.connections_refused,
            ),
            (
                "wire_frames_timed_out",
                "Connections closed since the start because a frame did not arrive within \
                 net.frame-read-timeout",
                &self.frames_timed_out,
            ),
            (
                "wire_connections_idle_closed",
                "Connections closed since the start after net.max-idle-time without a request",
                &self.connections_idle_closed,
            ),
            (
                "wire_handler_panics",
                "Requests whose handler panicked since the start; the first shuts the node down",
                &self.handler_panics,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
    }

    fn set(&self, stats: &WireStats) {
        self.request_bytes_in_flight.set(saturating_i64(stats.request_bytes_buffered() as u64));
        self.connections_open.set(saturating_i64(stats.connections_open() as u64));
        self.connections_waiting_for_budget
            .set(saturating_i64(stats.connections_waiting_for_budget() as u64));
        self.connections_refused.set(saturating_i64(stats.connections_refused()));
        self.frames_timed_out.set(saturating_i64(stats.frames_timed_out()));
        self.connections_idle_closed.set(saturating_i64(stats.connections_idle_closed()));
        self.handler_panics.set(saturating_i64(stats.handler_panics()));
    }
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
    replicas_failed: Gauge,
    tablet_server_failed: Gauge,
    task_panics: Gauge,
    background_loops_ended: Gauge,
    leases: Gauge,
    leased_snapshots: Gauge,
    recovery: RecoveryGauges,
    wire: WireGauges,
    remote_log_reads: RemoteLogReadGauges,
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
        let replicas_failed = Gauge::default();
        registry.register(
            "replicas_failed",
            "Replicas stopped after a corrupt or fatal engine error or a panic: they refuse \
             every request (KV_STORAGE_EXCEPTION) until the node restarts",
            replicas_failed.clone(),
        );
        let tablet_server_failed = Gauge::default();
        registry.register(
            "tablet_server_failed",
            "1 once a panic that no single replica owned stopped the whole tablet server",
            tablet_server_failed.clone(),
        );
        let task_panics = Gauge::default();
        registry.register(
            "task_panics",
            "Background tasks and blocking work that panicked since the start (each logged)",
            task_panics.clone(),
        );
        let background_loops_ended = Gauge::default();
        registry.register(
            "background_loops_ended",
            "Background loops that ended while what they serve runs (a led term's flush, KV \
             snapshot or tiering loop; the scan sessions' evictor): their work has stopped, a \
             bug (each logged at the scrape that first sees it)",
            background_loops_ended.clone(),
        );
        let leases = Gauge::default();
        registry.register("kv_snapshot_leases", "KV snapshot leases held", leases.clone());
        let leased_snapshots = Gauge::default();
        registry.register(
            "leased_kv_snapshots",
            "Distinct (bucket, snapshot) pairs that some KV snapshot lease pins",
            leased_snapshots.clone(),
        );
        let recovery = RecoveryGauges::default();
        recovery.register(&mut registry);
        let wire = WireGauges::default();
        wire.register(&mut registry);
        let remote_log_reads = RemoteLogReadGauges::default();
        remote_log_reads.register(&mut registry);
        NodeMetrics {
            registry,
            requests,
            errors,
            latency,
            scanner_sessions,
            flush_lag,
            flush_lag_max,
            replicas_failed,
            tablet_server_failed,
            task_panics,
            background_loops_ended,
            leases,
            leased_snapshots,
            recovery,
            wire,
            remote_log_reads,
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

    /// Sets the counts of the tiered changelog's reads, shown from the next render on.
    pub fn set_remote_log_reads(&self, stats: &RemoteLogReadStats) {
        self.remote_log_reads
            .served_through_node_bytes
            .set(saturating_i64(stats.served_through_node_bytes()));
        self.remote_log_reads.remote_fetch_infos.set(saturating_i64(stats.remote_fetch_infos()));
        self.remote_log_reads.copies_written.set(saturating_i64(stats.copies_written()));
    }

    /// The metrics in the OpenMetrics text format, with the gauges set from `stats` (`None`
    /// once the tablet server is gone: the gauges are dropped).
    pub fn render(&self, stats: Option<&ServerStats>) -> String {
        self.render_with_wire(stats, None, 0, None, None)
    }

    /// As [`NodeMetrics::render`], with the wire server's gauges set from `wire`, the count
    /// of panicked tasks from the node's executor, the coordinator's lease counts, and the
    /// KV recoveries running (`None`: none).
    pub fn render_with_wire(
        &self,
        stats: Option<&ServerStats>,
        wire: Option<&WireStats>,
        task_panics: u64,
        leases: Option<LeaseGauges>,
        recovery: Option<&RecoveryStats>,
    ) -> String {
        // Poisoning is harmless here: the lock guards no data, it only keeps two scrapes from
        // interleaving, and every gauge is set afresh below.
        let _rendering = self.rendering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(wire) = wire {
            self.wire.set(wire);
        }
        self.task_panics.set(saturating_i64(task_panics));
        let leases = leases.unwrap_or_default();
        self.leases.set(saturating_i64(leases.lease_count as u64));
        self.leased_snapshots.set(saturating_i64(leases.leased_snapshot_count as u64));
        self.recovery.set(recovery);
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
                self.replicas_failed.set(saturating_i64(stats.failed_replicas() as u64));
                self.tablet_server_failed.set(i64::from(stats.failure.is_some()));
                let ended = stats.ended_background_loops.len();
                if ended as i64 > self.background_loops_ended.get() {
                    tracing::error!(ended = ?stats.ended_background_loops, "background loops ended while what they serve runs");
                }
                self.background_loops_ended.set(saturating_i64(ended as u64));
            }
            None => {
                self.scanner_sessions.set(0);
                self.flush_lag_max.set(0);
                self.replicas_failed.set(0);
                self.tablet_server_failed.set(0);
                self.background_loops_ended.set(0);
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

/// How the tiered changelog (below a bucket's local log start) was read through FetchLog.
#[derive(Default)]
struct RemoteLogReadGauges {
    served_through_node_bytes: Gauge,
    remote_fetch_infos: Gauge,
    copies_written: Gauge,
}

impl RemoteLogReadGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "remote_log_served_through_node_bytes",
            "Record bytes of tiered ranges (below the local log start) that FetchLog served \
             through the node since the start, instead of sending the client to the remote tier",
            self.served_through_node_bytes.clone(),
        );
        registry.register(
            "remote_log_fetches_sent_to_remote",
            "FetchLog answers that sent the client to read tiered segments from the remote \
             data directory itself, since the start",
            self.remote_fetch_infos.clone(),
        );
        registry.register(
            "remote_log_client_copies_written",
            "Tiered segments written in the clients' log format beside the segment, since the \
             start",
            self.copies_written.clone(),
        );
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn failed_replicas_and_panics_are_rendered() {
        let metrics = NodeMetrics::new();
        let bucket = |bucket_id, failure: Option<&str>| BucketStats {
            bucket: TableBucket::new(5, bucket_id),
            leader_epoch: 1,
            log_end_offset: 10,
            high_watermark: 10,
            flushed_offset: Some(10),
            failure: failure.map(str::to_string),
        };
        let stats = ServerStats {
            scanner_sessions: 0,
            buckets: vec![bucket(0, Some("flush failed: corrupt")), bucket(1, None)],
            failure: None,
            ended_background_loops: Vec::new(),
        };
        let wire = WireStats::default();
        wire.record_handler_panic();
        let text = metrics.render_with_wire(Some(&stats), Some(&wire), 2, None, None);
        assert!(text.contains("kvtablet_replicas_failed 1\n"), "{text}");
        assert!(text.contains("kvtablet_tablet_server_failed 0\n"), "{text}");
        assert!(text.contains("kvtablet_task_panics 2\n"), "{text}");
        assert!(text.contains("kvtablet_wire_handler_panics 1\n"), "{text}");
        assert!(text.contains("kvtablet_background_loops_ended 0\n"), "{text}");
    }

    #[test]
    fn background_loops_that_ended_while_their_owner_runs_are_rendered() {
        let metrics = NodeMetrics::new();
        let stats = ServerStats {
            ended_background_loops: vec![
                (Some(TableBucket::new(5, 0)), "tiering node1 t5-b0".to_string()),
                (None, "scan evictor node1".to_string()),
            ],
            ..ServerStats::default()
        };
        let text = metrics.render(Some(&stats));
        assert!(text.contains("kvtablet_background_loops_ended 2\n"), "{text}");
        let text = metrics.render(Some(&ServerStats::default()));
        assert!(text.contains("kvtablet_background_loops_ended 0\n"), "{text}");
    }

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
            failure: None,
        };
        let stats = ServerStats {
            scanner_sessions: 3,
            buckets: vec![bucket(0, Some(4)), bucket(1, None)],
            failure: None,
            ended_background_loops: Vec::new(),
        };
        let text = metrics.render(Some(&stats));
        assert!(text.contains("kvtablet_scanner_sessions 3\n"), "{text}");
        assert!(text.contains("kvtablet_replicas_failed 0\n"), "{text}");
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

    #[test]
    fn the_wire_servers_counts_are_rendered() {
        let metrics = NodeMetrics::new();
        let wire = WireStats::default();
        wire.connections_open.store(3, std::sync::atomic::Ordering::Relaxed);
        wire.connections_refused.store(2, std::sync::atomic::Ordering::Relaxed);
        let text = metrics.render_with_wire(None, Some(&wire), 0, None, None);
        assert!(text.contains("kvtablet_wire_connections_open 3\n"), "{text}");
        assert!(text.contains("kvtablet_wire_handler_panics 0\n"), "{text}");
        assert!(text.contains("kvtablet_wire_connections_refused 2\n"), "{text}");
        assert!(text.contains("kvtablet_wire_request_bytes_in_flight 0\n"), "{text}");
    }

    #[test]
    fn a_recovering_buckets_progress_is_rendered_while_it_recovers_and_gone_after() {
        use kvtablet_core::recovery::{RecoveryPhase, RecoveryProgress};

        let metrics = NodeMetrics::new();
        let progress = RecoveryProgress {
            phase: RecoveryPhase::RemoteReplay,
            attempt: 2,
            snapshot_id: 7,
            bytes_downloaded: 300,
            bytes_total: 1_000,
            offset_replayed: 40,
            offset_target: 90,
        };
        let partitioned = TableBucket { table_id: 5, partition_id: Some(3), bucket_id: 1 };
        let recovering = RecoveryStats {
            buckets: vec![(TableBucket::new(4, 0), progress), (partitioned, progress)],
        };
        let text = metrics.render_with_wire(None, None, 0, None, Some(&recovering));
        assert!(text.contains("kvtablet_kv_recovering_buckets 2\n"), "{text}");
        let series = |name: &str, value: u64| {
            format!(
                "kvtablet_{name}{{table_id=\"5\",partition_id=\"3\",bucket_id=\"1\"}} {value}\n"
            )
        };
        for (name, value) in [
            ("kv_recovery_attempt", 2),
            ("kv_recovery_snapshot_id", 7),
            ("kv_recovery_downloaded_bytes", 300),
            ("kv_recovery_download_total_bytes", 1_000),
            ("kv_recovery_replayed_offset", 40),
            ("kv_recovery_replay_target_offset", 90),
        ] {
            assert!(text.contains(&series(name, value)), "{name}: {text}");
        }
        assert!(
            text.contains(
                "kvtablet_kv_recovery_phase{table_id=\"4\",partition_id=\"\",bucket_id=\"0\",\
                 phase=\"remote_replay\"} 1\n"
            ),
            "{text}"
        );
        let text = metrics.render_with_wire(None, None, 0, None, Some(&RecoveryStats::default()));
        assert!(text.contains("kvtablet_kv_recovering_buckets 0\n"), "{text}");
        assert!(
            !text.contains("kvtablet_kv_recovery_attempt{"),
            "a recovery that ended stays: {text}"
        );
        assert!(!text.contains("kvtablet_kv_recovery_phase{"), "{text}");
    }
}
