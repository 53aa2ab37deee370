//! The oracles: every response a client gets is checked against the model as it arrives, and
//! the end state is checked at quiescence.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use kvtablet_core::message::{KvWrite, NodeId};
use kvtablet_core::tablet_server::TabletServer;
use kvtablet_core::{ApiError, ErrorCode, TableBucket};

use kvtablet_core::env::Clock;
use kvtablet_core::log::{ChangeType, LogBatch, LogTablet};
use kvtablet_core::message::ScanKvResponse;
use kvtablet_core::scan::value_record_batch::decode_value_batch;
use kvtablet_core::scan::ScannerConfig;

use crate::fault_log::FaultLog;
use crate::model::Model;
use crate::replication::ClusterLogs;
use crate::table_partitions::TablePartitions;
use crate::tiering_oracle::read_tiered_segment;
use crate::trace::Trace;
use kvtablet_core::tiering::RemoteLogStore;

/// The servers that are up, shared between the world (which crashes and restarts them) and
/// the checker (which reads their flushed offsets, the god view).
pub type LiveServers = Arc<Mutex<BTreeMap<NodeId, Arc<TabletServer>>>>;

/// Keys and values in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// What a row-returning read asked for.
#[derive(Debug, Clone)]
pub enum RowQuery {
    Prefix(Vec<u8>),
    Limit(u32),
}

/// Which server leads a bucket now, as the coordinator sees it.
pub type LeaderOf = Arc<dyn Fn(TableBucket) -> Option<NodeId> + Send + Sync>;

/// An acknowledged put checked later: bucket, writes, base and end offset.
/// An acknowledged put checked later: its bucket, writes, target columns and offsets.
type DeferredAck = (TableBucket, Vec<KvWrite>, Option<Vec<u32>>, u64, u64);
/// A completed scan whose `log_offset` no live log could show when it arrived: its bucket,
/// `log_offset`, limit and rows.
type DeferredScan = (TableBucket, u64, Option<i64>, Vec<Vec<u8>>);

pub struct Checker {
    model: Mutex<Model>,
    logs: ClusterLogs,
    leader_of: Mutex<Option<LeaderOf>>,
    /// Acknowledged puts whose batch no live log held when the answer arrived.
    deferred_acks: Mutex<Vec<DeferredAck>>,
    /// Completed scans that outran every live log (the bucket's only replica crashed after
    /// serving them): checked at quiescence, when every server is back.
    deferred_scans: Mutex<Vec<DeferredScan>>,
    /// The newest epoch each bucket's log has shown.
    log_epochs: Mutex<BTreeMap<TableBucket, u32>>,
    servers: LiveServers,
    violations: Mutex<Vec<String>>,
    /// The highest read offset each client has seen per bucket: reads never go back in time.
    client_read_offsets: Mutex<BTreeMap<(NodeId, TableBucket), u64>>,
    counts: Mutex<CheckCounts>,
    trace: Arc<Mutex<Trace>>,
    clock: Arc<dyn Clock>,
    /// Crashes per server: a session is only expected to survive on the incarnation that
    /// opened it.
    crash_counts: Mutex<BTreeMap<NodeId, u64>>,
    /// When the last clock jump happened; expiry timing rules that a jump can stretch are not
    /// applied across one.
    last_clock_jump_ms: Mutex<Option<u64>>,
    /// When each server last resumed from a pause: its evictor did not run meanwhile.
    last_resume_ms: Mutex<BTreeMap<NodeId, u64>>,
    scanner: ScannerConfig,
    /// What the workload tried and every give-up (the progress oracle's ledger).
    pub progress: crate::progress::Progress,
    /// The storage faults that fired (none unless the world sets it): they explain storage
    /// errors, and the model reads the logs in their god view.
    fault_log: Mutex<Arc<FaultLog>>,
    /// The table's partitions (created and dropped by the world), shared with the clients.
    pub partitions: TablePartitions,
    /// The cluster's remote store, read in the god view by the snapshot oracles.
    remote: Mutex<Option<crate::remote::SimRemoteStorage>>,
    /// The `log_offset` of every snapshot the coordinator committed, per bucket.
    committed_snapshot_offsets: Mutex<BTreeMap<TableBucket, std::collections::BTreeSet<u64>>>,
    /// Snapshots already checked at their first acceptance.
    checked_snapshots: Mutex<std::collections::BTreeSet<(TableBucket, u64)>>,
    /// The coordinator's remote-log manifests, read in the god view by the tiering oracles.
    remote_logs: Mutex<Option<Arc<RemoteLogStore>>>,
    /// Per bucket, the reference log last checked and its start when first seen, for the
    /// minimum-retain oracle. A weak reference, so that no other log can take its address.
    log_starts_seen: Mutex<BTreeMap<TableBucket, (Weak<LogTablet>, u64)>>,
    /// Per node and bucket, the kept snapshots the coordinator last listed to that node (what
    /// its recovery chose from), for the oracle that a recovery restores the newest whole one.
    snapshot_listings: Mutex<BTreeMap<(NodeId, TableBucket), SnapshotListing>>,
}

/// Kept snapshots as the coordinator listed them, newest first, and the remote store's repair
/// count at that moment (a repair may make whole what a recovery rightly skipped before it).
#[derive(Clone)]
struct SnapshotListing {
    kept: Vec<kvtablet_core::snapshot::CompletedSnapshot>,
    repairs: u64,
}

/// How much each oracle checked in a run, so that a passing run shows it checked something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckCounts {
    pub puts_acked: u64,
    pub lookups_checked: u64,
    pub row_reads_checked: u64,
    pub errors_seen: u64,
    pub buckets_checked_at_quiescence: u64,
    pub scan_pages: u64,
    pub scans_completed: u64,
    pub handoffs_checked: u64,
    pub probes_checked: u64,
    pub snapshots_checked: u64,
    pub tiered_segments_checked: u64,
    /// Remote retentions that moved a remote log start, checked against the kept snapshots.
    pub remote_expiries_checked: u64,
    /// Comparisons of a recovered engine with the model at its flushed offset.
    pub recovered_engines_checked: u64,
}

