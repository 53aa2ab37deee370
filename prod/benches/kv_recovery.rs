//! The recovery time of one bucket whose engine is lost: core's `KvRecovery` as a replica runs
//! it (the snapshot's files downloaded and checked, the RocksDB checkpoint opened, the tiered
//! changelog from the snapshot's offset downloaded through the `RemoteLogFetcher` and replayed
//! up to the local log's start), against a remote store that adds a fixed latency to every
//! request and caps each stream's bandwidth.
//!
//! Setup (not timed): a node on a temporary data directory (remote store: `data_dir/remote`)
//! loads one bucket with `snapshot MiB` of incompressible 1,000-byte values through PutKv, takes
//! one KV snapshot, then writes new keys until `segments` changelog segments of `segment KiB`
//! after the snapshot's offset are tiered. The recovery rebuilds that bucket's engine in a
//! directory of its own, replaying exactly those segments.
//!
//! Reported, as interleaved pairs (serial, defaults, serial, defaults, ...):
//! - serial: `prefetch-num` 1, `download-threads` 1;
//! - defaults: Fluss's 4 and 3;
//! - the ideal bound: max(download bytes / (3 × per-stream bandwidth), replay time), the
//!   replay time measured as the whole recovery against the same store without latency or cap
//!   (so it also holds the local copies, the checksums and the checkpoint's open: the bound
//!   is, if anything, generous);
//! - ratios defaults / bound and serial / defaults: median and spread (min..max) over the pairs.
//!
//! Times are printed, never asserted. Every wait is bounded.
//!
//! Run: `cargo bench -p kvtablet-prod --bench kv_recovery` (64 MiB snapshot, 64 segments of
//! 1 MiB, 20 ms per request, 40 MB/s per stream; about 1.5 minutes on 2 cores, 256 MiB
//! with 3 pairs about the same). Environment:
//! `KVTABLET_BENCH_SNAPSHOT_MB`, `KVTABLET_BENCH_SEGMENTS`, `KVTABLET_BENCH_SEGMENT_KB`,
//! `KVTABLET_BENCH_LATENCY_MS`, `KVTABLET_BENCH_STREAM_MBPS` (MB = 10^6 bytes),
//! `KVTABLET_BENCH_PAIRS`, `KVTABLET_BENCH_READS=1` (every read's times); `-- --quick` or `KVTABLET_BENCH_QUICK=1` for 16 MiB and 16
//! segments. The 256 MB variant: `KVTABLET_BENCH_SNAPSHOT_MB=256 cargo bench -p
//! kvtablet-prod --bench kv_recovery`.

// prod may read wall time and own a tokio runtime; measuring them is this binary's purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Either};
use futures::FutureExt;
use support::{put, wait_for_flush, BUCKET, MIB, POLL_INTERVAL, VALUE_BYTES, WAIT_MAX};

use kvtablet_core::engine::{EngineError, KvEngine, KvEngineFactory};
use kvtablet_core::env::{Env, RemoteError, RemoteObject, RemoteStorage};
use kvtablet_core::recovery::{
    recovery_dir, restore_dir, FetcherConfig, KvRecovery, RecoveryPhase, RecoverySources,
    RecoveryTracker,
};
use kvtablet_core::snapshot::rpc_snapshot_committer::RpcSnapshotCommitter;
use kvtablet_core::snapshot::SnapshotUploadConfig;
use kvtablet_core::snapshot::{take_snapshot, CompletedSnapshot, SnapshotCommitter};
use kvtablet_core::tiering::rpc_remote_log_committer::RpcRemoteLogCommitter;
use kvtablet_core::tiering::{RemoteLogCommitter, RemoteLogSegment};
use kvtablet_prod::node::{Node, NodeConfig};
use kvtablet_prod::snapshot_coordinator::COORDINATOR_NODE_ID;

/// Every read waits this long before its first byte, then streams at most this fast.
#[derive(Clone, Copy, Debug)]
struct Link {
    latency: Duration,
    /// Bytes per second of one stream; `None`: unlimited.
    stream_bytes_per_s: Option<f64>,
}

impl Link {
    const LOCAL: Link = Link { latency: Duration::ZERO, stream_bytes_per_s: None };
}

