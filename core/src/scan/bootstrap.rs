//! Snapshot-then-changelog bootstrap of one bucket (spec §1.10): scan the bucket's KV at the
//! leader's flushed offset, then replay the changelog from exactly that offset. The scan's
//! `log_offset` is exclusive (every change below it is in the snapshot, none at or above it),
//! so the handoff has neither a gap nor a duplicate. Nothing in Fluss consumes `log_offset`
//! yet; this is the consumer.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::env::{Clock, Executor, Rpc, RpcError};
use crate::error::{ApiError, ErrorCode};
use crate::ledger::Ledger;
use crate::log::{ChangeType, LogBatch};
use crate::message::{NodeId, Request, Response};
use crate::scan::kv_scanner::{KvScanner, KvScannerOptions, ScanError};
use crate::table_bucket::TableBucket;

/// Settings of a bootstrap. There is no `Default`: start from [`BootstrapOptions::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// The snapshot scan; its `limit` must be `None` (a partial snapshot cannot be followed).
    pub scan: KvScannerOptions,
    /// `max_bytes` of each FetchLog request.
    pub fetch_log_bytes_max: u64,
    /// How many FetchLog requests one bootstrap may send, empty polls included.
    pub fetch_log_requests_max: u32,
    /// Sleep before asking again when the log has nothing new yet (the high watermark is below
    /// `follow_until_offset`).
    pub fetch_log_poll_interval_ms: u64,
}

impl BootstrapOptions {
    pub const DEFAULT: BootstrapOptions = BootstrapOptions {
        scan: KvScannerOptions::DEFAULT,
        fetch_log_bytes_max: 1024 * 1024,
        fetch_log_requests_max: 100_000,
        fetch_log_poll_interval_ms: 100,
    };
}

/// A bucket's rows at one log offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The bucket's state at `applied_until_offset` (exclusive), by key.
    pub rows: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The scan's `log_offset`: the snapshot holds every change below it.
    pub snapshot_log_offset: u64,
    /// Every change below this offset is applied, none at or above it. Equals the target
    /// (`follow_until_offset`, or the first FetchLog's high watermark) unless the snapshot was
    /// already past it, in which case it is `snapshot_log_offset` and nothing was applied.
    pub applied_until_offset: u64,
}

/// Why a bootstrap failed. `is_restartable` says whether running it again may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// The snapshot scan failed; [`ScanError::is_restartable`] decides.
    #[error("snapshot scan failed: {0}")]
    Scan(#[from] ScanError),
    /// A scanned value has no key by the caller's `key_of_value`: the function does not match
    /// the table's schema. Do not retry.
    #[error("no key can be extracted from scanned value #{value_index} ({value_len_bytes} bytes); key_of_value does not fit the table")]
    KeyNotExtracted { value_index: u64, value_len_bytes: usize },
    /// Two scanned values map to the same key: `key_of_value` is wrong or the snapshot is
    /// corrupt. Do not retry.
    #[error("scanned value #{value_index} repeats key {key_hex}; key_of_value does not fit the table or the snapshot is corrupt")]
    DuplicateKey { value_index: u64, key_hex: String },
    /// The snapshot scan was asked for a row limit.
    #[error("a bootstrap needs the whole bucket; remove the scan limit")]
    LimitedScan,
    /// The leader answered FetchLog with an error. Restart, after refreshing metadata, if
    /// [`ApiError::is_retriable`] (not leader, say) or if the offset is out of range: log
    /// retention (remote TTL, then local deletion of tiered segments) overtook a scan that
    /// outlasted it, which a fresh snapshot at a newer offset gets past, as with `LogGap`.
    #[error("fetching the changelog failed: {0}")]
    FetchLog(ApiError),
    /// FetchLog got no response after its resends. Restart.
    #[error("fetching the changelog got no response; restart the bootstrap: {0}")]
    Transport(RpcError),
    /// The log returned batches that skip `from_offset` (retention deleted what the snapshot
    /// needs): restart with a fresh snapshot.
    #[error("the changelog starts at {first_available_offset}, after the needed offset {needed_offset}; restart with a fresh snapshot")]
    LogGap { needed_offset: u64, first_available_offset: u64 },
    /// `fetch_log_requests_max` requests did not reach the target offset (the high watermark
    /// stayed below `follow_until_offset`). Restart later or raise the bound.
    #[error("changelog did not reach offset {target_offset} within {requests} fetches (stopped at {reached_offset})")]
    FollowTimedOut { target_offset: u64, reached_offset: u64, requests: u32 },
    /// The leader broke the FetchLog protocol (wrong response kind, batches out of order).
    /// Do not retry.
    #[error("the leader broke the FetchLog protocol; do not retry: {0}")]
    Protocol(String),
}