impl Checker {
    pub fn new(
        logs: ClusterLogs,
        servers: LiveServers,
        trace: Arc<Mutex<Trace>>,
        clock: Arc<dyn Clock>,
        scanner: ScannerConfig,
        partitions: TablePartitions,
    ) -> Checker {
        Checker {
            model: Mutex::new(Model::new()),
            logs,
            leader_of: Mutex::new(None),
            deferred_acks: Mutex::new(Vec::new()),
            deferred_scans: Mutex::new(Vec::new()),
            log_epochs: Mutex::new(BTreeMap::new()),
            servers,
            violations: Mutex::new(Vec::new()),
            client_read_offsets: Mutex::new(BTreeMap::new()),
            counts: Mutex::new(CheckCounts::default()),
            trace,
            clock,
            crash_counts: Mutex::new(BTreeMap::new()),
            last_clock_jump_ms: Mutex::new(None),
            last_resume_ms: Mutex::new(BTreeMap::new()),
            scanner,
            progress: crate::progress::Progress::new(),
            fault_log: Mutex::new(Arc::new(FaultLog::new())),
            partitions,
            remote: Mutex::new(None),
            committed_snapshot_offsets: Mutex::new(BTreeMap::new()),
            checked_snapshots: Mutex::new(std::collections::BTreeSet::new()),
            remote_logs: Mutex::new(None),
            log_starts_seen: Mutex::new(BTreeMap::new()),
            snapshot_listings: Mutex::new(BTreeMap::new()),
        }
    }

    /// The remote-log manifests the tiering oracles read.
    pub fn set_remote_logs(&self, remote_logs: Arc<RemoteLogStore>) {
        *lock(&self.remote_logs) = Some(remote_logs);
    }

    /// The bucket's remote end as the coordinator records it (0 without tiering).
    fn remote_end_offset(&self, bucket: TableBucket) -> u64 {
        lock(&self.remote_logs).as_ref().map_or(0, |store| store.remote_end_offset(bucket))
    }

    /// The batches from `offset` on of the remote segment that holds it, read from the remote
    /// store's objects and checked against the manifest.
    fn tiered_batches(&self, bucket: TableBucket, offset: u64) -> Result<Vec<LogBatch>, String> {
        let Some(store) = lock(&self.remote_logs).clone() else {
            return Err(format!("offset {offset} is below the log start and nothing is tiered"));
        };
        let manifest = store.manifest(bucket);
        let Some(segment) = manifest.segment_holding(offset) else {
            return Err(format!(
                "offset {offset} is below the local log start and not in the remote tier (remote end {})",
                manifest.end_offset()
            ));
        };
        read_tiered_segment(&lock(&self.remote), segment, offset)
    }

