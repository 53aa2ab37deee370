//! A simulated client: upserts, deletes, lookups, prefix lookups and limit scans against the
//! current leaders, with metadata refresh and bounded retries, every answer sent to the checker.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use kvtablet_core::env::{Clock, Rpc, RpcError};
use kvtablet_core::log::WriterBatch;
use kvtablet_core::message::{KvWrite, NodeId, Request, Response};
use kvtablet_core::{ErrorCode, TableBucket};

use crate::checker::{Checker, RowQuery};
use crate::leader_cache::LeaderCache;
use crate::plan::RunPlan;
use crate::prng::{Prng, Ratio};
use crate::sim_row;
use crate::writer_pipeline::{BatchFate, Burst, PipelineBatch, IN_FLIGHT_BATCHES_MAX};

/// The coordinator's node id; tablet servers are 1..=n, clients from 100.
pub const COORDINATOR_NODE: NodeId = 0;
pub const TABLE_ID: i64 = 1;
pub const SCHEMA_ID: i16 = 1;
const ATTEMPTS_MAX: u32 = 6;
const KEY_PREFIXES: u32 = 3;

pub struct Client {
    pub node_id: NodeId,
    pub rpc: Arc<dyn Rpc>,
    pub clock: Arc<dyn Clock>,
    pub prng: Prng,
    pub plan: Arc<RunPlan>,
    pub checker: Arc<Checker>,
    pub ops: u32,
    leaders: LeaderCache,
    write_seq: u64,
    /// The idempotent writer this client writes as; a new one after a put whose fate is
    /// unknown, as a real client re-initializes its writer.
    writer_id: i64,
    writer_incarnation: u32,
    /// The next batch sequence per bucket, for `writer_id`.
    batch_sequences: BTreeMap<TableBucket, i32>,
    /// The last batches `writer_id` had acknowledged per bucket (as many as the server
    /// retains), to resend one late and check it is recognised.
    acked_batches: BTreeMap<TableBucket, VecDeque<AckedBatch>>,
}

/// A batch the current writer had acknowledged, where.
#[derive(Debug, Clone)]
struct AckedBatch {
    batch_sequence: i32,
    writes: Vec<KvWrite>,
    target_columns: Option<Vec<u32>>,
    base_offset: u64,
    end_offset: u64,
}

/// The key of index `index` in `bucket`: `b{bucket}/p{prefix}/k{index}`.
pub fn key_of(bucket: TableBucket, index: u32) -> Vec<u8> {
    format!("b{:03}/p{}/k{:03}", bucket.bucket_id, index % KEY_PREFIXES, index).into_bytes()
}

/// A stored value: the schema id, then the key itself (a scan returns values only, so the
/// oracles read the key back out of it), then a tag unique to the write.
pub fn value_of(key: &[u8], tag: &str) -> Vec<u8> {
    sim_row::full_row(key, tag)
}

/// The key a value produced by [`value_of`] carries.
pub fn key_of_value(value: &[u8]) -> Option<Vec<u8>> {
    let body = value.get(2..)?;
    let end = body.iter().position(|b| *b == b'|')?;
    Some(body[..end].to_vec())
}

/// Writer ids are unique per client and incarnation.
fn writer_id_of(node_id: NodeId, incarnation: u32) -> i64 {
    (i64::from(node_id) << 32) | i64::from(incarnation)
}

pub fn prefix_of(bucket: TableBucket, prefix: u32) -> Vec<u8> {
    format!("b{:03}/p{}/", bucket.bucket_id, prefix).into_bytes()
}

impl Client {
    pub fn new(
        node_id: NodeId,
        rpc: Arc<dyn Rpc>,
        clock: Arc<dyn Clock>,
        prng: Prng,
        plan: Arc<RunPlan>,
        checker: Arc<Checker>,
        ops: u32,
    ) -> Client {
        Client {
            node_id,
            rpc,
            clock,
            prng,
            plan,
            checker,
            ops,
            leaders: LeaderCache::new(),
            write_seq: 0,
            writer_id: writer_id_of(node_id, 0),
            writer_incarnation: 0,
            batch_sequences: BTreeMap::new(),
            acked_batches: BTreeMap::new(),
        }
    }

    /// Forgets the writer: its sequences may have a gap now.
    fn renew_writer(&mut self) {
        self.writer_incarnation += 1;
        self.writer_id = writer_id_of(self.node_id, self.writer_incarnation);
        self.batch_sequences.clear();
        self.acked_batches.clear();
    }