impl BootstrapError {
    /// True when running the bootstrap again (after refreshing metadata) may succeed.
    pub fn is_restartable(&self) -> bool {
        match self {
            BootstrapError::Scan(error) => error.is_restartable(),
            BootstrapError::FetchLog(error) => {
                error.is_retriable() || error.code == ErrorCode::LogOffsetOutOfRange
            }
            BootstrapError::Transport(_)
            | BootstrapError::LogGap { .. }
            | BootstrapError::FollowTimedOut { .. } => true,
            BootstrapError::KeyNotExtracted { .. }
            | BootstrapError::DuplicateKey { .. }
            | BootstrapError::LimitedScan
            | BootstrapError::Protocol(_) => false,
        }
    }
}

/// Builds `bucket`'s rows at one offset: scans the bucket on `leader` into a map (keys come
/// from `key_of_value`, since ScanKv returns values only), then applies the changelog from
/// the scan's `log_offset` (`+I`/`+U` set, `-D` removes, `-U` is skipped) up to
/// `follow_until_offset`, or, if `None`, up to the high watermark the first FetchLog reports.
///
/// Every loop is bounded: the scan by the server's `call_seq_id` range, the follow by
/// `fetch_log_requests_max`.
#[allow(clippy::too_many_arguments)]
pub async fn bootstrap(
    rpc: Arc<dyn Rpc>,
    executor: Arc<dyn Executor>,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    leader: NodeId,
    bucket: TableBucket,
    options: BootstrapOptions,
    key_of_value: &(dyn Fn(&[u8]) -> Option<Vec<u8>> + Sync),
    follow_until_offset: Option<u64>,
) -> Result<Bootstrap, BootstrapError> {
    if options.scan.limit.is_some_and(|limit| limit > 0) {
        return Err(BootstrapError::LimitedScan);
    }
    let mut scanner = KvScanner::open(
        Arc::clone(&rpc),
        executor,
        Arc::clone(&clock),
        ledger,
        leader,
        bucket,
        options.scan,
    )
    .await?;
    let snapshot_log_offset = scanner.log_offset();
    let mut rows = BTreeMap::new();
    let mut value_index = 0u64;
    while let Some(values) = scanner.next_batch().await? {
        for value in values.iter() {
            let key = key_of_value(value).ok_or(BootstrapError::KeyNotExtracted {
                value_index,
                value_len_bytes: value.len(),
            })?;
            if rows.contains_key(&key) {
                return Err(BootstrapError::DuplicateKey { value_index, key_hex: hex(&key) });
            }
            rows.insert(key, value.to_vec());
            value_index += 1;
        }
    }
    drop(scanner);

    let mut follower = ChangelogFollower { next_offset: snapshot_log_offset, rows };
    let mut target_offset = follow_until_offset;
    let mut requests = 0u32;
    loop {
        if target_offset.is_some_and(|target| follower.next_offset >= target) {
            break;
        }
        if requests >= options.fetch_log_requests_max {
            return Err(BootstrapError::FollowTimedOut {
                target_offset: target_offset.unwrap_or(follower.next_offset),
                reached_offset: follower.next_offset,
                requests,
            });
        }
        requests += 1;
        let (batches, high_watermark) =
            fetch_log(rpc.as_ref(), leader, bucket, follower.next_offset, &options).await?;
        let target = *target_offset.get_or_insert(high_watermark);
        if follower.next_offset >= target {
            break;
        }
        let before = follower.next_offset;
        follower.apply(&batches, target)?;
        if follower.next_offset == before && high_watermark <= before {
            // Nothing new below the target yet: wait for the log to grow.
            clock.sleep(options.fetch_log_poll_interval_ms).await;
        } else if follower.next_offset == before {
            return Err(BootstrapError::Protocol(format!(
                "FetchLog from {before} returned nothing although the high watermark is {high_watermark}"
            )));
        }
    }
    let applied_until_offset = follower.next_offset;
    Ok(Bootstrap { rows: follower.rows, snapshot_log_offset, applied_until_offset })
}