    /// Before the coordinator runs remote retention on `bucket`: the model reads the whole
    /// changelog (what retention may delete was committed and is below a snapshot's offset),
    /// so that nothing it deletes is data the model has not seen.
    pub fn before_remote_expiry(&self, bucket: TableBucket) {
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            self.violation(text);
        }
    }

    /// Remote retention oracle, after the coordinator answered an `ExpireRemoteLog`: a remote
    /// log start that moved from `before` to `after` is at or below the `log_offset` of every
    /// KV snapshot the coordinator keeps (retained or leased), so a recovery from any of them
    /// finds its changelog; with none kept it never moves.
    pub fn check_remote_expiry(
        &self,
        bucket: TableBucket,
        before: u64,
        after: u64,
        kept_log_offsets: &[u64],
    ) {
        if after == before {
            return;
        }
        lock(&self.counts).remote_expiries_checked += 1;
        match kept_log_offsets.iter().min() {
            Some(&oldest) if after <= oldest => {}
            oldest => self.violation(format!(
                "{bucket}: remote retention moved the remote log start from {before} to {after}, above the oldest kept KV snapshot's log offset {oldest:?}: a recovery cannot replay its changelog"
            )),
        }
    }

    /// Every segment in the bucket's remote-log manifest is in the remote store, whole, and
    /// holds exactly the committed batches of its range.
    fn check_remote_tier(&self, model: &Model, bucket: TableBucket) -> Result<(), String> {
        let Some(store) = lock(&self.remote_logs).clone() else { return Ok(()) };
        for segment in store.manifest(bucket).segments {
            let batches = read_tiered_segment(&lock(&self.remote), &segment, 0)?;
            model.check_tiered(bucket, &batches)?;
            lock(&self.counts).tiered_segments_checked += 1;
        }
        Ok(())
    }

    /// The remote store the snapshot oracles read.
    pub fn set_remote(&self, remote: crate::remote::SimRemoteStorage) {
        *lock(&self.remote) = Some(remote);
    }

    /// A snapshot the coordinator just committed is, restored from the remote store's
    /// objects, exactly the model's state of its bucket at its `log_offset`.
    pub fn check_committed_snapshot(
        &self,
        snapshot: &kvtablet_core::snapshot::CompletedSnapshot,
        current_epoch: Option<u32>,
    ) {
        let bucket = snapshot.bucket;
        // A commit asked again after a lost answer is accepted again, possibly under a newer
        // epoch: what was checked at its first acceptance stands.
        if !lock(&self.checked_snapshots).insert((bucket, snapshot.snapshot_id)) {
            return;
        }
        lock(&self.counts).snapshots_checked += 1;
        lock(&self.committed_snapshot_offsets)
            .entry(bucket)
            .or_default()
            .insert(snapshot.log_offset);
        if current_epoch != Some(snapshot.leader_epoch) {
            return self.violation(format!(
                "committed snapshot {} of {bucket} was taken at leader epoch {}, the bucket is at {current_epoch:?}",
                snapshot.snapshot_id, snapshot.leader_epoch
            ));
        }
        let Some(remote) = lock(&self.remote).clone() else { return };
        let restored = match crate::snapshot_oracle::restore(&remote, snapshot) {
            Ok(rows) => rows,
            Err(problem) => {
                return self.violation(format!(
                    "committed snapshot {} of {bucket} is broken: {problem}",
                    snapshot.snapshot_id
                ))
            }
        };
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        if snapshot.log_offset > model.read_offset(bucket) {
            let end = model.read_offset(bucket);
            drop(model);
            return self.violation(format!(
                "committed snapshot {} of {bucket} claims log_offset {} beyond the log end {end}",
                snapshot.snapshot_id, snapshot.log_offset
            ));
        }
        if model.state_is(bucket, snapshot.log_offset, borrowed_rows(&restored)) {
            return;
        }
        let expected = model.state_at(bucket, snapshot.log_offset);
        drop(model);
        let keys = |rows: &[(Vec<u8>, Vec<u8>)]| {
            rows.iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>()
        };
        self.violation(format!(
            "committed snapshot {} of {bucket} at log_offset {} differs from the model: {} rows, the model has {}: keys {:?}, want {:?}",
            snapshot.snapshot_id,
            snapshot.log_offset,
            restored.len(),
            expected.len(),
            keys(&restored),
            keys(&expected)
        ));
    }

    /// A recovery reports a kept snapshot broken only when it is: restored from the remote
    /// store's objects as they are now, it must fail. A whole snapshot reported broken is
    /// forgotten by the coordinator, and remote retention may then delete the log that only it
    /// made unnecessary (a local read failure taken for damage did that).
    pub fn check_broken_report(&self, snapshot: &kvtablet_core::snapshot::CompletedSnapshot) {
        let Some(remote) = lock(&self.remote).clone() else { return };
        if crate::snapshot_oracle::restore(&remote, snapshot).is_ok() {
            self.violation(format!(
                "snapshot {} of {} was reported broken, but it restores whole from the remote store",
                snapshot.snapshot_id, snapshot.bucket
            ));
        }
    }

    /// The coordinator listed `bucket`'s kept snapshots (newest first) to `node`.
    pub fn record_snapshot_listing(
        &self,
        node: NodeId,
        bucket: TableBucket,
        kept: &[kvtablet_core::snapshot::CompletedSnapshot],
    ) {
        let repairs = lock(&self.remote).as_ref().map_or(0, |remote| remote.repairs());
        let listing = SnapshotListing { kept: kept.to_vec(), repairs };
        lock(&self.snapshot_listings).insert((node, bucket), listing);
    }

    /// A recovery on `node` opened `engine` from a snapshot of `bucket`: it must be the newest
    /// of those last listed to the node that restores whole. Every newer one it passed over
    /// must be damaged or gone (a transient failure is retried, never a reason to fall back to
    /// an older snapshot, which replays more and leans on log that retention may take). The
    /// restored snapshot is found by its `log_offset` (the engine's flushed offset at birth);
    /// none listed with it, or a repair since the listing: nothing to say.
    pub fn check_restored_snapshot_is_newest_whole(
        &self,
        node: NodeId,
        bucket: TableBucket,
        engine: &dyn kvtablet_core::engine::KvEngine,
    ) {
        let Some(remote) = lock(&self.remote).clone() else { return };
        let Some(listing) = lock(&self.snapshot_listings).get(&(node, bucket)).cloned() else {
            return;
        };
        if listing.repairs != remote.repairs() {
            return;
        }
        let Ok(Some(offset)) = engine.snapshot().and_then(|snapshot| snapshot.flushed_log_offset())
        else {
            return;
        };
        let Some(restored) = listing.kept.iter().position(|kept| kept.log_offset == offset) else {
            return;
        };
        for newer in &listing.kept[..restored] {
            if crate::snapshot_oracle::restore(&remote, newer).is_ok() {
                self.violation(format!(
                    "a recovery of {bucket} on node {node} restored the snapshot at log offset {offset}, but the newer snapshot {} (log offset {}) restores whole from the remote store",
                    newer.snapshot_id, newer.log_offset
                ));
            }
        }
    }

    /// A log's minimum retain offset is 0 or the `log_offset` of a snapshot the coordinator
    /// committed: a leader raises it only once its commit succeeded.
    pub fn check_min_retain(&self, node: NodeId, log: &kvtablet_core::log::LogTablet) {
        let offset = log.min_retain_offset();
        if offset == 0 {
            return;
        }
        let bucket = log.bucket();
        let committed = lock(&self.committed_snapshot_offsets)
            .get(&bucket)
            .is_some_and(|offsets| offsets.contains(&offset));
        if !committed {
            self.violation(format!(
                "minimum retain offset {offset} of {bucket} on node {node} is no committed snapshot's log_offset"
            ));
        }
    }

    /// Tells the checker who leads what (the coordinator, built after the checker).
    pub fn set_leader_of(&self, leader_of: LeaderOf) {
        *lock(&self.leader_of) = Some(leader_of);
    }

    /// The log the model reads `bucket` from: the current leader's, else the longest live one.
    fn reference_log(&self, bucket: TableBucket) -> Option<Arc<kvtablet_core::log::LogTablet>> {
        let leader_of = lock(&self.leader_of).clone();
        let leader = leader_of.and_then(|leader_of| leader_of(bucket));
        self.logs.reference_log(bucket, leader)
    }

    pub fn set_fault_log(&self, fault_log: Arc<FaultLog>) {
        *lock(&self.fault_log) = fault_log;
    }

    fn fault_log(&self) -> Arc<FaultLog> {
        lock(&self.fault_log).clone()
    }

    pub fn counts(&self) -> CheckCounts {
        *lock(&self.counts)
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    /// Records a client-visible outcome in the trace (full mode keeps it; the hash always
    /// covers it), so that two runs of a seed agree on results, not only on the fault schedule.
    pub fn note(&self, node: NodeId, kind: &str, detail: String) {
        let now = self.clock.now_mono_ms();
        lock(&self.trace).record_detail(now, node, kind, &detail);
    }

    pub fn violation(&self, text: String) {
        let mut violations = lock(&self.violations);
        // One failure usually cascades; the first few tell the story.
        if violations.len() < 20 {
            violations.push(text);
        }
    }

    /// The offset every read of `bucket` that starts now must reach: the highest flushed
    /// offset of any replica that currently leads it under the log's epoch, and the end of
    /// every put acknowledged so far (a read never misses an acknowledged write).
    pub fn read_floor(&self, bucket: TableBucket) -> u64 {
        let servers: Vec<Arc<TabletServer>> = lock(&self.servers).values().cloned().collect();
        let mut model = lock(&self.model);
        let mut floor = model.flushed_floor(bucket);
        for server in servers {
            if let Some(kv) = server.leader_kv(bucket) {
                if kv.leader_epoch() == kv.log().leader_epoch() {
                    floor = model.raise_flushed_floor(bucket, kv.flushed_log_offset());
                }
            }
        }
        floor
    }

    pub fn on_put_ack(
        &self,
        bucket: TableBucket,
        writes: &[KvWrite],
        target_columns: Option<&[u32]>,
        base_offset: u64,
        end_offset: u64,
    ) {
        lock(&self.counts).puts_acked += 1;
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        if end_offset > model.read_offset(bucket) {
            // The answer outran the replica that now holds the bucket's longest live log (its
            // leader crashed after answering, and its disk comes back with the batch): checked
            // at quiescence, when every server is back.
            drop(model);
            lock(&self.deferred_acks).push((
                bucket,
                writes.to_vec(),
                target_columns.map(<[u32]>::to_vec),
                base_offset,
                end_offset,
            ));
            return;
        }
        if let Err(text) =
            model.check_acked_put(bucket, writes, target_columns, base_offset, end_offset)
        {
            drop(model);
            return self.violation(text);
        }
        // Read your acknowledged writes: every read sent from now on must see this put.
        model.raise_flushed_floor(bucket, end_offset);
    }

    pub fn on_lookup(
        &self,
        client: NodeId,
        bucket: TableBucket,
        keys: &[Vec<u8>],
        values: &[Option<Vec<u8>>],
        read_offset: u64,
        floor: u64,
    ) {
        lock(&self.counts).lookups_checked += 1;
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        let mut problems = self.check_read_offset(client, bucket, read_offset, floor, &model);
        if keys.len() != values.len() {
            problems.push(format!("{} values for {} keys", values.len(), keys.len()));
        }
        for (key, value) in keys.iter().zip(values) {
            let expected = model.value_at(bucket, key, read_offset);
            if expected != value.as_deref() {
                problems.push(format!(
                    "key {} read {:?} at offset {read_offset}, model has {:?}",
                    String::from_utf8_lossy(key),
                    value.as_deref().map(String::from_utf8_lossy),
                    expected.map(String::from_utf8_lossy)
                ));
            }
        }
        drop(model);
        for problem in problems {
            self.violation(format!("lookup by client {client} on {bucket}: {problem}"));
        }
    }

    pub fn on_rows(
        &self,
        client: NodeId,
        bucket: TableBucket,
        query: &RowQuery,
        values: &[Vec<u8>],
        read_offset: u64,
        floor: u64,
    ) {
        lock(&self.counts).row_reads_checked += 1;
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        let mut problems = self.check_read_offset(client, bucket, read_offset, floor, &model);
        let state = model.rows_at(bucket, read_offset);
        let expected: Vec<&[u8]> = match query {
            RowQuery::Prefix(prefix) => {
                state.filter(|(key, _)| key.starts_with(prefix)).map(|(_, v)| v).collect()
            }
            RowQuery::Limit(limit) => state.take(*limit as usize).map(|(_, v)| v).collect(),
        };
        if !expected.iter().copied().eq(values.iter().map(Vec::as_slice)) {
            problems.push(format!(
                "{query:?} returned {} rows at offset {read_offset}, model has {} (or different values)",
                values.len(),
                expected.len()
            ));
        }
        drop(model);
        for problem in problems {
            self.violation(format!("read by client {client} on {bucket}: {problem}"));
        }
    }

    /// A local storage failure outside a request (retention, say): explained only once a
    /// storage fault has fired in the run.
    pub fn on_storage_failure(&self, context: &str, detail: impl std::fmt::Display) {
        if self.fault_log().storage_errors_explained() == 0 {
            self.violation(format!("{context}: {detail} with no storage fault injected"));
        }
    }

    /// Errors that the simulated faults never justify. A storage error is explained only once
    /// a storage fault (disk or engine) has fired in the run: before that, or in a run without
    /// storage faults, it means the code lost or damaged data. Other oracles check that no
    /// storage fault ever turns into wrong data or a lost acknowledged write.
    pub fn on_error(&self, context: &str, error: &ApiError) {
        lock(&self.counts).errors_seen += 1;
        let storage_error =
            matches!(error.code, ErrorCode::KvStorageException | ErrorCode::LogStorageException);
        if storage_error {
            let explained = self.fault_log().storage_errors_explained();
            if explained == 0 {
                self.violation(format!(
                    "{context}: storage error {error} with no storage fault injected"
                ));
            }
            return;
        }
        if matches!(
            error.code,
            ErrorCode::CorruptRecord
                | ErrorCode::UnknownServerError
                // Clients resend a batch with its sequence and move on only after an ack.
                | ErrorCode::OutOfOrderSequence
        ) {
            self.violation(format!("{context}: unexpected error {error}"));
        }
    }

    /// A server's answer (`None` for a success) to a request that names `bucket`, sent at
    /// `sent_ms`: a request sent after the bucket's partition was dropped is refused with
    /// PARTITION_NOT_EXISTS and nothing else (no write may land in a dropped partition, and no
    /// read may see one), and PARTITION_NOT_EXISTS is only ever the answer for a partition
    /// that had been dropped by the time it arrived.
    pub fn check_partition_answer(
        &self,
        context: &str,
        bucket: TableBucket,
        sent_ms: u64,
        error: Option<&ApiError>,
    ) {
        let code = error.map(|error| error.code);
        if self.partitions.dropped_by(bucket, sent_ms) {
            if code != Some(ErrorCode::PartitionNotExists) {
                self.violation(format!(
                    "{context}: a request sent at {sent_ms} ms, after {bucket}'s partition was dropped at {} ms, was answered {}",
                    self.partitions.dropped_at_ms(bucket).unwrap_or_default(),
                    error.map_or("with success".to_string(), |error| error.to_string())
                ));
            }
        } else if code == Some(ErrorCode::PartitionNotExists)
            && !self.partitions.dropped_by(bucket, self.clock.now_mono_ms())
        {
            self.violation(format!(
                "{context}: PARTITION_NOT_EXISTS for {bucket}, whose partition exists"
            ));
        }
    }

    /// At quiescence: every live server serves exactly the live partitions, and no replica of
    /// a dropped partition is left on any of them (its scans closed, its engine released).
    pub fn check_dropped_partitions_released(&self, table_id: i64) {
        if !self.partitions.is_partitioned() {
            return;
        }
        let live = self.partitions.live_partitions();
        let dropped = self.partitions.dropped_buckets();
        let servers: Vec<Arc<TabletServer>> = lock(&self.servers).values().cloned().collect();
        for server in servers {
            let served = server.partitions(table_id);
            if served != live {
                self.violation(format!(
                    "node {} serves partitions {served:?} of table {table_id}, the table has {live:?}",
                    server.node_id()
                ));
            }
            for bucket in &dropped {
                self.check_bucket_released(&server, *bucket);
            }
        }
    }

    /// Once `server` has stopped serving a dropped partition (its removal completed): none of
    /// the partition's replicas or scan sessions is left on it, and none comes back.
    pub fn check_partition_released(&self, server: &TabletServer, partition_id: i64) {
        for bucket in self.partitions.buckets_of(Some(partition_id)) {
            self.check_bucket_released(server, bucket);
        }
    }

    fn check_bucket_released(&self, server: &TabletServer, bucket: TableBucket) {
        if server.replica(bucket).is_some() {
            self.violation(format!(
                "node {} still holds a replica of {bucket}, whose partition was dropped",
                server.node_id()
            ));
        }
        let sessions = server.scanners().sessions();
        let open = sessions.iter().filter(|session| session.bucket == bucket).count();
        if open > 0 {
            self.violation(format!(
                "node {} still has {open} scan sessions on {bucket}, whose partition was dropped",
                server.node_id()
            ));
        }
    }

    /// At quiescence: every leader has flushed everything, and its engine equals the model at
    /// the high watermark.
    pub fn check_quiescent_state(&self, bucket: TableBucket) {
        lock(&self.counts).buckets_checked_at_quiescence += 1;
        let servers: Vec<Arc<TabletServer>> = lock(&self.servers).values().cloned().collect();
        let leaders: Vec<_> = servers
            .iter()
            .filter_map(|s| s.leader_kv(bucket))
            .filter(|kv| kv.leader_epoch() == kv.log().leader_epoch())
            .collect();
        let [kv] = leaders.as_slice() else {
            return self
                .violation(format!("{bucket}: {} current leaders at quiescence", leaders.len()));
        };
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        if let Err(text) = model.check_history(kv.log()) {
            drop(model);
            return self.violation(text);
        }
        if let Err(text) = self.check_remote_tier(&model, bucket) {
            drop(model);
            return self.violation(text);
        }
        let deferred: Vec<_> = lock(&self.deferred_acks)
            .iter()
            .filter(|(acked_bucket, ..)| *acked_bucket == bucket)
            .cloned()
            .collect();
        for (_, writes, target_columns, base_offset, end_offset) in deferred {
            let target_columns = target_columns.as_deref();
            if let Err(text) =
                model.check_acked_put(bucket, &writes, target_columns, base_offset, end_offset)
            {
                drop(model);
                return self.violation(text);
            }
        }
        let deferred_scans: Vec<DeferredScan> = lock(&self.deferred_scans)
            .iter()
            .filter(|(scanned_bucket, ..)| *scanned_bucket == bucket)
            .cloned()
            .collect();
        for (_, log_offset, limit, values) in deferred_scans {
            if log_offset > model.read_offset(bucket) {
                let end = model.read_offset(bucket);
                drop(model);
                return self.violation(format!(
                    "scan of {bucket} claims log_offset {log_offset} beyond the log end {end} at quiescence"
                ));
            }
            self.compare_scan(&model, bucket, log_offset, limit, &values);
        }
        let high_watermark = kv.log().high_watermark();
        if kv.flushed_log_offset() != high_watermark {
            drop(model);
            return self.violation(format!(
                "{bucket}: flushed offset {} at quiescence, high watermark {high_watermark}",
                kv.flushed_log_offset()
            ));
        }
        let actual = match engine_contents(kv) {
            Ok(actual) => actual,
            Err(text) => {
                drop(model);
                return self.violation(format!("{bucket}: {text}"));
            }
        };
        if !model.state_is(bucket, high_watermark, borrowed_rows(&actual)) {
            let expected_len = model.rows_at(bucket, high_watermark).count();
            drop(model);
            self.violation(format!(
                "{bucket}: engine holds {} rows at quiescence, model {expected_len} (or different values)",
                actual.len()
            ));
        }
    }

    /// A recovered bucket's engine (opened from a KV snapshot, then replayed) holds exactly
    /// the model's state at the flushed offset stored in it, read from one engine snapshot so
    /// that a flush landing meanwhile cannot tear the comparison. Returns whether it matched,
    /// `None` when it was not compared (an offset beyond what the model has read so far is
    /// left for a later check).
    pub fn check_restored_engine(
        &self,
        node: NodeId,
        bucket: TableBucket,
        engine: &dyn kvtablet_core::engine::KvEngine,
    ) -> Option<bool> {
        let unreadable = |text: String| {
            self.violation(format!(
                "recovered engine of {bucket} on node {node} unreadable: {text}"
            ));
            Some(false)
        };
        let opened = || -> Result<_, String> {
            let snapshot = engine.snapshot().map_err(|e| e.to_string())?;
            let offset = snapshot.flushed_log_offset().map_err(|e| e.to_string())?.unwrap_or(0);
            Ok((offset, snapshot))
        };
        let (offset, snapshot) = match opened() {
            Ok(opened) => opened,
            Err(text) => return unreadable(text),
        };
        // The model is not caught up here: its reads of the logs draw from the disks' fault
        // streams, so a catch-up for this check would shift every later disk fault of the
        // seed. An offset the model has not read yet is compared at a later check (at
        // quiescence the model has read everything); the engine is still read whole, as
        // every check reads it.
        let model = lock(&self.model);
        if offset > model.read_offset(bucket) {
            drop(model);
            return match snapshot_rows(snapshot) {
                Ok(_) => None,
                Err(text) => unreadable(text),
            };
        }
        let differing = match differing_snapshot_rows(snapshot, || model.rows_at(bucket, offset)) {
            Ok(differing) => differing,
            Err(text) => {
                drop(model);
                return unreadable(text);
            }
        };
        let expected =
            if differing.is_some() { model.state_at(bucket, offset) } else { Vec::new() };
        drop(model);
        lock(&self.counts).recovered_engines_checked += 1;
        if let Some(actual) = differing {
            let keys = |rows: &[(Vec<u8>, Vec<u8>)]| {
                rows.iter()
                    .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
            };
            self.violation(format!(
                "recovered engine of {bucket} on node {node} differs from the model at its flushed offset {offset}: {} rows, the model has {}: keys {:?}, want {:?}",
                actual.len(),
                expected.len(),
                keys(&actual),
                keys(&expected)
            ));
            return Some(false);
        }
        Some(true)
    }

    /// A recovered engine's check that needed no comparison (the engine is unchanged since it
    /// matched), counted as the comparison would have been.
    pub fn count_recovered_engine_check(&self) {
        lock(&self.counts).recovered_engines_checked += 1;
    }

    /// Reads the log in the god view: the model sees what is stored, not an injected fault.
    /// Opening the reference log is part of the read: an injected read error there would leave
    /// the model behind a read that a server answered from the same log a moment earlier.
    ///
    /// Tiering oracles: a log whose retention ran starts at or below the remote end the
    /// coordinator records, so that every offset is local or remote; and at or below its
    /// minimum retain offset (the log offset of the latest KV snapshot it committed), so that
    /// what a recovery from that snapshot replays is still local.
    fn catch_up(&self, model: &mut Model, bucket: TableBucket) -> Result<(), String> {
        self.fault_log().god_view(|| {
            let Some(log) = self.reference_log(bucket) else { return Ok(()) };
            let start = log.log_start_offset();
            if start > 0 && start > self.remote_end_offset(bucket) {
                return Err(format!(
                    "{bucket}: the local log starts at {start}, above the remote end {}: offsets deleted before they were tiered",
                    self.remote_end_offset(bucket)
                ));
            }
            // A log opened after a crash starts where retention left it, with no minimum
            // retain offset until its next snapshot: only its own retention is checked.
            let opened_start = {
                let mut seen = lock(&self.log_starts_seen);
                let identity = Arc::downgrade(&log);
                match seen.get(&bucket) {
                    Some((known, opened_start)) if known.ptr_eq(&identity) => *opened_start,
                    _ => {
                        seen.insert(bucket, (identity, start));
                        start
                    }
                }
            };
            if start > opened_start && start > log.min_retain_offset() {
                return Err(format!(
                    "{bucket}: the local log starts at {start}, above its minimum retain offset {}: offsets a recovery from the latest KV snapshot replays were deleted",
                    log.min_retain_offset()
                ));
            }
            model.catch_up(&log, &|offset| self.tiered_batches(bucket, offset))
        })
    }

    fn check_read_offset(
        &self,
        client: NodeId,
        bucket: TableBucket,
        read_offset: u64,
        floor: u64,
        model: &Model,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        if read_offset < floor {
            problems.push(format!(
                "read at offset {read_offset}, below the flushed offset {floor} when it started"
            ));
        }
        if read_offset > model.read_offset(bucket) {
            problems.push(format!(
                "read at offset {read_offset}, beyond the log end {}",
                model.read_offset(bucket)
            ));
        }
        let mut seen = lock(&self.client_read_offsets);
        let last = seen.entry((client, bucket)).or_insert(0);
        if read_offset < *last {
            problems.push(format!("read at offset {read_offset} after an earlier read at {last}"));
        }
        *last = (*last).max(read_offset);
        problems
    }
}

