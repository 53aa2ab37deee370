//! A pipelined idempotent writer on one bucket, as the official clients write
//! (`writer.max-inflight-requests-per-bucket`, 5 in pyfluss): up to
//! [`IN_FLIGHT_BATCHES_MAX`] batches with consecutive sequences in flight at once, each resent
//! with the same writer id and sequence until it is acknowledged.
//!
//! What the server guarantees (core's writer state keeps each writer's last 5 batches): a
//! batch whose predecessor is appended is appended; a resend of any of the last 5 is answered
//! with its original offsets; a batch whose predecessor is not appended yet (lost, delayed or
//! reordered by the network) is `OUT_OF_ORDER_SEQUENCE`. So a correct client, like Kafka's
//! and Fluss's, treats `OUT_OF_ORDER_SEQUENCE` on a batch whose predecessor is still
//! unacknowledged as "resend after the earlier one": it waits for the predecessor and resends.
//! The oracle: `OUT_OF_ORDER_SEQUENCE` on a batch whose predecessor had been acknowledged
//! before the batch was sent is a violation (the server forgot or reordered the writer).

use std::sync::{Arc, Mutex, MutexGuard};

use kvtablet_core::env::{Clock, Rpc, RpcError};
use kvtablet_core::log::WriterBatch;
use kvtablet_core::message::{KvWrite, NodeId, Request, Response};
use kvtablet_core::notify::Notify;
use kvtablet_core::{ErrorCode, TableBucket};

use crate::checker::Checker;
use crate::client::COORDINATOR_NODE;

/// Batches one writer has in flight per bucket at most.
pub const IN_FLIGHT_BATCHES_MAX: usize = 5;
/// Sends of one batch that end in no answer or a leadership error before it gives up.
const ATTEMPTS_MAX: u32 = 6;
/// Resends after a legitimate `OUT_OF_ORDER_SEQUENCE` (its predecessor was not yet
/// acknowledged) before the batch gives up.
const OUT_OF_ORDER_RESENDS_MAX: u32 = 20;

/// One batch of the pipeline: its sequence and writes.
#[derive(Debug, Clone)]
pub struct PipelineBatch {
    pub batch_sequence: i32,
    pub writes: Vec<KvWrite>,
    /// A partial update's target columns (`None`: whole rows).
    pub target_columns: Option<Vec<u32>>,
    /// Sent as two identical copies at once the first time (a client resending before the
    /// first copy's answer came back).
    pub sent_twice: bool,
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFate {
    InFlight,
    Acked {
        base_offset: u64,
        end_offset: u64,
    },
    /// The client stopped resending it; it may or may not have been appended.
    GaveUp,
}

/// The batches a writer sends together on one bucket, each driven by its own future.
pub struct Burst {
    pub node_id: NodeId,
    pub rpc: Arc<dyn Rpc>,
    pub clock: Arc<dyn Clock>,
    pub checker: Arc<Checker>,
    pub bucket: TableBucket,
    pub writer_id: i64,
    pub request_timeout_ms: u64,
    leader: Mutex<Option<NodeId>>,
    fates: Mutex<Vec<BatchFate>>,
    /// Signalled whenever a batch settles, for the batches waiting on their predecessor.
    settled: Notify,
}

impl Burst {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_id: NodeId,
        rpc: Arc<dyn Rpc>,
        clock: Arc<dyn Clock>,
        checker: Arc<Checker>,
        bucket: TableBucket,
        writer_id: i64,
        request_timeout_ms: u64,
        leader: Option<NodeId>,
    ) -> Burst {
        Burst {
            node_id,
            rpc,
            clock,
            checker,
            bucket,
            writer_id,
            request_timeout_ms,
            leader: Mutex::new(leader),
            fates: Mutex::new(Vec::new()),
            settled: Notify::new(),
        }
    }

    /// Sends every batch, pipelined, and drives each until it is acknowledged or given up.
    /// The batch before the first one has been acknowledged (or this writer is new).
    pub async fn run(&self, batches: &[PipelineBatch]) -> Vec<BatchFate> {
        assert!(batches.len() <= IN_FLIGHT_BATCHES_MAX);
        *lock(&self.fates) = vec![BatchFate::InFlight; batches.len()];
        for _ in batches {
            self.checker.progress.note_put_sent();
        }
        let drives = batches.iter().enumerate().map(|(index, batch)| self.drive(index, batch));
        futures::future::join_all(drives).await;
        lock(&self.fates).clone()
    }

