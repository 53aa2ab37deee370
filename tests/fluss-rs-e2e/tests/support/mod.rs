//! What the end-to-end tests share: a `kvtablet serve` process on a free port of 127.0.0.1 in a
//! temporary directory (killed when dropped), a connection to it, bounded client calls, the
//! acknowledgement of writes and the reading of a changelog.
//!
//! Every wait is bounded (`STEP`, `START_WAIT`, `POLLS_MAX` polls of `POLL`).

// Each test binary compiles this module and uses a part of it. Like prod, the tests run on the
// real clock, threads and tokio (the root clippy.toml's lists are for core and sim).
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fluss::client::{FlussAdmin, FlussConnection, LogScanner, UpsertWriter, WriteResultFuture};
use fluss::config::Config;
use fluss::metadata::{DataTypes, KvSnapshot, Schema, TableDescriptor, TablePath};
use fluss::record::ChangeType;
use fluss::row::ColumnarRow;
use fluss::rpc::FlussError;

/// The longest any single client call may take.
pub const STEP: Duration = Duration::from_secs(30);
/// Polls of the changelog before the test gives up on records it expects.
pub const POLLS_MAX: usize = 60;
/// How long one poll of the changelog waits for records.
pub const POLL: Duration = Duration::from_millis(500);
/// How long the node may take to accept connections.
pub const START_WAIT: Duration = Duration::from_secs(60);

/// A `kvtablet serve` process, killed when dropped.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
}

impl Node {
    pub fn start(data_dir: &Path) -> Node {
        Node::start_with(data_dir, &[])
    }

