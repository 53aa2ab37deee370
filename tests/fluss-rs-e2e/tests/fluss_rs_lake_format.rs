//! `fluss-rs` 1.0.0, unchanged, against `kvtablet serve` (`KVTABLET_BIN`) on tables with
//! `table.datalake.format` (paimon, iceberg) and lake tiering off: the client encodes keys and
//! picks buckets as the lake would, and kvtablet takes its upserts and deletes and answers its
//! lookups and prefix lookups (a composite primary key with a one-column bucket key, which
//! format version 2 stores compacted).
//!
//! Every wait is bounded (`STEP`, `START_WAIT`); the node is killed when the test ends.

// Like prod, the test runs on the real clock, threads and tokio (the root clippy.toml's lists are
// for core and sim).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fluss::client::{FlussConnection, FlussTable};
use fluss::config::Config;
use fluss::metadata::{DataTypes, Schema, TableDescriptor, TablePath};
use fluss::row::{DataGetters, GenericRow};

const STEP: Duration = Duration::from_secs(30);
const START_WAIT: Duration = Duration::from_secs(60);
const BUCKETS: i32 = 3;

/// A `kvtablet serve` process, killed when dropped (as in `fluss_rs_client.rs`).
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    fn start(data_dir: &Path) -> Node {
        let binary = std::env::var("KVTABLET_BIN")
            .unwrap_or_else(|_| panic!("KVTABLET_BIN must name the kvtablet binary"));
        let addr = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port on 127.0.0.1");
        let child = Command::new(&binary)
            .args(["serve", "--listen", &addr.to_string(), "--metrics-listen", "off", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let mut node = Node { child, addr };
        let deadline = Instant::now() + START_WAIT;
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("kvtablet serve exited before it listened: {status}");
            }
            assert!(Instant::now() < deadline, "kvtablet serve did not listen in {START_WAIT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = fluss::error::Result<T>>,
) -> T {
    match tokio::time::timeout(STEP, call).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: {error}"),
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

/// `(user, seq, name)`: primary key `(user, seq)`, bucket key `user` when `composite`, else
/// primary key `seq` alone.
type Row = (i64, i32, String);

fn generic_row(row: &Row) -> GenericRow<'static> {
    let mut generic = GenericRow::new(3);
    generic.set_field(0, row.0);
    generic.set_field(1, row.1);
    generic.set_field(2, row.2.clone());
    generic
}

fn read_row(row: &dyn DataGetters) -> Row {
    (
        row.get_long(0).expect("user"),
        row.get_int(1).expect("seq"),
        row.get_string(2).expect("name").to_string(),
    )
}

async fn create(
    connection: &FlussConnection,
    name: &str,
    lake: &str,
    composite: bool,
) -> TablePath {
    let admin = connection.get_admin().expect("admin");
    let path = TablePath::new("rs_lake", name);
    let primary_key = if composite { vec!["user", "seq"] } else { vec!["seq"] };
    let schema = Schema::builder()
        .column("user", DataTypes::bigint())
        .column("seq", DataTypes::int())
        .column("name", DataTypes::string())
        .primary_key(primary_key)
        .expect("primary key")
        .build()
        .expect("schema");
    let bucket_keys = if composite { vec!["user".to_string()] } else { vec![] };
    let descriptor = TableDescriptor::builder()
        .schema(schema)
        .distributed_by(Some(BUCKETS), bucket_keys)
        .property("table.datalake.format", lake)
        .build()
        .expect("descriptor");
    bounded("create_table", admin.create_table(&path, &descriptor, false)).await;
    path
}

async fn write(table: &FlussTable<'_>, rows: &[Row], deletes: &[Row]) {
    let writer = table.new_upsert().expect("new_upsert").create_writer().expect("create_writer");
    for row in rows {
        writer.upsert(&generic_row(row)).expect("upsert queued");
    }
    for row in deletes {
        writer.delete(&generic_row(row)).expect("delete queued");
    }
    bounded("flush", writer.flush()).await;
}

fn rows() -> Vec<Row> {
    (0..30)
        .map(|i| (i64::from(i % 4) * 1_000_000_007 - 2, i * 7919 - 100_000, format!("row {i} ✓")))
        .collect()
}

#[test]
fn fluss_rs_writes_and_reads_tables_with_a_lake_format() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let config = Config { bootstrap_servers: node.addr.to_string(), ..Config::default() };
        let connection = bounded("connect", FlussConnection::new(config)).await;
        let admin = connection.get_admin().expect("admin");
        bounded("create_database", admin.create_database("rs_lake", None, false)).await;
        for lake in ["paimon", "iceberg"] {
            for composite in [false, true] {
                let name = format!("{lake}_{}", if composite { "composite" } else { "single" });
                let path = create(&connection, &name, lake, composite).await;
                let table = bounded("get_table", connection.get_table(&path)).await;
                let rows = rows();
                let deleted: Vec<Row> = rows.iter().step_by(6).cloned().collect();
                write(&table, &rows, &[]).await;
                write(&table, &[], &deleted).await;
                let mut lookuper =
                    table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
                for row in &rows {
                    let mut key = GenericRow::new(if composite { 2 } else { 1 });
                    if composite {
                        key.set_field(0, row.0);
                        key.set_field(1, row.1);
                    } else {
                        key.set_field(0, row.1);
                    }
                    let result = bounded("lookup", lookuper.lookup(&key)).await;
                    let found =
                        result.get_single_row().expect("one row at most").map(|r| read_row(&r));
                    let want = (!deleted.contains(row)).then(|| row.clone());
                    assert_eq!(found, want, "{name}: lookup of {row:?}");
                }
                if composite {
                    let mut prefix = table
                        .new_lookup()
                        .expect("new_lookup")
                        .lookup_by(vec!["user".to_string()])
                        .create_lookuper()
                        .expect("prefix lookuper");
                    for user in rows.iter().map(|r| r.0).collect::<std::collections::BTreeSet<_>>()
                    {
                        let mut key = GenericRow::new(1);
                        key.set_field(0, user);
                        let result = bounded("prefix lookup", prefix.lookup(&key)).await;
                        let mut found: Vec<Row> =
                            result.get_rows().expect("rows").iter().map(|r| read_row(r)).collect();
                        let mut want: Vec<Row> = rows
                            .iter()
                            .filter(|r| r.0 == user && !deleted.contains(r))
                            .cloned()
                            .collect();
                        found.sort();
                        want.sort();
                        assert_eq!(found, want, "{name}: prefix lookup of user {user}");
                    }
                }
            }
        }
    });
    drop(node);
}
