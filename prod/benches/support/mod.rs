//! What the node benchmarks share: one bucket loaded through the node's PutKv path with
//! incompressible values, and a wait for its flush. Every wait is bounded.

// prod may read wall time; measuring it is a benchmark's purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, dead_code)]

use std::time::{Duration, Instant};

use kvtablet_core::error::ErrorCode;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::TableBucket;
use kvtablet_prod::node::{Node, NodeHandle};

pub const BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };
pub const VALUE_BYTES: usize = 1_000;
pub const WRITES_PER_PUT: usize = 1_000;
pub const WAIT_MAX: Duration = Duration::from_secs(120);
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);
pub const MIB: f64 = 1024.0 * 1024.0;

pub fn key(index: usize) -> Vec<u8> {
    format!("key-{index:08}").into_bytes()
}

/// Schema id 1 (little-endian), then pseudo-random bytes: incompressible, so that RocksDB's
/// compression does not shrink what is uploaded.
pub fn value(index: usize, round: usize) -> Vec<u8> {
    let mut state = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (round as u64 + 1);
    let mut value = Vec::with_capacity(VALUE_BYTES + 2);
    value.extend_from_slice(&[1, 0]);
    while value.len() < VALUE_BYTES + 2 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        value.extend_from_slice(&state.to_le_bytes());
    }
    value.truncate(VALUE_BYTES + 2);
    value
}

pub async fn put(node: &Node, indexes: impl Iterator<Item = usize>, round: usize) {
    let indexes: Vec<usize> = indexes.collect();
    for batch in indexes.chunks(WRITES_PER_PUT) {
        let writes: Vec<KvWrite> = batch
            .iter()
            .map(|&index| KvWrite { key: key(index), value: Some(value(index, round)) })
            .collect();
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let request = Request::PutKv {
                bucket: BUCKET,
                writes: writes.clone(),
                writer: None,
                target_columns: None,
            };
            match node.request(request).await.expect("answered") {
                Response::PutKv { .. } => break,
                Response::Error(error)
                    if error.code == ErrorCode::StorageBackpressure
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                other => panic!("put refused: {other:?}"),
            }
        }
    }
}

pub async fn wait_for_flush(handle: &NodeHandle) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let kv = handle.leader_kv(BUCKET).expect("the bucket is led");
        if kv.flushed_log_offset() == kv.log().log_end_offset() {
            return;
        }
        assert!(Instant::now() < deadline, "the flush did not catch up");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