    /// A node started with `-D KEY=VALUE` for each of `settings`.
    pub fn start_with(data_dir: &Path, settings: &[&str]) -> Node {
        let binary = std::env::var("KVTABLET_BIN").unwrap_or_else(|_| {
            panic!("KVTABLET_BIN must name the kvtablet binary (scripts/test sets it)")
        });
        // A free port: bound, read, released, then given to the node.
        let addr = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port on 127.0.0.1");
        let child = Command::new(&binary)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg("off")
            .arg("--data-dir")
            .arg(data_dir)
            .args(settings.iter().flat_map(|setting| ["-D", setting]))
            .stdout(Stdio::null())
            .stderr(node_log(addr))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let mut node = Node { child, addr };
        let deadline = Instant::now() + START_WAIT;
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("kvtablet serve exited before it listened: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "kvtablet serve did not listen within {START_WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }
}

/// Where the node's log goes: `$KVTABLET_E2E_NODE_LOG_DIR/kvtablet-PORT.log` when that is set,
/// else nowhere.
fn node_log(addr: SocketAddr) -> Stdio {
    let Some(dir) = std::env::var_os("KVTABLET_E2E_NODE_LOG_DIR") else {
        return Stdio::null();
    };
    let path = Path::new(&dir).join(format!("kvtablet-{}.log", addr.port()));
    let file = std::fs::File::create(&path)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
    Stdio::from(file)
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The runtime a test drives the client on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A new client connection to `node`.
pub async fn connect(node: &Node) -> FlussConnection {
    let config = Config { bootstrap_servers: node.addr.to_string(), ..Config::default() };
    bounded("connect", FlussConnection::new(config)).await
}

/// The value of `call`, which must succeed within `STEP`.
pub async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = fluss::error::Result<T>>,
) -> T {
    match tokio::time::timeout(STEP, call).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: {error}"),
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

/// The error of `call`, which must fail within `STEP`.
pub async fn refused<T>(
    what: &str,
    call: impl std::future::Future<Output = fluss::error::Result<T>>,
) -> fluss::error::Error {
    match tokio::time::timeout(STEP, call).await {
        Ok(Ok(_)) => panic!("{what}: succeeded, a refusal was expected"),
        Ok(Err(error)) => error,
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

/// Asserts that `error` is the server's (or the client's protocol-level) `expected`.
pub fn assert_api_error(what: &str, error: &fluss::error::Error, expected: FlussError) {
    assert_eq!(
        error.api_error(),
        Some(expected),
        "{what}: expected {expected:?} (code {}), got {error}",
        expected.code()
    );
}

/// Waits for the acknowledgement of every write in `acks` (queued on `writer`), each of which
/// must succeed.
pub async fn acknowledged(writer: &UpsertWriter, acks: Vec<WriteResultFuture>) {
    bounded("flush", writer.flush()).await;
    for (n, ack) in acks.into_iter().enumerate() {
        bounded(&format!("acknowledgement of write {n}"), ack).await;
    }
}

/// One changelog record as the test reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<R> {
    pub offset: i64,
    pub change: ChangeType,
    pub row: R,
}

/// The changelog `scanner` is subscribed to, by `(partition id, bucket)`, each bucket's records
/// in the order read: polled until `expected` records arrived (at most `POLLS_MAX` polls), then
/// once more, which must bring nothing new.
pub async fn read_changelog<R>(
    scanner: &LogScanner,
    expected: usize,
    read: impl Fn(&ColumnarRow) -> R,
) -> BTreeMap<(Option<i64>, i32), Vec<Change<R>>> {
    let mut changes: BTreeMap<(Option<i64>, i32), Vec<Change<R>>> = BTreeMap::new();
    let mut count = 0;
    let mut poll = |records: fluss::record::ScanRecords| {
        let mut got = 0;
        for (bucket, records) in records.into_records_by_buckets() {
            let key = (bucket.partition_id(), bucket.bucket_id());
            for record in records {
                changes.entry(key).or_default().push(Change {
                    offset: record.offset(),
                    change: *record.change_type(),
                    row: read(record.row()),
                });
                got += 1;
            }
        }
        got
    };
    for _ in 0..POLLS_MAX {
        count += poll(bounded("poll", scanner.poll(POLL)).await);
        if count >= expected {
            break;
        }
    }
    assert_eq!(count, expected, "changelog records read in {POLLS_MAX} polls");
    let more = poll(bounded("poll", scanner.poll(POLL)).await);
    assert_eq!(more, 0, "changelog records after the {expected} expected");
    changes
}

/// Asserts that each bucket's offsets run 0, 1, 2, ... with no gap (one offset per record).
pub fn assert_offsets_dense<R>(changes: &BTreeMap<(Option<i64>, i32), Vec<Change<R>>>) {
    for (bucket, records) in changes {
        let offsets: Vec<i64> = records.iter().map(|change| change.offset).collect();
        let dense: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(offsets, dense, "offsets of {bucket:?}");
    }
}

/// Polls of the latest snapshots before the test gives up, and the time they may take.
const SNAPSHOT_POLLS_MAX: usize = 600;
const SNAPSHOT_POLL: Duration = Duration::from_millis(100);
const SNAPSHOT_WAIT_MAX: Duration = Duration::from_secs(90);

/// Polls `get_latest_kv_snapshots` until every bucket's latest snapshot is at its log end
/// offset (`ends`); returns them by bucket.
pub async fn wait_for_snapshots_at(
    admin: &FlussAdmin,
    path: &TablePath,
    ends: &BTreeMap<i32, i64>,
) -> BTreeMap<i32, KvSnapshot> {
    let deadline = Instant::now() + SNAPSHOT_WAIT_MAX;
    let mut last = BTreeMap::new();
    for _ in 0..SNAPSHOT_POLLS_MAX {
        let latest =
            bounded("get_latest_kv_snapshots", admin.get_latest_kv_snapshots(path, None)).await;
        last = latest
            .latest_snapshots
            .into_iter()
            .map(|snapshot| (snapshot.bucket_id, snapshot))
            .collect();
        let covered = ends.iter().all(|(bucket, end)| {
            last.get(bucket).is_some_and(|snapshot| snapshot.log_offset == Some(*end))
        });
        if covered {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at {ends:?} within {SNAPSHOT_WAIT_MAX:?}: {last:?}"
        );
        tokio::time::sleep(SNAPSHOT_POLL).await;
    }
    panic!("no snapshot at {ends:?} in {SNAPSHOT_POLLS_MAX} polls: {last:?}");
}

/// Creates database `database` and in it table `kv` with columns `id INT` (the primary key)
/// and `name STRING` over `buckets` buckets; returns its path.
pub async fn create_id_name_table(admin: &FlussAdmin, database: &str, buckets: i32) -> TablePath {
    bounded("create_database", admin.create_database(database, None, false)).await;
    let path = TablePath::new(database, "kv");
    let schema = Schema::builder()
        .column("id", DataTypes::int())
        .column("name", DataTypes::string())
        .primary_key(vec!["id"])
        .expect("primary key")
        .build()
        .expect("schema");
    let descriptor = TableDescriptor::builder()
        .schema(schema)
        .distributed_by(Some(buckets), vec![])
        .build()
        .expect("descriptor");
    bounded("create_table", admin.create_table(&path, &descriptor, false)).await;
    path
}