/// The node's remote store behind a [`Link`]: a read sleeps the latency, reads, then sleeps
/// until the bytes would have arrived at the stream's bandwidth. Writes, lists and deletes
/// pass through (the recovery only reads).
struct ThrottledRemote {
    inner: Arc<dyn RemoteStorage>,
    link: Link,
    requests: Arc<RequestLog>,
}

/// Every read's path and times (from the recovery's start), for the phase report.
struct RequestLog {
    started: Instant,
    reads: std::sync::Mutex<Vec<Read>>,
    /// The engine factory's timed calls: (what, start, end).
    engine_calls: std::sync::Mutex<Vec<(&'static str, f64, f64)>>,
}

struct Read {
    path: String,
    start_s: f64,
    end_s: f64,
}

impl ThrottledRemote {
    fn throttle(
        &self,
        path: &str,
        read: BoxFuture<'static, Result<Vec<u8>, RemoteError>>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let link = self.link;
        let (requests, path) = (self.requests.clone(), path.to_string());
        async move {
            let start_s = requests.started.elapsed().as_secs_f64();
            let _logged = LoggedRead { requests, path, start_s };
            tokio::time::sleep(link.latency).await;
            let started = Instant::now();
            let bytes = read.await?;
            if let Some(bytes_per_s) = link.stream_bytes_per_s {
                let transfer = Duration::from_secs_f64(bytes.len() as f64 / bytes_per_s);
                tokio::time::sleep(transfer.saturating_sub(started.elapsed())).await;
            }
            Ok(bytes)
        }
        .boxed()
    }
}

/// The node's engine factory, timing the restore's tail: the checkpoint's check and its open
/// (copy or link, sync, open).
struct TimedEngines {
    inner: Arc<dyn KvEngineFactory>,
    requests: Arc<RequestLog>,
}

impl TimedEngines {
    fn timed<R>(&self, what: &'static str, work: impl FnOnce() -> R) -> R {
        let start_s = self.requests.started.elapsed().as_secs_f64();
        let result = work();
        let end_s = self.requests.started.elapsed().as_secs_f64();
        self.requests.engine_calls.lock().expect("not poisoned").push((what, start_s, end_s));
        result
    }
}

impl KvEngineFactory for TimedEngines {
    fn open(&self, dir: &str) -> Result<Arc<dyn KvEngine>, EngineError> {
        self.inner.open(dir)
    }

    fn open_checkpoint(
        &self,
        checkpoint_dir: &str,
        dir: &str,
    ) -> Result<Arc<dyn KvEngine>, EngineError> {
        self.timed("open", || self.inner.open_checkpoint(checkpoint_dir, dir))
    }

    fn destroy(&self, dir: &str) -> Result<(), EngineError> {
        self.inner.destroy(dir)
    }

    fn is_immutable_file(&self, file_name: &str) -> bool {
        self.inner.is_immutable_file(file_name)
    }

    fn verify_checkpoint(&self, dir: &str) -> Result<(), EngineError> {
        self.timed("verify", || self.inner.verify_checkpoint(dir))
    }
}

/// Logs its read when dropped (answered or cancelled).
struct LoggedRead {
    requests: Arc<RequestLog>,
    path: String,
    start_s: f64,
}

impl Drop for LoggedRead {
    fn drop(&mut self) {
        let end_s = self.requests.started.elapsed().as_secs_f64();
        let read = Read { path: std::mem::take(&mut self.path), start_s: self.start_s, end_s };
        self.requests.reads.lock().expect("not poisoned").push(read);
    }
}

impl RemoteStorage for ThrottledRemote {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.put(path, bytes)
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.throttle(path, self.inner.get(path))
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        self.throttle(path, self.inner.get_range(path, range))
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        self.inner.list(prefix)
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.inner.delete(path)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| panic!("{name}={value}: a number")),
        Err(_) => default,
    }
}

struct Sizes {
    snapshot_mib: u64,
    segments: usize,
    segment_kib: u64,
}

/// What every timed recovery restores: the snapshot, the tiered segments after it, and the
/// local log's start it replays up to.
struct Prepared {
    snapshot: CompletedSnapshot,
    segments: Vec<RemoteLogSegment>,
    local_start_offset: u64,
    snapshots: Arc<dyn SnapshotCommitter>,
    remote_logs: Arc<dyn RemoteLogCommitter>,
}