/// The rows being brought forward, and the first offset not yet applied.
struct ChangelogFollower {
    next_offset: u64,
    rows: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl ChangelogFollower {
    /// Applies the records of `batches` at or above `next_offset` and below `target_offset`.
    /// A batch straddling `next_offset` (the snapshot's offset falls inside it) is applied
    /// from `next_offset` on.
    fn apply(&mut self, batches: &[LogBatch], target_offset: u64) -> Result<(), BootstrapError> {
        for batch in batches {
            if self.next_offset >= target_offset {
                return Ok(());
            }
            let end_offset = checked_end_offset(batch)?;
            if end_offset <= self.next_offset {
                continue;
            }
            if batch.base_offset > self.next_offset {
                return Err(BootstrapError::LogGap {
                    needed_offset: self.next_offset,
                    first_available_offset: batch.base_offset,
                });
            }
            for record in &batch.records {
                if record.offset < self.next_offset {
                    continue;
                }
                if record.offset >= target_offset {
                    break;
                }
                match record.change_type {
                    ChangeType::Insert | ChangeType::UpdateAfter | ChangeType::AppendOnly => {
                        self.rows.insert(record.key.clone(), record.value.clone());
                    }
                    ChangeType::Delete => {
                        self.rows.remove(&record.key);
                    }
                    // The `+U` that follows carries the new value.
                    ChangeType::UpdateBefore => {}
                }
            }
            self.next_offset = end_offset.min(target_offset);
        }
        Ok(())
    }
}

/// One FetchLog, resent on timeout (a read is safe to repeat).
async fn fetch_log(
    rpc: &dyn Rpc,
    leader: NodeId,
    bucket: TableBucket,
    from_offset: u64,
    options: &BootstrapOptions,
) -> Result<(Vec<LogBatch>, u64), BootstrapError> {
    let request = Request::FetchLog { bucket, from_offset, max_bytes: options.fetch_log_bytes_max };
    let mut resends_done = 0u32;
    let response = loop {
        match rpc.call(leader, request.clone(), options.scan.request_timeout_ms).await {
            Err(RpcError::Timeout(_)) if resends_done < options.scan.transport_retries_max => {
                resends_done += 1;
            }
            outcome => break outcome.map_err(BootstrapError::Transport)?,
        }
    };
    match response {
        Response::FetchLog { batches, high_watermark, .. } => {
            for pair in batches.windows(2) {
                if checked_end_offset(&pair[0])? > pair[1].base_offset {
                    return Err(BootstrapError::Protocol(format!(
                        "FetchLog from {from_offset} returned overlapping or unordered batches"
                    )));
                }
            }
            Ok((batches, high_watermark))
        }
        Response::Error(error) => Err(BootstrapError::FetchLog(error)),
        other => Err(BootstrapError::Protocol(format!(
            "expected a FetchLog response, got {}",
            other.kind()
        ))),
    }
}

/// The batch's end offset, refusing a batch that claims offsets past `u64::MAX` (bytes from
/// the network must not panic the client).
fn checked_end_offset(batch: &LogBatch) -> Result<u64, BootstrapError> {
    batch.base_offset.checked_add(u64::from(batch.offset_count)).ok_or_else(|| {
        BootstrapError::Protocol(format!(
            "batch at {} overflows the offset range",
            batch.base_offset
        ))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::log::LogRecord;
    use crate::scan::kv_scanner::testing::{
        ScriptedLeader, ScriptedLeaderState, TestRuntime, LEADER,
    };

    /// Values are `key=payload`; keys never contain `=`.
    fn key_of_value(value: &[u8]) -> Option<Vec<u8>> {
        let separator = value.iter().position(|byte| *byte == b'=')?;
        Some(value[..separator].to_vec())
    }

    fn value(key: &str, payload: &str) -> Vec<u8> {
        format!("{key}={payload}").into_bytes()
    }

    /// One put to the bucket: a value or a delete.
    type Write = (String, Option<String>);

    /// Turns batches of writes into a changelog the way the leader does (`+I` for a new key,
    /// `-U`/`+U` for an update, `-D` for a delete, an empty batch still takes one offset).
    fn changelog(batches_of_writes: &[Vec<Write>]) -> Vec<LogBatch> {
        let mut current: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut next_offset = 0u64;
        let mut log = Vec::new();
        for writes in batches_of_writes {
            let base_offset = next_offset;
            let mut records = Vec::new();
            let mut push = |change_type, key: &[u8], value: Vec<u8>| {
                records.push(LogRecord {
                    offset: base_offset + records.len() as u64,
                    change_type,
                    key: key.to_vec(),
                    value,
                });
            };
            for (key, payload) in writes {
                let key_bytes = key.as_bytes().to_vec();
                match (current.get(&key_bytes).cloned(), payload) {
                    (None, Some(payload)) => {
                        push(ChangeType::Insert, &key_bytes, value(key, payload));
                        current.insert(key_bytes, value(key, payload));
                    }
                    (Some(old), Some(payload)) => {
                        push(ChangeType::UpdateBefore, &key_bytes, old);
                        push(ChangeType::UpdateAfter, &key_bytes, value(key, payload));
                        current.insert(key_bytes, value(key, payload));
                    }
                    (Some(old), None) => {
                        push(ChangeType::Delete, &key_bytes, old);
                        current.remove(&key_bytes);
                    }
                    (None, None) => {}
                }
            }
            let offset_count = records.len().max(1) as u32;
            next_offset += u64::from(offset_count);
            log.push(LogBatch {
                base_offset,
                leader_epoch: 1,
                offset_count,
                commit_timestamp_ms: 0,
                writer: None,
                records,
            });
        }
        log
    }

    /// The model: the bucket's rows after every record below `offset`.
    fn state_at(log: &[LogBatch], offset: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut rows = BTreeMap::new();
        for record in log.iter().flat_map(|batch| &batch.records) {
            if record.offset >= offset {
                break;
            }
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
        rows
    }

    /// A leader whose snapshot is the model's state at `snapshot_offset`.
    fn leader_at(
        log: Vec<LogBatch>,
        snapshot_offset: u64,
        log_batches_per_fetch: usize,
    ) -> ScriptedLeader {
        ScriptedLeader::with(ScriptedLeaderState {
            values: state_at(&log, snapshot_offset).into_values().collect(),
            values_per_batch: 2,
            snapshot_log_offset: snapshot_offset as i64,
            log,
            log_batches_per_fetch,
            ..ScriptedLeaderState::default()
        })
    }

    fn run_bootstrap(
        runtime: &mut TestRuntime,
        leader: &ScriptedLeader,
        ledger: &Ledger,
        options: BootstrapOptions,
        follow_until_offset: Option<u64>,
    ) -> Result<Bootstrap, BootstrapError> {
        let running = {
            let rpc = leader.rpc();
            let executor = runtime.executor();
            let clock = runtime.clock();
            let ledger = ledger.clone();
            async move {
                bootstrap(
                    rpc,
                    executor,
                    clock,
                    ledger,
                    LEADER,
                    TableBucket::new(1, 0),
                    options,
                    &key_of_value,
                    follow_until_offset,
                )
                .await
            }
        };
        let outcome = runtime.run(running);
        runtime.settle_with_time();
        outcome
    }

    fn writes(items: &[(&str, Option<&str>)]) -> Vec<Write> {
        items.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect()
    }

    /// Offsets: 0..3 `+I a, +I b, +I c`; 3..6 `-U a, +U a, -D b`; 6..7 empty;
    /// 7..10 `+I d, -U c, +U c`.
    fn sample_log() -> Vec<LogBatch> {
        changelog(&[
            writes(&[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))]),
            writes(&[("a", Some("2")), ("b", None)]),
            writes(&[("zz", None)]),
            writes(&[("d", Some("1")), ("c", Some("2"))]),
        ])
    }

    #[test]
    fn the_changelog_is_applied_from_inside_a_straddling_batch_to_the_high_watermark() {
        let log = sample_log();
        assert_eq!(log.last().map(LogBatch::end_offset), Some(10));
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        // The snapshot at 4 sits between `-U a` (3) and `+U a` (4): it still holds a=1.
        let leader = leader_at(log.clone(), 4, 1);
        let outcome =
            run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, None)
                .expect("bootstraps");
        assert_eq!(outcome.snapshot_log_offset, 4);
        assert_eq!(outcome.applied_until_offset, 10);
        let expected: BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"a".to_vec(), value("a", "2")),
            (b"c".to_vec(), value("c", "2")),
            (b"d".to_vec(), value("d", "1")),
        ]
        .into_iter()
        .collect();
        assert_eq!(outcome.rows, expected);
        assert_eq!(outcome.rows, state_at(&log, 10));
        let fetches: Vec<u64> = leader
            .state()
            .requests
            .iter()
            .filter_map(|request| match request {
                Request::FetchLog { from_offset, .. } => Some(*from_offset),
                _ => None,
            })
            .collect();
        assert_eq!(fetches, vec![4, 6, 7], "one batch per fetch, from the first unapplied offset");
        assert!(ledger.live().is_empty(), "{:?}", ledger.live());
    }

    #[test]
    fn following_stops_at_the_requested_offset_inside_a_batch() {
        let log = sample_log();
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_at(log.clone(), 3, 10);
        let outcome =
            run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, Some(9))
                .expect("bootstraps");
        assert_eq!(outcome.applied_until_offset, 9);
        // Offset 8 is `-U c`: c still holds its old value at 9.
        assert_eq!(outcome.rows, state_at(&log, 9));
        assert_eq!(outcome.rows.get(b"c".as_slice()), Some(&value("c", "1")));
    }

    #[test]
    fn a_snapshot_past_the_target_is_returned_as_is() {
        let log = sample_log();
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_at(log.clone(), 7, 10);
        let outcome =
            run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, Some(5))
                .expect("bootstraps");
        assert_eq!(outcome.applied_until_offset, 7);
        assert_eq!(outcome.rows, state_at(&log, 7));
        assert!(leader.state().requests.iter().all(|r| !matches!(r, Request::FetchLog { .. })));
    }

    #[test]
    fn an_empty_bucket_is_bootstrapped_from_the_log_alone() {
        let log = sample_log();
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_at(log.clone(), 0, 2);
        let outcome =
            run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, None)
                .expect("bootstraps");
        assert_eq!(outcome.snapshot_log_offset, 0);
        assert_eq!(outcome.rows, state_at(&log, 10));
    }

    #[test]
    fn a_value_without_a_key_or_a_repeated_key_fails_and_closes_the_scan() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = ScriptedLeader::with(ScriptedLeaderState {
            values: vec![
                value("a", "1"),
                b"no separator".to_vec(),
                value("c", "1"),
                value("d", "1"),
                value("e", "1"),
            ],
            values_per_batch: 2,
            ..ScriptedLeaderState::default()
        });
        let outcome =
            run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, None);
        assert_eq!(
            outcome,
            Err(BootstrapError::KeyNotExtracted { value_index: 1, value_len_bytes: 12 })
        );
        assert!(!outcome.unwrap_err().is_restartable());
        assert_eq!(leader.state().close_count(), 1, "the abandoned scan is closed");
        assert!(!leader.state().session_open());

        let leader = ScriptedLeader::with(ScriptedLeaderState {
            values: vec![value("a", "1"), value("a", "2")],
            values_per_batch: 2,
            ..ScriptedLeaderState::default()
        });
        let outcome =
            run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, None);
        assert_eq!(
            outcome,
            Err(BootstrapError::DuplicateKey { value_index: 1, key_hex: "61".to_string() })
        );
        assert!(ledger.live().is_empty(), "{:?}", ledger.live());
    }

    #[test]
    fn a_log_that_no_longer_holds_the_snapshot_offset_is_a_gap() {
        let log = sample_log();
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_at(log.clone(), 4, 10);
        // Retention removed the batches below 7.
        leader.state().log.retain(|batch| batch.base_offset >= 7);
        let outcome =
            run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, None);
        assert_eq!(
            outcome,
            Err(BootstrapError::LogGap { needed_offset: 4, first_available_offset: 7 })
        );
        assert!(outcome.unwrap_err().is_restartable());
    }

    #[test]
    fn a_target_beyond_the_high_watermark_is_polled_for_then_given_up() {
        let log = sample_log();
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_at(log, 4, 10);
        let options = BootstrapOptions { fetch_log_requests_max: 5, ..BootstrapOptions::DEFAULT };
        let outcome = run_bootstrap(&mut runtime, &leader, &ledger, options, Some(12));
        assert_eq!(
            outcome,
            Err(BootstrapError::FollowTimedOut {
                target_offset: 12,
                reached_offset: 10,
                requests: 5
            })
        );
        // The first fetch applied everything; the four after it found nothing and slept.
        assert_eq!(runtime.clock.now_mono_ms(), 4 * 100);
    }

    #[test]
    fn fetch_log_errors_are_reported_with_their_code() {
        let mut runtime = TestRuntime::new();
        let ledger = Ledger::new();
        let leader = leader_at(Vec::new(), 0, 1);
        let options = BootstrapOptions {
            scan: KvScannerOptions { limit: Some(10), ..KvScannerOptions::DEFAULT },
            ..BootstrapOptions::DEFAULT
        };
        let outcome = run_bootstrap(&mut runtime, &leader, &ledger, options, None);
        assert_eq!(outcome, Err(BootstrapError::LimitedScan));
        let not_leader =
            BootstrapError::FetchLog(ApiError::new(ErrorCode::NotLeaderOrFollower, ""));
        assert!(not_leader.is_restartable());
        // Retention overtook the scan: a fresh snapshot starts within the retained log.
        let overtaken = BootstrapError::FetchLog(ApiError::new(
            ErrorCode::LogOffsetOutOfRange,
            "offset 16 is below the local log start offset 17 and in no tiered segment",
        ));
        assert!(overtaken.is_restartable());
        let corrupt = BootstrapError::FetchLog(ApiError::new(ErrorCode::CorruptMessage, ""));
        assert!(!corrupt.is_restartable());
    }

    fn arbitrary_batches() -> impl Strategy<Value = Vec<Vec<Write>>> {
        let write = (0u8..6, proptest::option::weighted(0.7, 0u8..4))
            .prop_map(|(key, payload)| (format!("k{key}"), payload.map(|p| format!("v{p}"))));
        proptest::collection::vec(proptest::collection::vec(write, 0..5), 0..12)
    }

    proptest! {
        #[test]
        fn bootstrap_equals_the_model_at_every_snapshot_and_target(
            batches in arbitrary_batches(),
            snapshot_pick in any::<u16>(),
            target_pick in proptest::option::of(any::<u16>()),
            per_fetch in 1usize..4,
        ) {
            let log = changelog(&batches);
            let end_offset = log.last().map_or(0, LogBatch::end_offset);
            let snapshot_offset = u64::from(snapshot_pick) % (end_offset + 1);
            let target = target_pick.map(|pick| u64::from(pick) % (end_offset + 1));
            let mut runtime = TestRuntime::new();
            let ledger = Ledger::new();
            let leader = leader_at(log.clone(), snapshot_offset, per_fetch);
            let outcome = run_bootstrap(&mut runtime, &leader, &ledger, BootstrapOptions::DEFAULT, target)
                .expect("bootstraps");
            let expected_until = target.unwrap_or(end_offset).max(snapshot_offset);
            prop_assert_eq!(outcome.applied_until_offset, expected_until);
            prop_assert_eq!(outcome.rows, state_at(&log, expected_until));
            prop_assert!(ledger.live().is_empty());
        }
    }
}
