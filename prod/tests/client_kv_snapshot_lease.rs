//! The Rust client's KV snapshot lease against a served node: its renewal keeps a short lease
//! alive long past its duration, a handle dropped without `close` lets the lease expire at the
//! coordinator's next check, `close` drops it at once, and a table that does not exist is
//! refused with Fluss's code 21, not retried.

// Tests may read wall time and own a tokio runtime.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use kvtablet_core::lease::LeaseClientError;
use kvtablet_core::{ErrorCode, TableBucket};
use kvtablet_prod::client::{Connection, ConnectionConfig, KvSnapshotLease, LeaseRetry, WireRpc};
use kvtablet_prod::config::ServeConfig;
use kvtablet_prod::served_node::ServedNode;

const LEASE_DURATION: Duration = Duration::from_millis(600);
const CHECK_INTERVAL_MS: u64 = 100;
const WAIT_MAX: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

async fn start(dir: &Path) -> (ServedNode, Connection) {
    let mut config = ServeConfig::default();
    config.data_dir = dir.to_path_buf();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.metrics_listen = None;
    config.lease_expiration_check_interval_ms = CHECK_INTERVAL_MS;
    let served = ServedNode::start_with(&config, tokio::runtime::Handle::current())
        .await
        .expect("the node starts");
    let connection = Connection::connect(&served.addr().to_string(), ConnectionConfig::DEFAULT)
        .await
        .expect("the client connects");
    (served, connection)
}

fn lease_count(served: &ServedNode) -> usize {
    let handle = served.node().handle().expect("running");
    handle.lease_gauges().expect("the coordinator keeps leases").lease_count
}

async fn wait_for_lease_count(served: &ServedNode, expected: usize) {
    let deadline = Instant::now() + WAIT_MAX;
    while lease_count(served) != expected {
        assert!(Instant::now() < deadline, "lease count not {expected} within {WAIT_MAX:?}");
        tokio::time::sleep(POLL).await;
    }
}

#[test]
fn a_renewed_lease_outlives_its_duration_and_goes_when_dropped_or_closed() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    runtime.block_on(async {
        let (served, connection) = start(dir.path()).await;
        let table = support::create_table(&connection, "leased", 1).await;
        let addr = served.addr().to_string();
        let connection = std::sync::Arc::new(connection);
        let rpc = || WireRpc::new(addr.clone(), std::sync::Arc::clone(&connection));
        // A snapshot that was never taken: answered unavailable, the lease itself is held.
        let never_taken = (TableBucket::new(table.table_id, 0), 1_000_000);

        let mut renewed =
            KvSnapshotLease::new(rpc(), "renewed", LEASE_DURATION, LeaseRetry::DEFAULT);
        let unavailable = renewed.acquire(vec![never_taken]).await.expect("acquired");
        assert_eq!(unavailable, vec![never_taken]);
        assert_eq!(lease_count(&served), 1);
        // Four durations later the renewals have kept it.
        tokio::time::sleep(LEASE_DURATION * 4).await;
        assert_eq!(lease_count(&served), 1, "renewed past its duration");

        // Dropped without close: no more renewals, so it expires at a check after its end.
        drop(renewed);
        wait_for_lease_count(&served, 0).await;

        let mut closed =
            KvSnapshotLease::new(rpc(), "closed", LEASE_DURATION * 100, LeaseRetry::DEFAULT);
        closed.acquire(vec![never_taken]).await.expect("acquired");
        assert_eq!(lease_count(&served), 1);
        closed.close().await.expect("dropped");
        assert_eq!(lease_count(&served), 0, "close drops the lease at once");

        // A refusal that asking again cannot change is answered at once.
        let mut missing =
            KvSnapshotLease::new(rpc(), "missing", LEASE_DURATION, LeaseRetry::DEFAULT);
        let error = missing
            .acquire(vec![(TableBucket::new(table.table_id + 1_000, 0), 1)])
            .await
            .expect_err("refused");
        match &error {
            LeaseClientError::Server(api) => assert_eq!(api.code, ErrorCode::UnknownTableOrBucket),
            other => panic!("expected the server's refusal, got {other:?}"),
        }
        assert!(!error.is_retriable(), "so the handle does not ask again");
        drop(served);
    });
}