impl Checker {
    pub fn scanner_config(&self) -> ScannerConfig {
        self.scanner
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_mono_ms()
    }

    /// The bucket's current leader epoch, as its log knows it (the god view).
    /// The coordinator fenced `bucket`'s live logs at `leader_epoch`: from now on it is a
    /// current epoch, even if no log that shows it stays up for the checker to read (its only
    /// replicas crash, its partition is dropped).
    pub fn note_fenced_epoch(&self, bucket: TableBucket, leader_epoch: u32) {
        let mut seen = lock(&self.log_epochs);
        let last = seen.entry(bucket).or_insert(0);
        *last = (*last).max(leader_epoch);
    }

    pub fn log_epoch(&self, bucket: TableBucket) -> u32 {
        // With no replica of the bucket up (one replica, crashed), the last epoch seen stands.
        let mut seen = lock(&self.log_epochs);
        let last = seen.entry(bucket).or_insert(0);
        if let Some(log) = self.reference_log(bucket) {
            *last = (*last).max(log.leader_epoch());
        }
        *last
    }

    /// Whether `server` (the god view) still leads `bucket` under `leader_epoch`.
    pub fn server_leads_under(
        &self,
        server: NodeId,
        bucket: TableBucket,
        leader_epoch: u32,
    ) -> bool {
        let server = lock(&self.servers).get(&server).cloned();
        server.and_then(|s| s.replica(bucket)).is_some_and(|r| r.leads_under(leader_epoch))
    }