    /// Runs the client's operations to the end; each batch of a pipelined put counts as one.
    pub async fn run(mut self) {
        let mut remaining = self.ops;
        while remaining > 0 {
            remaining -= 1;
            let Some(bucket) = self.checker.partitions.pick_bucket(&mut self.prng) else {
                continue;
            };
            let weights = self.plan.weights;
            let total = weights.upsert
                + weights.delete
                + weights.lookup
                + weights.prefix_lookup
                + weights.limit_scan;
            let mut pick = self.prng.below(total);
            if pick < weights.upsert + weights.delete {
                let delete_share = Ratio::new(weights.delete, weights.upsert + weights.delete);
                let batches_max = (remaining + 1).min(IN_FLIGHT_BATCHES_MAX as u32);
                let batches = self.put(bucket, delete_share, batches_max).await;
                remaining -= batches.saturating_sub(1).min(remaining);
                continue;
            }
            pick -= weights.upsert + weights.delete;
            if pick < weights.lookup {
                self.lookup(bucket).await;
            } else if pick < weights.lookup + weights.prefix_lookup {
                let prefix = prefix_of(bucket, self.prng.below(u64::from(KEY_PREFIXES)) as u32);
                self.read_rows(bucket, RowQuery::Prefix(prefix)).await;
            } else {
                let limit =
                    self.prng.range_inclusive(1, u64::from(self.plan.keys_per_bucket) + 2) as u32;
                self.read_rows(bucket, RowQuery::Limit(limit)).await;
            }
            // Think time spreads the clients' operations over the fault schedule.
            let think_ms = self.prng.range_inclusive(0, 20);
            self.clock.sleep(think_ms).await;
        }
    }

    /// One batch's writes, and its target columns when it is a partial update (the key, and
    /// one value column, both, or, rarely, none).
    fn draw_writes(
        &mut self,
        bucket: TableBucket,
        delete_share: Ratio,
    ) -> (Vec<KvWrite>, Option<Vec<u32>>) {
        let target_columns = self.prng.chance(self.plan.partial_update).then(|| {
            const TARGETS: [&[u32]; 4] = [&[0, 1], &[0, 2], &[0, 1, 2], &[0]];
            let weights = [4, 4, 1, 1];
            let mut pick = self.prng.below(weights.iter().sum());
            let index = weights.iter().position(|w| {
                pick < *w || {
                    pick -= w;
                    false
                }
            });
            TARGETS[index.unwrap_or(0)].to_vec()
        });
        let count = self.prng.range_inclusive(1, 3);
        let mut writes = Vec::new();
        for _ in 0..count {
            let key = key_of(bucket, self.prng.below(u64::from(self.plan.keys_per_bucket)) as u32);
            let value = if self.prng.chance(delete_share) {
                None
            } else {
                self.write_seq += 1;
                let tag = format!("c{}-w{}", self.node_id, self.write_seq);
                Some(match &target_columns {
                    None => value_of(&key, &tag),
                    Some(targets) => sim_row::partial_row(&key, &tag, targets),
                })
            };
            writes.push(KvWrite { key, value });
        }
        (writes, target_columns)
    }

    /// Up to five batches pipelined on one bucket (some sent as two copies at once), each
    /// resent with its writer and sequence until acknowledged; sometimes first a late resend of
    /// a batch acknowledged earlier. A batch given up leaves a gap: the writer is renewed.
    /// Returns how many batches it sent (at most `batches_max`).
    async fn put(&mut self, bucket: TableBucket, delete_share: Ratio, batches_max: u32) -> u32 {
        if self.prng.chance(Ratio::new(1, 6)) {
            self.resend_acked(bucket).await;
        }
        let in_flight = if self.prng.chance(Ratio::new(1, 3)) || batches_max < 2 {
            1
        } else {
            self.prng.range_inclusive(2, u64::from(batches_max)) as usize
        };
        let mut next_sequence = *self.batch_sequences.entry(bucket).or_insert(0);
        let mut batches = Vec::with_capacity(in_flight);
        for _ in 0..in_flight {
            let (writes, target_columns) = self.draw_writes(bucket, delete_share);
            let sent_twice = self.prng.chance(Ratio::new(1, 10));
            batches.push(PipelineBatch {
                batch_sequence: next_sequence,
                writes,
                target_columns,
                sent_twice,
            });
            next_sequence = next_sequence.wrapping_add(1).max(0);
        }
        let leader = self.leaders.leader_of(&self.rpc, bucket, self.plan.request_timeout_ms).await;
        let burst = Burst::new(
            self.node_id,
            self.rpc.clone(),
            self.clock.clone(),
            self.checker.clone(),
            bucket,
            self.writer_id,
            self.plan.request_timeout_ms,
            leader,
        );
        let fates = burst.run(&batches).await;
        if burst.leader_known().is_none() {
            self.leaders.forget(bucket);
        }
        if fates.contains(&BatchFate::GaveUp) {
            self.renew_writer();
            return in_flight as u32;
        }
        self.batch_sequences.insert(bucket, next_sequence);
        let history = self.acked_batches.entry(bucket).or_default();
        for (batch, fate) in batches.into_iter().zip(fates) {
            if let BatchFate::Acked { base_offset, end_offset } = fate {
                history.push_back(AckedBatch {
                    batch_sequence: batch.batch_sequence,
                    writes: batch.writes,
                    target_columns: batch.target_columns,
                    base_offset,
                    end_offset,
                });
            }
        }
        while history.len() > IN_FLIGHT_BATCHES_MAX {
            history.pop_front();
        }
        in_flight as u32
    }