impl Prepared {
    fn download_bytes(&self) -> u64 {
        self.snapshot.size_bytes() + self.segments.iter().map(|s| s.size_bytes).sum::<u64>()
    }
}

async fn prepare(node: &Node, sizes: &Sizes) -> Prepared {
    let handle = node.handle().expect("running");
    let rpc = node.env().rpc.clone();
    let snapshots: Arc<dyn SnapshotCommitter> =
        Arc::new(RpcSnapshotCommitter::new(rpc.clone(), COORDINATOR_NODE_ID, 60_000));
    let remote_logs: Arc<dyn RemoteLogCommitter> =
        Arc::new(RpcRemoteLogCommitter::new(rpc, COORDINATOR_NODE_ID, 60_000));
    let keys = (sizes.snapshot_mib as usize * 1024 * 1024).div_ceil(VALUE_BYTES);
    let loading = Instant::now();
    put(node, 0..keys, 0).await;
    wait_for_flush(&handle).await;
    let kv = handle.leader_kv(BUCKET).expect("the bucket is led");
    let snapshot =
        take_snapshot(node.env(), &kv, &snapshots, None, &SnapshotUploadConfig::default())
            .await
            .expect("the snapshot is taken")
            .expect("something was flushed");
    // New keys: each logs one +I of about VALUE_BYTES, so the segments fill predictably. A
    // tenth more than needed, since the active segment is not tiered.
    let changelog_bytes = sizes.segments as u64 * sizes.segment_kib * 1024;
    let changelog_keys = (changelog_bytes as usize * 11 / 10).div_ceil(VALUE_BYTES);
    put(node, keys..keys + changelog_keys, 0).await;
    wait_for_flush(&handle).await;
    let deadline = Instant::now() + WAIT_MAX;
    let segments = loop {
        let end = remote_logs.remote_end_offset(BUCKET).await.expect("the manifest answers");
        if end > snapshot.log_offset {
            let covering = remote_logs
                .segments_covering(BUCKET, snapshot.log_offset, end)
                .await
                .expect("the manifest answers");
            if covering.len() >= sizes.segments {
                break covering[..sizes.segments].to_vec();
            }
        }
        assert!(Instant::now() < deadline, "the changelog was not tiered in time");
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let local_start_offset = segments.last().expect("at least one segment").end_offset;
    println!(
        "setup: {keys} + {changelog_keys} keys put and tiered in {:.1} s; snapshot {} at offset \
         {}: {:.1} MiB in {} files (largest {:.1} MiB); {} segments from {} to {}: {:.1} MiB",
        loading.elapsed().as_secs_f64(),
        snapshot.snapshot_id,
        snapshot.log_offset,
        snapshot.size_bytes() as f64 / MIB,
        snapshot.files().count(),
        snapshot.files().map(|f| f.size_bytes).max().unwrap_or(0) as f64 / MIB,
        segments.len(),
        segments[0].start_offset,
        local_start_offset,
        segments.iter().map(|s| s.size_bytes).sum::<u64>() as f64 / MIB,
    );
    Prepared { snapshot, segments, local_start_offset, snapshots, remote_logs }
}

/// One recovery of the bucket into a fresh directory, timed; the directory is removed after.
/// A recovery's wall time, and the part until the restored engine was open.
struct Timing {
    total: Duration,
    restore: Duration,
    /// Where the time went (see [`phases`]).
    phases: String,
}

/// The phases of one recovery from its reads: the snapshot's reads (first start..last end),
/// the restore's end, the segments' reads, and how busy the downloads were
/// (`threads` streams over the whole recovery).
fn phases(
    requests: &RequestLog,
    snapshot: &CompletedSnapshot,
    restore: Duration,
    total: Duration,
    threads: usize,
) -> String {
    let reads = requests.reads.lock().expect("not poisoned");
    let snapshot_paths: std::collections::BTreeSet<&str> =
        snapshot.files().map(|file| file.remote_path.as_str()).collect();
    let span = |of_snapshot: bool| {
        let mine =
            reads.iter().filter(|read| snapshot_paths.contains(read.path.as_str()) == of_snapshot);
        let (mut first, mut last, mut count) = (f64::INFINITY, 0f64, 0);
        for read in mine {
            first = first.min(read.start_s);
            last = last.max(read.end_s);
            count += 1;
        }
        (first, last, count)
    };
    let (snap_first, snap_last, snap_reads) = span(true);
    let (seg_first, seg_last, seg_reads) = span(false);
    let busy_s: f64 = reads.iter().map(|read| read.end_s - read.start_s).sum();
    let restore_s = restore.as_secs_f64();
    let seg_before_restore = reads
        .iter()
        .filter(|read| !snapshot_paths.contains(read.path.as_str()) && read.end_s <= restore_s)
        .count();
    let total_s = total.as_secs_f64();
    if std::env::var("KVTABLET_BENCH_READS").is_ok_and(|value| value != "0") {
        for read in reads.iter() {
            let name = read.path.rsplit('/').next().unwrap_or_default();
            println!("    read {:.3}..{:.3} {name}", read.start_s, read.end_s);
        }
    }
    let engine_calls = requests.engine_calls.lock().expect("not poisoned");
    let engine_calls: Vec<String> = engine_calls
        .iter()
        .map(|(what, start_s, end_s)| format!("{what} {start_s:.2}..{end_s:.2}"))
        .collect();
    format!(
        "snapshot {snap_reads} reads {snap_first:.2}..{snap_last:.2} s, engine {}, restored at {restore_s:.2} s; \
         segments {seg_reads} reads {seg_first:.2}..{seg_last:.2} s ({seg_before_restore} done before the restore \
         ended); end {total_s:.2} s; downloads busy {:.0}% of {threads} x {total_s:.2} s",
        engine_calls.join(", "),
        100.0 * busy_s / (threads as f64 * total_s),
    )
}

async fn recover(node: &Node, prepared: &Prepared, link: Link, fetcher: FetcherConfig) -> Timing {
    let mut env: Env = node.env().clone();
    let requests = Arc::new(RequestLog {
        started: Instant::now(),
        reads: Default::default(),
        engine_calls: Default::default(),
    });
    env.remote =
        Arc::new(ThrottledRemote { inner: env.remote.clone(), link, requests: requests.clone() });
    env.engines = Arc::new(TimedEngines { inner: env.engines.clone(), requests: requests.clone() });
    let sources = RecoverySources {
        snapshots: prepared.snapshots.clone(),
        remote_logs: Some(prepared.remote_logs.clone()),
        fetcher,
    };
    let engine_dir = "bench-recovery/kv-0";
    let tracker = RecoveryTracker::new(BUCKET, env.clock.clone(), 60_000);
    let recovery = KvRecovery {
        env: &env,
        bucket: BUCKET,
        local_start_offset: prepared.local_start_offset,
        engine_dir,
        sources: &sources,
        tracker: &tracker,
    };
    let started = Instant::now();
    // The restore's end: when the recovery moves on to the remote replay (polled).
    let restored = async {
        loop {
            let phase = tracker.progress().map(|progress| progress.phase);
            if phase == Some(RecoveryPhase::RemoteReplay) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let run = recovery.run();
    futures::pin_mut!(run, restored);
    let (recovered, restore) = match futures::future::select(run, restored).await {
        Either::Left((recovered, _)) => (recovered, started.elapsed()),
        Either::Right((restore, run)) => (run.await, restore),
    };
    let recovered = recovered.expect("the recovery succeeds");
    let total = started.elapsed();
    let phases = phases(&requests, &prepared.snapshot, restore, total, fetcher.download_threads);
    let took = Timing { total, restore, phases };
    assert_eq!(recovered.flushed_offset, prepared.local_start_offset);
    assert_eq!(
        recovered.snapshot.map(|s| s.snapshot_id),
        Some(prepared.snapshot.snapshot_id),
        "the snapshot taken is the one restored"
    );
    drop(recovered.engine);
    for dir in [engine_dir.to_string(), recovery_dir(engine_dir), restore_dir(engine_dir)] {
        env.fs.remove_dir_all(&dir).expect("the recovery's directory is removed");
    }
    took
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}..{max:.2}")
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var("KVTABLET_BENCH_QUICK").is_ok_and(|value| value != "0");
    let sizes = Sizes {
        snapshot_mib: env_number("KVTABLET_BENCH_SNAPSHOT_MB", if quick { 16 } else { 64 }),
        segments: env_number("KVTABLET_BENCH_SEGMENTS", if quick { 16 } else { 64 }) as usize,
        segment_kib: env_number("KVTABLET_BENCH_SEGMENT_KB", 1024),
    };
    let latency = Duration::from_millis(env_number("KVTABLET_BENCH_LATENCY_MS", 20));
    let stream_mbps = env_number("KVTABLET_BENCH_STREAM_MBPS", 40);
    let pairs = env_number("KVTABLET_BENCH_PAIRS", if quick { 2 } else { 5 }) as usize;
    let link = Link { latency, stream_bytes_per_s: Some(stream_mbps as f64 * 1e6) };
    println!(
        "kv_recovery{}: one bucket, snapshot {} MiB, {} segments of {} KiB, remote reads {} ms \
         + {} MB/s per stream, {} cores (256 MB variant: KVTABLET_BENCH_SNAPSHOT_MB=256)",
        if quick { " (quick)" } else { "" },
        sizes.snapshot_mib,
        sizes.segments,
        sizes.segment_kib,
        latency.as_millis(),
        stream_mbps,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("recovery-bench")
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let config = NodeConfig {
            buckets: vec![BUCKET],
            // The bench takes the one snapshot; the node's loop never fires.
            snapshot_interval_ms: 10 * 60 * 1_000,
            segment_bytes_max: sizes.segment_kib * 1024,
            tiering_interval_ms: 200,
            ..NodeConfig::new(data_dir.path())
        };
        let mut node =
            Node::start(config, tokio::runtime::Handle::current()).await.expect("node starts");
        let prepared = prepare(&node, &sizes).await;
        let serial = FetcherConfig { prefetch_num: 1, download_threads: 1, ..FetcherConfig::DEFAULT };
        let defaults = FetcherConfig::DEFAULT;

        // The replay time: the same recovery without latency or bandwidth cap.
        let (mut local, mut local_restore) = (Vec::new(), Vec::new());
        for _ in 0..pairs.max(3) {
            let timing = recover(&node, &prepared, Link::LOCAL, defaults).await;
            local.push(timing.total.as_secs_f64());
            local_restore.push(timing.restore.as_secs_f64());
        }
        let replay_s = median(&local);
        let download_bytes = prepared.download_bytes() as f64;
        let download_bound_s = download_bytes / (defaults.download_threads as f64 * stream_mbps as f64 * 1e6);
        let bound_s = download_bound_s.max(replay_s);
        println!(
            "replay alone (no latency, no cap, defaults): median {replay_s:.2} s ({}), of which \
             the restore {:.2} s",
            spread(&local),
            median(&local_restore),
        );
        println!(
            "download bound: {:.1} MiB / ({} streams x {stream_mbps} MB/s) = {download_bound_s:.2} s; \
             ideal bound {bound_s:.2} s",
            download_bytes / MIB,
            defaults.download_threads,
        );

        let (mut serial_s, mut defaults_s) = (Vec::new(), Vec::new());
        let (mut over_bound, mut speedup) = (Vec::new(), Vec::new());
        for pair in 1..=pairs {
            let serial_timing = recover(&node, &prepared, link, serial).await;
            let defaults_timing = recover(&node, &prepared, link, defaults).await;
            let s = serial_timing.total.as_secs_f64();
            let d = defaults_timing.total.as_secs_f64();
            println!("  serial phases: {}", serial_timing.phases);
            println!("  defaults phases: {}", defaults_timing.phases);
            println!(
                "pair {pair}: serial {s:.2} s (restore {:.2}), defaults {d:.2} s (restore {:.2}): \
                 defaults/bound {:.2}, serial/defaults {:.2}",
                serial_timing.restore.as_secs_f64(),
                defaults_timing.restore.as_secs_f64(),
                d / bound_s,
                s / d
            );
            serial_s.push(s);
            defaults_s.push(d);
            over_bound.push(d / bound_s);
            speedup.push(s / d);
        }
        println!(
            "serial (window 1, 1 thread): median {:.2} s ({}); defaults (4/3): median {:.2} s ({}); \
             bound {bound_s:.2} s",
            median(&serial_s),
            spread(&serial_s),
            median(&defaults_s),
            spread(&defaults_s),
        );
        println!(
            "defaults / bound: median {:.2} ({}) [target <= 1.15]; serial / defaults: median \
             {:.2} ({}) [target >= 2.5]",
            median(&over_bound),
            spread(&over_bound),
            median(&speedup),
            spread(&speedup),
        );
        node.shutdown().await;
    });
}