    pub fn note_crash(&self, server: NodeId) {
        *lock(&self.crash_counts).entry(server).or_insert(0) += 1;
    }

    pub fn crash_count(&self, server: NodeId) -> u64 {
        lock(&self.crash_counts).get(&server).copied().unwrap_or(0)
    }

    pub fn note_clock_jump(&self) {
        *lock(&self.last_clock_jump_ms) = Some(self.clock.now_mono_ms());
    }

    pub fn clock_jumped_since(&self, since_ms: u64) -> bool {
        lock(&self.last_clock_jump_ms).is_some_and(|at| at >= since_ms)
    }

    pub fn note_resume(&self, server: NodeId) {
        lock(&self.last_resume_ms).insert(server, self.clock.now_mono_ms());
    }

    /// Whether `server` was paused at some moment since `since_ms` (its session timings
    /// stretch as across a clock jump).
    pub fn paused_since(&self, server: NodeId, since_ms: u64) -> bool {
        lock(&self.last_resume_ms).get(&server).is_some_and(|at| *at >= since_ms)
    }

    /// Every page: it decodes, a page that promises more rows carries at least one, and it
    /// was served under an epoch that was current at some moment of the request (sent at
    /// `epoch_at_send`, answered now).
    pub fn on_scan_page(
        &self,
        client: NodeId,
        bucket: TableBucket,
        epoch_at_send: u32,
        response: &ScanKvResponse,
    ) -> Vec<Vec<u8>> {
        lock(&self.counts).scan_pages += 1;
        let epoch_now = self.log_epoch(bucket);
        let mut values = Vec::new();
        if let Some(records) = &response.records {
            match decode_value_batch(records) {
                Ok(decoded) => values = decoded,
                Err(error) => {
                    self.violation(format!("scan page for client {client} on {bucket}: {error}"))
                }
            }
        }
        if response.has_more_results == Some(true) && values.is_empty() {
            self.violation(format!("scan page on {bucket} promises more rows but carries none"));
        }
        if let Some(epoch) = response.leader_epoch {
            if epoch < epoch_at_send || epoch > epoch_now {
                self.violation(format!(
                    "scan page on {bucket} served under epoch {epoch}, outside [{epoch_at_send}, {epoch_now}] of its request"
                ));
            }
        }
        values
    }