    /// Resends one of the writer's last acknowledged batches on `bucket` (a late duplicate, as
    /// a client whose earlier copy timed out sends): the server still retains it, so it must be
    /// answered as a duplicate at its original offsets, never appended again.
    async fn resend_acked(&mut self, bucket: TableBucket) {
        let Some(history) = self.acked_batches.get(&bucket) else { return };
        let history: Vec<AckedBatch> = history.iter().cloned().collect();
        let Some(acked) = self.prng.pick(&history).cloned() else { return };
        let writer =
            WriterBatch { writer_id: self.writer_id, batch_sequence: acked.batch_sequence };
        let request = Request::PutKv {
            bucket,
            writes: acked.writes.clone(),
            writer: Some(writer),
            target_columns: acked.target_columns.clone(),
        };
        match self.send(bucket, request).await {
            Ok((Response::PutKv { base_offset, end_offset, duplicate }, _)) => {
                self.checker.note(
                    self.node_id,
                    "resend-acked",
                    format!(
                        "{} seq {} at {base_offset}",
                        bucket.dir_name_display(),
                        acked.batch_sequence
                    ),
                );
                if !duplicate || (base_offset, end_offset) != (acked.base_offset, acked.end_offset)
                {
                    self.checker.violation(format!(
                        "client {} resent batch {} of writer {:#x} on {bucket}, acknowledged at {}..{}: answered {base_offset}..{end_offset} duplicate={duplicate}",
                        self.node_id, acked.batch_sequence, self.writer_id, acked.base_offset, acked.end_offset
                    ));
                }
                self.checker.on_put_ack(
                    bucket,
                    &acked.writes,
                    acked.target_columns.as_deref(),
                    base_offset,
                    end_offset,
                );
            }
            Ok(_) => {}
            Err(reason) => self.checker.progress.give_up("resend-acked", &reason),
        }
    }

    /// The progress probe after the heal: writes one new value to `bucket` and reads it back
    /// once flushed, retrying until `deadline_ms` of virtual time. Returns why it could not.
    pub async fn write_and_read_back(
        &mut self,
        bucket: TableBucket,
        deadline_ms: u64,
    ) -> Result<(), String> {
        let key = key_of(bucket, 0);
        self.write_seq += 1;
        let value = value_of(&key, &format!("probe{}-w{}", self.node_id, self.write_seq));
        let writes = vec![KvWrite { key: key.clone(), value: Some(value.clone()) }];
        let batch_sequence = *self.batch_sequences.entry(bucket).or_insert(0);
        let writer = WriterBatch { writer_id: self.writer_id, batch_sequence };
        let request = Request::PutKv {
            bucket,
            writes: writes.clone(),
            writer: Some(writer),
            target_columns: None,
        };
        let end_offset = loop {
            match self.send(bucket, request.clone()).await {
                Ok((Response::PutKv { base_offset, end_offset, .. }, _)) => {
                    self.checker.on_put_ack(bucket, &writes, None, base_offset, end_offset);
                    self.batch_sequences.insert(bucket, batch_sequence + 1);
                    break end_offset;
                }
                Ok((other, _)) => return Err(format!("put answered {other:?}")),
                Err(reason) if self.clock.now_mono_ms() >= deadline_ms => {
                    return Err(format!("put not acknowledged: {reason}"))
                }
                Err(_) => {}
            }
        };
        let keys = vec![key];
        loop {
            let request = Request::Lookup { bucket, keys: keys.clone() };
            let last = match self.send(bucket, request).await {
                Ok((Response::Lookup { values, read_offset }, floor)) => {
                    self.checker.on_lookup(
                        self.node_id,
                        bucket,
                        &keys,
                        &values,
                        read_offset,
                        floor,
                    );
                    if read_offset >= end_offset {
                        return if values.first() == Some(&Some(value)) {
                            Ok(())
                        } else {
                            Err(format!("read back {values:?} at {read_offset}"))
                        };
                    }
                    format!("flushed only to {read_offset} of {end_offset}")
                }
                Ok((other, _)) => return Err(format!("lookup answered {other:?}")),
                Err(reason) => reason,
            };
            if self.clock.now_mono_ms() >= deadline_ms {
                return Err(format!("write at {end_offset} not readable: {last}"));
            }
            self.clock.sleep(10).await;
        }
    }