    /// The leader this burst last learned of.
    pub fn leader_known(&self) -> Option<NodeId> {
        *lock(&self.leader)
    }

    fn predecessor(&self, index: usize) -> BatchFate {
        match index.checked_sub(1) {
            // The previous burst was acknowledged in full, or the writer is new.
            None => BatchFate::Acked { base_offset: 0, end_offset: 0 },
            Some(previous) => lock(&self.fates)[previous],
        }
    }

    fn settle(&self, index: usize, fate: BatchFate, reason: &str) {
        lock(&self.fates)[index] = fate;
        self.settled.notify();
        if fate == BatchFate::GaveUp {
            self.checker.progress.give_up("put", reason);
            self.checker.note(
                self.node_id,
                "put-give-up",
                format!(
                    "{} writer {:#x} batch {index}: {reason}",
                    self.bucket.dir_name_display(),
                    self.writer_id
                ),
            );
        }
    }

    async fn drive(&self, index: usize, batch: &PipelineBatch) {
        let writer =
            WriterBatch { writer_id: self.writer_id, batch_sequence: batch.batch_sequence };
        let request = Request::PutKv {
            bucket: self.bucket,
            writes: batch.writes.clone(),
            writer: Some(writer),
            target_columns: batch.target_columns.clone(),
        };
        let mut attempts = 0u32;
        let mut out_of_order_resends = 0u32;
        let mut backoff_ms = 10;
        let mut reason = "none".to_string();
        loop {
            if self.predecessor(index) == BatchFate::GaveUp {
                // Its sequence can never follow now; the writer is renewed after the burst.
                return self.settle(index, BatchFate::GaveUp, "earlier-batch-gave-up");
            }
            if attempts >= ATTEMPTS_MAX {
                return self.settle(index, BatchFate::GaveUp, &reason);
            }
            attempts += 1;
            let Some(leader) = self.leader().await else {
                reason = "no-leader".to_string();
                self.clock.sleep(backoff_ms).await;
                backoff_ms *= 2;
                continue;
            };
            let predecessor_acked = matches!(self.predecessor(index), BatchFate::Acked { .. });
            let twice = batch.sent_twice && attempts == 1;
            let sent_ms = self.clock.now_mono_ms();
            let answer = self.send(leader, &request, twice).await;
            if let Ok(response) = &answer {
                let error = match response {
                    Response::Error(error) => Some(error),
                    _ => None,
                };
                self.checker.check_partition_answer(
                    &format!("client {} put on {}", self.node_id, self.bucket),
                    self.bucket,
                    sent_ms,
                    error,
                );
            }
            match answer {
                Ok(Response::PutKv { base_offset, end_offset, duplicate }) => {
                    if duplicate {
                        self.checker.note(
                            self.node_id,
                            "duplicate",
                            format!(
                                "{} seq {} at {base_offset}",
                                self.bucket.dir_name_display(),
                                batch.batch_sequence
                            ),
                        );
                    }
                    self.checker.on_put_ack(
                        self.bucket,
                        &batch.writes,
                        batch.target_columns.as_deref(),
                        base_offset,
                        end_offset,
                    );
                    return self.settle(index, BatchFate::Acked { base_offset, end_offset }, "");
                }
                Ok(Response::Error(error)) if error.code == ErrorCode::OutOfOrderSequence => {
                    if predecessor_acked {
                        self.checker.on_error(
                            &format!(
                                "client {} put of batch {} on {} (its predecessor acknowledged before it was sent)",
                                self.node_id, batch.batch_sequence, self.bucket
                            ),
                            &error,
                        );
                        return self.settle(index, BatchFate::GaveUp, "OutOfOrderSequence");
                    }
                    // An earlier batch is still in flight: resend after it.
                    self.checker.note(
                        self.node_id,
                        "put-out-of-order",
                        format!(
                            "{} seq {} waits for its predecessor",
                            self.bucket.dir_name_display(),
                            batch.batch_sequence
                        ),
                    );
                    attempts -= 1;
                    out_of_order_resends += 1;
                    if out_of_order_resends > OUT_OF_ORDER_RESENDS_MAX {
                        return self.settle(index, BatchFate::GaveUp, "out-of-order-resends");
                    }
                    self.wait_for_predecessor(index).await;
                }
                // The leader's pre-write buffer is full: nothing was written; the same batch is
                // resent to the same leader after a short delay, as pyfluss throttles.
                Ok(Response::Error(error)) if error.code == ErrorCode::StorageBackpressure => {
                    self.checker.on_error(
                        &format!("client {} put on {}", self.node_id, self.bucket),
                        &error,
                    );
                    self.checker.note(
                        self.node_id,
                        "put-backpressure",
                        format!(
                            "{} seq {} resent after {backoff_ms} ms",
                            self.bucket.dir_name_display(),
                            batch.batch_sequence
                        ),
                    );
                    reason = format!("{:?}", error.code);
                    self.clock.sleep(backoff_ms).await;
                    backoff_ms *= 2;
                }
                // A bucket restoring its engine is not ready: resent as to a moved leader.
                Ok(Response::Error(error))
                    if matches!(
                        error.code,
                        ErrorCode::NotLeaderOrFollower | ErrorCode::LeaderNotAvailable
                    ) =>
                {
                    self.checker.on_error(
                        &format!("client {} put on {}", self.node_id, self.bucket),
                        &error,
                    );
                    reason = format!("{:?}", error.code);
                    *lock(&self.leader) = None;
                    self.clock.sleep(backoff_ms).await;
                    backoff_ms *= 2;
                }
                Ok(Response::Error(error)) => {
                    self.checker.on_error(
                        &format!("client {} put on {}", self.node_id, self.bucket),
                        &error,
                    );
                    return self.settle(index, BatchFate::GaveUp, &format!("{:?}", error.code));
                }
                Ok(other) => {
                    self.checker.violation(format!("PutKv answered with {other:?}"));
                    return self.settle(index, BatchFate::GaveUp, "bad-response");
                }
                Err(error) => {
                    reason = match error {
                        RpcError::Timeout(_) => "timeout",
                        RpcError::Unreachable(_) => "unreachable",
                    }
                    .to_string();
                    *lock(&self.leader) = None;
                    self.clock.sleep(backoff_ms).await;
                    backoff_ms *= 2;
                }
            }
        }
    }