    /// Snapshot isolation: a completed scan is the model's state at its `log_offset` (its
    /// first `limit` rows when limited): every key once, none missing, none extra.
    pub fn on_scan_complete(
        &self,
        bucket: TableBucket,
        log_offset: u64,
        limit: Option<i64>,
        values: &[Vec<u8>],
    ) {
        lock(&self.counts).scans_completed += 1;
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        if log_offset > model.read_offset(bucket) {
            if self.reference_log(bucket).is_none() {
                // No live log to read (its only replica went down after serving the scan):
                // checked at quiescence, as an acknowledged put in the same case.
                drop(model);
                lock(&self.deferred_scans).push((bucket, log_offset, limit, values.to_vec()));
                return;
            }
            let end = model.read_offset(bucket);
            drop(model);
            return self.violation(format!(
                "scan of {bucket} claims log_offset {log_offset} beyond the log end {end}"
            ));
        }
        self.compare_scan(&model, bucket, log_offset, limit, values);
    }

    /// The rows of a completed scan against the model at its `log_offset`.
    fn compare_scan(
        &self,
        model: &Model,
        bucket: TableBucket,
        log_offset: u64,
        limit: Option<i64>,
        values: &[Vec<u8>],
    ) {
        let mut expected: Vec<&[u8]> = model.rows_at(bucket, log_offset).map(|(_, v)| v).collect();
        if let Some(limit) = limit.filter(|l| *l > 0) {
            expected.truncate(limit as usize);
        }
        if !expected.iter().copied().eq(values.iter().map(Vec::as_slice)) {
            let expected: Vec<Vec<u8>> = expected.into_iter().map(<[u8]>::to_vec).collect();
            let keys = |rows: &[Vec<u8>]| {
                rows.iter()
                    .filter_map(|v| crate::client::key_of_value(v))
                    .map(|k| String::from_utf8_lossy(&k).into_owned())
                    .collect::<Vec<_>>()
            };
            self.violation(format!(
                "scan of {bucket} at log_offset {log_offset} (limit {limit:?}) returned {} rows, the model has {}: got {:?}, want {:?}",
                values.len(),
                expected.len(),
                keys(values),
                keys(&expected)
            ));
        }
    }