    async fn lookup(&mut self, bucket: TableBucket) {
        let count = self.prng.range_inclusive(1, 4);
        let keys: Vec<Vec<u8>> = (0..count)
            .map(|_| key_of(bucket, self.prng.below(u64::from(self.plan.keys_per_bucket)) as u32))
            .collect();
        let request = Request::Lookup { bucket, keys: keys.clone() };
        let answer = self.send(bucket, request).await;
        if let Err(reason) = &answer {
            self.checker.progress.give_up("lookup", reason);
        }
        if let Ok((Response::Lookup { values, read_offset }, floor)) = answer {
            let found = values.iter().filter(|v| v.is_some()).count();
            self.checker.note(
                self.node_id,
                "lookup",
                format!("{} {found}/{} at {read_offset}", bucket.dir_name_display(), keys.len()),
            );
            self.checker.on_lookup(self.node_id, bucket, &keys, &values, read_offset, floor);
        }
    }

    async fn read_rows(&mut self, bucket: TableBucket, query: RowQuery) {
        let request = match &query {
            RowQuery::Prefix(prefix) => Request::PrefixLookup { bucket, prefix: prefix.clone() },
            RowQuery::Limit(limit) => Request::LimitScan { bucket, limit: *limit },
        };
        let answer = self.send(bucket, request).await;
        if let Err(reason) = &answer {
            self.checker.progress.give_up("read-rows", reason);
        }
        if let Ok((Response::Rows { values, read_offset }, floor)) = answer {
            self.checker.note(
                self.node_id,
                "rows",
                format!("{} {} rows at {read_offset}", bucket.dir_name_display(), values.len()),
            );
            self.checker.on_rows(self.node_id, bucket, &query, &values, read_offset, floor);
        }
    }

    /// Sends to the bucket's leader, refreshing metadata and retrying on leadership errors and
    /// timeouts. Returns the response and the read floor captured just before it was sent, or
    /// why it gave up (`timeout`, `unreachable`, `no-leader` or the refusing error's code).
    async fn send(
        &mut self,
        bucket: TableBucket,
        request: Request,
    ) -> Result<(Response, u64), String> {
        let mut backoff_ms = 10;
        let mut reason = "none".to_string();
        for _ in 0..ATTEMPTS_MAX {
            let Some(leader) =
                self.leaders.leader_of(&self.rpc, bucket, self.plan.request_timeout_ms).await
            else {
                reason = "no-leader".to_string();
                self.clock.sleep(backoff_ms).await;
                backoff_ms *= 2;
                continue;
            };
            let floor = self.checker.read_floor(bucket);
            let sent_ms = self.clock.now_mono_ms();
            let answer = self.rpc.call(leader, request.clone(), self.plan.request_timeout_ms).await;
            if let Ok(response) = &answer {
                let error = match response {
                    Response::Error(error) => Some(error),
                    _ => None,
                };
                self.checker.check_partition_answer(
                    &format!("client {} {} on {bucket}", self.node_id, request.kind()),
                    bucket,
                    sent_ms,
                    error,
                );
            }
            match answer {
                Ok(Response::Error(error)) => {
                    self.checker.note(
                        self.node_id,
                        "error",
                        format!(
                            "{} {} {:?}",
                            request.kind(),
                            bucket.dir_name_display(),
                            error.code
                        ),
                    );
                    self.checker.on_error(
                        &format!("client {} {} on {bucket}", self.node_id, request.kind()),
                        &error,
                    );
                    reason = format!("{:?}", error.code);
                    // A bucket restoring its engine is not ready: retried as a moved leader.
                    if !matches!(
                        error.code,
                        ErrorCode::NotLeaderOrFollower | ErrorCode::LeaderNotAvailable
                    ) {
                        return Err(reason);
                    }
                }
                Ok(response) => return Ok((response, floor)),
                Err(RpcError::Timeout(_)) => reason = "timeout".to_string(),
                Err(RpcError::Unreachable(_)) => reason = "unreachable".to_string(),
            }
            self.leaders.forget(bucket);
            self.clock.sleep(backoff_ms).await;
            backoff_ms *= 2;
        }
        Err(reason)
    }
}