    /// One send, or two identical copies at once. Two acknowledgements of one batch must carry
    /// the same offsets; an acknowledgement wins over an error, an answer over a timeout.
    async fn send(
        &self,
        leader: NodeId,
        request: &Request,
        twice: bool,
    ) -> Result<Response, RpcError> {
        let timeout_ms = self.request_timeout_ms;
        if !twice {
            return self.rpc.call(leader, request.clone(), timeout_ms).await;
        }
        let (first, second) = futures::join!(
            self.rpc.call(leader, request.clone(), timeout_ms),
            self.rpc.call(leader, request.clone(), timeout_ms)
        );
        if let (
            Ok(Response::PutKv { base_offset: a, .. }),
            Ok(Response::PutKv { base_offset: b, .. }),
        ) = (&first, &second)
        {
            if a != b {
                self.checker.violation(format!(
                    "two copies of one writer batch on {} acknowledged at {a} and {b}",
                    self.bucket
                ));
            }
        }
        let rank = |answer: &Result<Response, RpcError>| match answer {
            Ok(Response::PutKv { .. }) => 0,
            Ok(_) => 1,
            Err(_) => 2,
        };
        if rank(&second) < rank(&first) {
            second
        } else {
            first
        }
    }

    async fn wait_for_predecessor(&self, index: usize) {
        loop {
            let settled = self.settled.notified();
            if self.predecessor(index) != BatchFate::InFlight {
                return;
            }
            settled.await;
        }
    }

    async fn leader(&self) -> Option<NodeId> {
        if let Some(leader) = *lock(&self.leader) {
            return Some(leader);
        }
        let Ok(Response::Metadata { leaders }) =
            self.rpc.call(COORDINATOR_NODE, Request::Metadata, self.request_timeout_ms).await
        else {
            return None;
        };
        let leader = leaders.iter().find(|l| l.bucket == self.bucket).and_then(|l| l.leader);
        *lock(&self.leader) = leader;
        leader
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