    /// Handoff: the scan's rows plus the changelog from its `log_offset` reproduce the model
    /// at the offset the changelog was applied up to.
    pub fn check_handoff(
        &self,
        bucket: TableBucket,
        log_offset: u64,
        values: &[Vec<u8>],
        batches: &[LogBatch],
    ) {
        lock(&self.counts).handoffs_checked += 1;
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for value in values {
            match crate::client::key_of_value(value) {
                Some(key) => {
                    if rows.insert(key, value.clone()).is_some() {
                        return self.violation(format!("scan of {bucket} returned a key twice"));
                    }
                }
                None => {
                    return self.violation(format!(
                        "scan of {bucket} returned a value without its key: {:?}",
                        String::from_utf8_lossy(value)
                    ))
                }
            }
        }
        let mut applied_until = log_offset;
        for batch in batches {
            if batch.end_offset() <= log_offset {
                continue;
            }
            for record in batch.records.iter().filter(|r| r.offset >= log_offset) {
                match record.change_type {
                    ChangeType::Insert | ChangeType::UpdateAfter | ChangeType::AppendOnly => {
                        rows.insert(record.key.clone(), record.value.clone());
                    }
                    ChangeType::Delete => {
                        rows.remove(&record.key);
                    }
                    ChangeType::UpdateBefore => {}
                }
            }
            applied_until = batch.end_offset();
        }
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        let rows_borrowed = rows.iter().map(|(key, value)| (key.as_slice(), value.as_slice()));
        if !model.state_is(bucket, applied_until, rows_borrowed) {
            let expected_len = model.rows_at(bucket, applied_until).count();
            drop(model);
            self.violation(format!(
                "handoff of {bucket}: scan at {log_offset} plus the changelog to {applied_until} gives {} rows, the model {expected_len}",
                rows.len()
            ));
        }
    }

    /// The library bootstrap's rows are the model's state at the offset it reached.
    pub fn check_bootstrap(
        &self,
        bucket: TableBucket,
        applied_until_offset: u64,
        rows: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) {
        lock(&self.counts).handoffs_checked += 1;
        let mut model = lock(&self.model);
        if let Err(text) = self.catch_up(&mut model, bucket) {
            drop(model);
            return self.violation(text);
        }
        let rows_borrowed = rows.iter().map(|(key, value)| (key.as_slice(), value.as_slice()));
        if !model.state_is(bucket, applied_until_offset, rows_borrowed) {
            let expected_len = model.rows_at(bucket, applied_until_offset).count();
            drop(model);
            self.violation(format!(
                "bootstrap of {bucket} to offset {applied_until_offset} holds {} rows, the model {expected_len}",
                rows.len()
            ));
        }
    }

    pub fn count_probe(&self) {
        lock(&self.counts).probes_checked += 1;
    }

    /// Limits are never exceeded and counters never negative; every registered session of a
    /// bucket belongs to the term its server currently leads.
    pub fn check_scanner_registries(&self) {
        let servers: Vec<Arc<TabletServer>> = lock(&self.servers).values().cloned().collect();
        for server in servers {
            let counts = server.scanners().counts();
            if counts.total < 0 || counts.total > i64::from(self.scanner.sessions_per_server_max) {
                self.violation(format!(
                    "node {} holds {} scan sessions",
                    server.node_id(),
                    counts.total
                ));
            }
            for (bucket, count) in &counts.per_bucket {
                if *count < 0 || *count > i64::from(self.scanner.sessions_per_bucket_max) {
                    self.violation(format!(
                        "node {} holds {count} scan sessions of {bucket}",
                        server.node_id()
                    ));
                }
            }
            for session in server.scanners().sessions() {
                let current = server
                    .replica(session.bucket)
                    .is_some_and(|r| r.leads_under(session.leader_epoch));
                if !current {
                    self.violation(format!(
                        "node {} keeps scan session {} of {} opened under epoch {}, which it no longer leads",
                        server.node_id(),
                        session.id,
                        session.bucket,
                        session.leader_epoch
                    ));
                }
            }
        }
    }

    /// After TTL plus an eviction interval with no clients: no session is left anywhere.
    pub fn check_no_sessions_left(&self, ledger: &kvtablet_core::ledger::Ledger) {
        let servers: Vec<Arc<TabletServer>> = lock(&self.servers).values().cloned().collect();
        for server in servers {
            let counts = server.scanners().counts();
            if counts.total != 0 || counts.registered != 0 || !counts.per_bucket.is_empty() {
                self.violation(format!(
                    "node {} still holds scan sessions after the TTL: {counts:?}",
                    server.node_id()
                ));
            }
        }
        let sessions = ledger.count(kvtablet_core::ledger::ResourceKind::ScanSession);
        if sessions != 0 {
            self.violation(format!("{sessions} scan sessions alive in the ledger after the TTL"));
        }
    }
}

/// Each oracle's name and fragments of the violations it reports, first match wins. A new
/// violation message should match one of these (or be given a row of its own), so that
/// shrinking and the mutant table can tell which oracle caught a run.
const ORACLES: &[(&str, &[&str])] = &[
    ("panic", &["panic: "]),
    // The `leases` scenario's oracles (`lease_oracle.rs`, `coordinator_leases.rs`).
    ("lease", &["lease: "]),
    ("liveness", &["workload did not finish", "cluster did not heal"]),
    ("stale-epoch-write", &["write accepted under stale epoch"]),
    ("duplicate-append", &["appended twice"]),
    ("snapshot-content", &["committed snapshot"]),
    ("snapshot-files", &["snapshot file deleted while kept", "snapshot file damaged while kept"]),
    ("snapshot-orphans", &["orphan snapshot file"]),
    ("retain-offset", &["minimum retain offset"]),
    (
        "changelog",
        &[
            "inconsistent changelog",
            "ends inside an update pair",
            "changelog lost data",
            "log unreadable",
            "log read at",
            ": batch at ",
        ],
    ),
    (
        "acked-put",
        &[
            "put acknowledged at",
            "acknowledged put at",
            "acknowledged data lost",
            "where none began",
        ],
    ),
    ("read", &["lookup by client", "read by client"]),
    ("unexpected-error", &["unexpected error"]),
    ("leak", &["leak ledger", "tasks left after shutdown"]),
    ("quiescent-state", &["at quiescence", "engine holds"]),
    ("scan-registry", &["scan sessions", "keeps scan session"]),
    ("scan-page", &["scan page", "promises more rows", "without a scanner id", "scan open on"]),
    ("scan-snapshot", &["scan of ", "handoff of", "bootstrap of"]),
    (
        "scan-session",
        &[
            "continuation",
            "a retry of page",
            "retry of the last page",
            "closing a session",
            "abandoned session",
            "never-issued scanner id",
            "ScanKv answered with",
        ],
    ),
    ("retention", &["retention on"]),
    ("recovered-engine", &["recovered engine of"]),
    ("recovery-temp", &["recovery temp"]),
    ("recovery-liveness", &["spun on"]),
    ("fetcher-bounds", &["remote-log fetcher"]),
];

/// The oracle that reported `violation`: a stable name (see [`ORACLES`]), or for a message
/// none of them matches, `other:` and its first words with numbers blanked out.
pub fn oracle_of(violation: &str) -> String {
    let known = ORACLES
        .iter()
        .find(|(_, fragments)| fragments.iter().any(|fragment| violation.contains(fragment)));
    if let Some((oracle, _)) = known {
        return (*oracle).to_string();
    }
    let words: Vec<&str> = violation
        .split_whitespace()
        .take(4)
        .map(|word| if word.chars().any(|c| c.is_ascii_digit()) { "#" } else { word })
        .collect();
    format!("other:{}", words.join(" "))
}

fn engine_contents(kv: &kvtablet_core::kv::KvTablet) -> Result<Rows, String> {
    let (snapshot, _) = kv.read_snapshot().map_err(|e| e.to_string())?;
    snapshot_rows(snapshot)
}

/// Rows as borrowed keys and values, for comparing against the model without copies.
fn borrowed_rows(rows: &[(Vec<u8>, Vec<u8>)]) -> impl Iterator<Item = (&[u8], &[u8])> {
    rows.iter().map(|(key, value)| (key.as_slice(), value.as_slice()))
}

/// An engine snapshot read row by row against `expected` (rows in key order; called again
/// to rebuild the rows matched so far once one differs): `None` when they are the same, else
/// the snapshot's rows. Makes the same iterator calls as [`snapshot_rows`], and copies rows
/// only once they differ.
fn differing_snapshot_rows<'m, I>(
    snapshot: Arc<dyn kvtablet_core::engine::EngineSnapshot>,
    expected: impl Fn() -> I,
) -> Result<Option<Rows>, String>
where
    I: Iterator<Item = (&'m [u8], &'m [u8])>,
{
    let owned = |(key, value): (&[u8], &[u8])| (key.to_vec(), value.to_vec());
    let mut iterator =
        snapshot.iter(kvtablet_core::engine::KeyRange::all()).map_err(|e| e.to_string())?;
    iterator.seek_to_first();
    let mut remaining = expected();
    let mut matched = 0;
    let mut differing: Option<Rows> = None;
    while iterator.valid() {
        let row = (iterator.key(), iterator.value());
        match &mut differing {
            Some(rows) => rows.push(owned(row)),
            None if remaining.next() == Some(row) => matched += 1,
            None => {
                let mut rows: Rows = expected().take(matched).map(owned).collect();
                rows.push(owned(row));
                differing = Some(rows);
            }
        }
        iterator.next();
    }
    iterator.status().map_err(|e| e.to_string())?;
    if differing.is_none() && remaining.next().is_some() {
        differing = Some(expected().take(matched).map(owned).collect());
    }
    Ok(differing)
}

/// Every row of an engine snapshot, in key order.
fn snapshot_rows(snapshot: Arc<dyn kvtablet_core::engine::EngineSnapshot>) -> Result<Rows, String> {
    let mut iterator =
        snapshot.iter(kvtablet_core::engine::KeyRange::all()).map_err(|e| e.to_string())?;
    iterator.seek_to_first();
    let mut rows = Vec::new();
    while iterator.valid() {
        rows.push((iterator.key().to_vec(), iterator.value().to_vec()));
        iterator.next();
    }
    iterator.status().map_err(|e| e.to_string())?;
    Ok(rows)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A checker of one server holding one replica of one bucket, with nothing recorded: for the
/// unit tests of the oracles that report through a checker.
#[cfg(test)]
impl Checker {
    pub(crate) fn for_tests(clock: Arc<dyn Clock>) -> Checker {
        let logs = ClusterLogs::new(
            1,
            1,
            kvtablet_core::log::LogConfig { segment_bytes_max: 1024 },
            kvtablet_core::mutant::Mutants::NONE,
        );
        Checker::new(
            logs,
            Arc::new(Mutex::new(BTreeMap::new())),
            Arc::new(Mutex::new(Trace::new(crate::trace::TraceMode::HashOnly))),
            clock,
            ScannerConfig::DEFAULT,
            TablePartitions::new(1, 1, false),
        )
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::executor::SimExecutor;
    use crate::fault_log::FaultKind;
    use crate::prng::Streams;

    #[test]
    fn violations_are_classified_by_their_oracle() {
        let cases = [
            ("t1-b3: inconsistent changelog at offset 4: +I of key \"k\" while the key holds \"v\"", "changelog"),
            ("t1-b0: write accepted under stale epoch 2 after epoch 3 (offset 9)", "stale-epoch-write"),
            ("t1-b0: batch 3 of writer 0x1 appended twice, at 4 and 7", "duplicate-append"),
            ("lookup by client 101 on t1-b2: key k1 read None at offset 3, model has Some(\"v\")", "read"),
            ("panic: scanner counter of t1-b0 went negative", "panic"),
            ("2 scan sessions alive in the ledger after the TTL", "scan-registry"),
            ("leak ledger not empty at quiescence: Task of node 1", "leak"),
            ("scan of t1-b1 at log_offset 5 (limit None) returned 2 rows, the model has 3: got [], want []", "scan-snapshot"),
            ("workload did not finish: deadlock", "liveness"),
        ];
        for (text, oracle) in cases {
            assert_eq!(oracle_of(text), oracle, "{text}");
        }
        assert_eq!(oracle_of("something new went wrong at 42"), "other:something new went wrong");
        assert_eq!(oracle_of("node 3 did a thing"), "other:node # did a");
    }

    fn checker() -> Checker {
        Checker::for_tests(SimExecutor::new(&Streams::new(1)).clock_for(0))
    }

    #[test]
    fn a_storage_error_is_a_violation_until_a_storage_fault_fired() {
        let checker = checker();
        let error = ApiError::new(ErrorCode::KvStorageException, "engine I/O failure");
        checker.on_error("lookup", &error);
        assert_eq!(checker.violations().len(), 1, "no fault injected: a real storage failure");

        let fault_log = Arc::new(FaultLog::new());
        checker.set_fault_log(fault_log.clone());
        fault_log.record(FaultKind::TornWrite);
        checker.on_error("lookup", &error);
        assert_eq!(checker.violations().len(), 2, "a torn write fails no operation");

        fault_log.record(FaultKind::EngineReadError);
        checker.on_error("lookup", &error);
        let log_error = ApiError::new(ErrorCode::LogStorageException, "fsync failed");
        checker.on_error("put", &log_error);
        assert_eq!(checker.violations().len(), 2, "explained by the injected faults");

        checker.on_error("put", &ApiError::new(ErrorCode::OutOfOrderSequence, "gap"));
        assert_eq!(checker.violations().len(), 3, "faults never explain other errors");
    }
}
