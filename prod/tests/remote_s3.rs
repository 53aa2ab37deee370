//! The S3 remote store against a real S3-compatible server: moto's, from the venv that
//! `scripts/venv` creates (`KVTABLET_PYTHON`, which `scripts/test` sets), started on a free
//! loopback port and killed when the test ends, panics included.
//!
//! First the `RemoteStorage` contract over S3 (put, get, ranges clipped to the object, string
//! prefixes listed sorted by path, deleting a missing object, a multipart upload, objects whose
//! checksum does not match or is missing refused as corrupt, a missing bucket and an
//! unreachable server classified), then a node with `remote.data.dir` on S3: its KV snapshot
//! lands in the bucket, nothing in the data directory, and restores from the bucket.
//!
//! Without moto the test fails under CI=true and is skipped (saying so) elsewhere.

// A test owns its runtime, child processes and sockets, reads wall time to bound its waits and
// reads files directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvtablet_core::engine::{KeyRange, KvEngineFactory};
use kvtablet_core::env::{RemoteError, RemoteObject, RemoteStorage};
use kvtablet_core::error::ErrorCode;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::snapshot::completed_snapshot::{content_sha256, METADATA_FILE_NAME};
use kvtablet_core::snapshot::CompletedSnapshot;
use kvtablet_core::TableBucket;
use kvtablet_prod::config::remote::{RemoteDataDir, S3Config, Secret};
use kvtablet_prod::config::{ServeConfig, Setting};
use kvtablet_prod::node::{Node, NodeConfig};
use kvtablet_prod::object_store_remote::{ObjectStoreRemote, CRC32C_METADATA_KEY};
use kvtablet_prod::rocks_engine::RocksEngineFactory;
use kvtablet_prod::served_node::ServedNode;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
use support::{runtime, WAIT_MAX};

const BUCKET_NAME: &str = "kvtablet-remote";
const ACCESS_KEY: &str = "testing-access-key";
const SECRET_KEY: &str = "testing-secret-key";
const REGION: &str = "us-east-1";
/// moto's start (it imports Flask and boto) and each wait of the node's.
const MOTO_START_MAX: Duration = Duration::from_secs(60);
/// moto ends itself after this, or as soon as the test process is gone, whatever happens to
/// the test.
const MOTO_LIFETIME_MAX_S: u32 = 900;
const POLL: Duration = Duration::from_millis(50);
const PART_BYTES: u64 = 5 * 1024 * 1024;
const TABLE_BUCKET: TableBucket = TableBucket { table_id: 1, partition_id: None, bucket_id: 0 };

/// The python of the venv that holds moto: `KVTABLET_PYTHON`, else the venv scripts/venv makes.
fn moto_python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("KVTABLET_PYTHON") {
        Some(python) => vec![PathBuf::from(python)],
        None => {
            let cache = std::env::var_os("KVTABLET_CACHE_DIR").map(PathBuf::from).or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kvtablet"))
            });
            cache.map(|cache| cache.join("venv/bin/python")).into_iter().collect()
        }
    };
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// A running moto server; killed (and reaped) on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
    _log_dir: tempfile::TempDir,
    log: PathBuf,
}

impl Moto {
    fn start(python: &Path) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_dir = tempfile::tempdir().expect("log dir");
        let log = log_dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        // moto's server, ended by a watchdog thread when the test process goes away (its
        // parent changes) or after MOTO_LIFETIME_MAX_S, so that it never outlives the test.
        let script = format!(
            "import os, sys, threading, time\n\
             parent = os.getppid()\n\
             started = time.monotonic()\n\
             def watchdog():\n\
             \x20   while os.getppid() == parent and time.monotonic() - started < {MOTO_LIFETIME_MAX_S}:\n\
             \x20       time.sleep(1)\n\
             \x20   os._exit(0)\n\
             threading.Thread(target=watchdog, daemon=True).start()\n\
             from moto.server import main\n\
             main(['-H', '127.0.0.1', '-p', '{port}'])\n"
        );
        let child = Command::new(python)
            .args(["-c", &script])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("moto starts");
        let mut moto = Moto { child, addr, _log_dir: log_dir, log };
        let deadline = Instant::now() + MOTO_START_MAX;
        loop {
            if let Some(status) = moto.child.try_wait().expect("moto's status") {
                panic!("moto exited with {status} before answering: {}", moto.log_text());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "moto did not answer: {}", moto.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates a bucket (moto checks no signature), with one plain HTTP request.
    fn create_bucket(&self, bucket: &str) {
        let mut stream = TcpStream::connect(self.addr).expect("connect to moto");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "bucket {bucket} not created: {answer}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_config(moto: &Moto) -> S3Config {
    S3Config {
        endpoint: Some(moto.endpoint()),
        region: Some(REGION.to_string()),
        access_key: Some(ACCESS_KEY.to_string()),
        secret_key: Some(Secret::new(SECRET_KEY)),
        path_style_access: true,
        multipart_threshold_bytes: PART_BYTES,
        multipart_part_bytes: PART_BYTES,
        retry_limit: 2,
        retry_interval_ms: 50,
    }
}

/// The bucket as a plain object store, to look at and plant objects behind the remote's back.
fn raw_store(moto: &Moto) -> Arc<dyn ObjectStore> {
    let store = AmazonS3Builder::new()
        .with_bucket_name(BUCKET_NAME)
        .with_region(REGION)
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .expect("raw store");
    Arc::new(store)
}

fn paths(objects: Vec<RemoteObject>) -> Vec<String> {
    objects.into_iter().map(|object| object.path).collect()
}

/// A few megabytes that differ at every offset, so a misplaced part shows.
fn large_object(len: usize) -> Vec<u8> {
    (0..len).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[test]
fn s3_remote_storage_and_a_node_snapshotting_to_s3() {
    let Some(python) = moto_python() else {
        let message = "moto is not installed: run ./scripts/venv (scripts/test does) or set \
                       KVTABLET_PYTHON to a python with moto[server]";
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{message}");
        }
        eprintln!("SKIPPED remote_s3: {message}");
        return;
    };
    let moto = Moto::start(&python);
    moto.create_bucket(BUCKET_NAME);
    let runtime = runtime();
    runtime.block_on(remote_contract(&moto));
    runtime.block_on(node_snapshots_to_s3(&moto));
    runtime.block_on(served_node_from_settings(&moto));
}

/// `kvtablet serve`'s path: the keys as `-D` settings. A missing bucket stops the start with
/// an error that names it and not the secret; the right one starts and its sweep lists it.
async fn served_node_from_settings(moto: &Moto) {
    let dir = tempfile::tempdir().expect("data dir");
    let settings = |bucket: &str| {
        [
            Setting::data_dir(dir.path()),
            Setting::listen("127.0.0.1:0"),
            Setting::metrics_listen("off"),
            Setting::new("remote.data.dir", format!("s3://{bucket}/served"), "-D"),
            Setting::new("s3.endpoint", moto.endpoint(), "-D"),
            Setting::new("s3.region", REGION, "-D"),
            Setting::new("s3.access-key", ACCESS_KEY, "-D"),
            Setting::new("s3.secret-key", SECRET_KEY, "-D"),
            Setting::new("s3.path.style.access", "true", "-D"),
            Setting::new("s3.retry.limit", "1", "-D"),
        ]
    };
    let config = ServeConfig::from_sources(None, &settings("missing-bucket")).expect("config");
    assert!(!format!("{config:?}").contains(SECRET_KEY), "the secret is printed");
    let handle = tokio::runtime::Handle::current();
    match ServedNode::start_with(&config, handle.clone()).await {
        Ok(_) => panic!("a node started on a missing bucket"),
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("missing-bucket"), "{message}");
            assert!(!message.contains(SECRET_KEY), "the secret leaked: {message}");
        }
    }
    let config = ServeConfig::from_sources(None, &settings(BUCKET_NAME)).expect("config");
    let mut served = ServedNode::start_with(&config, handle).await.expect("the node starts");
    served.stop().await;
    assert!(!dir.path().join("remote").exists(), "objects were written to the data directory");
}

async fn remote_contract(moto: &Moto) {
    let config = s3_config(moto);
    let remote = ObjectStoreRemote::open(
        &RemoteDataDir::S3 { bucket: BUCKET_NAME.to_string(), prefix: "contract".to_string() },
        &config,
        Path::new("/nonexistent"),
    )
    .await
    .expect("the bucket answers");
    assert_eq!(remote.name(), format!("s3://{BUCKET_NAME}/contract"));
    assert!(!format!("{remote:?}").contains(SECRET_KEY), "the secret is printed");

    // Put, get, overwrite, the empty object.
    remote.put("snapshots/t1-b0/1/data", b"first".to_vec()).await.expect("put");
    assert_eq!(remote.get("snapshots/t1-b0/1/data").await.expect("get"), b"first");
    remote.put("snapshots/t1-b0/1/data", b"second".to_vec()).await.expect("overwrite");
    assert_eq!(remote.get("snapshots/t1-b0/1/data").await.expect("get"), b"second");
    remote.put("empty", Vec::new()).await.expect("put empty");
    assert_eq!(remote.get("empty").await.expect("get empty"), b"");
    assert!(matches!(remote.get("missing").await, Err(RemoteError::NotFound(_))));

    // Ranges, clipped to the object.
    remote.put("segment", b"0123456789".to_vec()).await.expect("put");
    assert_eq!(remote.get_range("segment", 2..5).await.expect("range"), b"234");
    assert_eq!(remote.get_range("segment", 8..100).await.expect("range"), b"89");
    assert_eq!(remote.get_range("segment", 0..100).await.expect("whole"), b"0123456789");
    assert_eq!(remote.get_range("segment", 10..20).await.expect("range"), b"");
    assert_eq!(remote.get_range("segment", 50..60).await.expect("range"), b"");
    assert_eq!(remote.get_range("segment", 4..4).await.expect("range"), b"");
    assert!(matches!(remote.get_range("missing", 0..4).await, Err(RemoteError::NotFound(_))));
    assert!(matches!(remote.get_range("missing", 4..4).await, Err(RemoteError::NotFound(_))));

    // Listing by string prefix, sorted by path; the store's prefix is not shown.
    for path in ["a/b/2", "a/b/10", "a/bc/1", "a/c", "z"] {
        remote.put(&format!("list/{path}"), path.as_bytes().to_vec()).await.expect("put");
    }
    assert_eq!(
        paths(remote.list("list/").await.expect("list")),
        ["list/a/b/10", "list/a/b/2", "list/a/bc/1", "list/a/c", "list/z"]
    );
    assert_eq!(
        paths(remote.list("list/a/b").await.expect("list")),
        ["list/a/b/10", "list/a/b/2", "list/a/bc/1"]
    );
    assert_eq!(paths(remote.list("list/a/b/").await.expect("list")), ["list/a/b/10", "list/a/b/2"]);
    assert!(remote.list("nothing/here").await.expect("list").is_empty());
    let sizes: Vec<u64> =
        remote.list("list/a/c").await.expect("list").iter().map(|o| o.size_bytes).collect();
    assert_eq!(sizes, [3]);

    // Deleting, also a missing object.
    remote.delete("list/z").await.expect("delete");
    assert!(matches!(remote.get("list/z").await, Err(RemoteError::NotFound(_))));
    remote.delete("list/z").await.expect("deleting a missing object succeeds");

    // A multipart upload: above the threshold, in three parts.
    let large = large_object(2 * PART_BYTES as usize + 123_457);
    remote.put("large/object", large.clone()).await.expect("multipart put");
    assert!(remote.get("large/object").await.expect("get") == large, "the large object differs");
    let tail = remote.get_range("large/object", PART_BYTES - 10..PART_BYTES + 10).await;
    assert!(tail.expect("range across parts") == large[PART_BYTES as usize - 10..][..20]);
    let raw = raw_store(moto);
    let head = raw.head(&ObjectPath::from("contract/large/object")).await.expect("head");
    assert_eq!(head.size, large.len() as u64);
    let etag = head.e_tag.expect("an etag");
    assert!(etag.trim_matches('"').ends_with("-3"), "not a 3-part upload: {etag}");

    // Objects whose bytes do not match their checksum, or that have none, are corrupt on a
    // whole download; a part of one cannot be checked.
    let mut wrong = Attributes::new();
    wrong.insert(Attribute::Metadata(CRC32C_METADATA_KEY.into()), "00000000".into());
    let planted = PutOptions { attributes: wrong, ..PutOptions::default() };
    raw.put_opts(&ObjectPath::from("contract/rotten"), PutPayload::from_static(b"bits"), planted)
        .await
        .expect("plant");
    raw.put(&ObjectPath::from("contract/unsummed"), PutPayload::from_static(b"bits"))
        .await
        .expect("plant");
    for path in ["rotten", "unsummed"] {
        match remote.get(path).await {
            Err(RemoteError::Corrupt(message)) => assert!(message.contains(path), "{message}"),
            other => panic!("{path}: expected a corrupt object, got {other:?}"),
        }
        assert!(matches!(remote.get_range(path, 0..4).await, Err(RemoteError::Corrupt(_))));
        assert_eq!(remote.get_range(path, 1..3).await.expect("part"), b"it");
    }

    // A missing bucket is fatal at open; an unreachable server is transient, after the
    // client's bounded retries.
    let missing = ObjectStoreRemote::open(
        &RemoteDataDir::S3 { bucket: "no-such-bucket".to_string(), prefix: String::new() },
        &config,
        Path::new("/nonexistent"),
    )
    .await;
    match missing {
        Err(RemoteError::Fatal(message)) => {
            assert!(message.contains("no-such-bucket"), "{message}");
            assert!(!message.contains(SECRET_KEY), "the secret leaked: {message}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    let closed_port = TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let unreachable = S3Config {
        endpoint: Some(format!("http://{closed_port}")),
        retry_limit: 1,
        retry_interval_ms: 10,
        ..config.clone()
    };
    let unreachable = ObjectStoreRemote::s3(BUCKET_NAME, "", &unreachable).expect("configured");
    let started = Instant::now();
    let outcome = unreachable.get("anything").await;
    assert!(matches!(outcome, Err(RemoteError::Transient(_))), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "retries are bounded");
}

async fn node_snapshots_to_s3(moto: &Moto) {
    let dir = tempfile::tempdir().expect("data dir");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let prefix = "cluster/remote";
    let config = NodeConfig {
        buckets: vec![TABLE_BUCKET],
        snapshot_interval_ms: 200,
        remote_data_dir: RemoteDataDir::S3 {
            bucket: BUCKET_NAME.to_string(),
            prefix: prefix.to_string(),
        },
        s3: s3_config(moto),
        ..NodeConfig::new(dir.path())
    };
    let mut node =
        Node::start(config, tokio::runtime::Handle::current()).await.expect("the node starts");
    let handle = node.handle().expect("running");

    let mut model = BTreeMap::new();
    for batch in 0..4 {
        let writes: Vec<KvWrite> = (0..500)
            .map(|index| {
                let key = format!("key-{batch}-{index:04}").into_bytes();
                let mut value = vec![1, 0];
                value.extend(format!("value {batch} {index} ").bytes().cycle().take(200));
                model.insert(key.clone(), value.clone());
                KvWrite { key, value: Some(value) }
            })
            .collect();
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let request = Request::PutKv {
                bucket: TABLE_BUCKET,
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
                    tokio::time::sleep(POLL).await
                }
                other => panic!("put refused: {other:?}"),
            }
        }
    }
    let deadline = Instant::now() + WAIT_MAX;
    let end = loop {
        let kv = handle.leader_kv(TABLE_BUCKET).expect("led");
        let end = kv.log().log_end_offset();
        if kv.flushed_log_offset() == end {
            break end;
        }
        assert!(Instant::now() < deadline, "gave up waiting for the flush");
        tokio::time::sleep(POLL).await;
    };
    let store = node.snapshot_store().clone();
    let deadline = Instant::now() + WAIT_MAX;
    let snapshot: CompletedSnapshot = loop {
        if let Some(latest) = store.latest(TABLE_BUCKET).filter(|s| s.log_offset == end) {
            break latest;
        }
        assert!(Instant::now() < deadline, "gave up waiting for a snapshot at {end}");
        tokio::time::sleep(POLL).await;
    };
    node.shutdown().await;

    // The snapshot is in the bucket under the prefix, and nothing went to the data directory.
    assert!(!dir.path().join("remote").exists(), "objects were written to the data directory");
    let raw = raw_store(moto);
    let metadata_path = format!(
        "{prefix}/{}/{METADATA_FILE_NAME}",
        kvtablet_core::snapshot::completed_snapshot::snapshot_dir(
            TABLE_BUCKET,
            snapshot.snapshot_id
        )
    );
    raw.head(&ObjectPath::from(metadata_path.as_str())).await.expect("the _METADATA object");

    // Restored from the bucket (each download checked against its CRC32C, then against the
    // snapshot's sizes and checksums), opened by a fresh engine: exactly the rows written.
    let remote = ObjectStoreRemote::s3(BUCKET_NAME, prefix, &s3_config(moto)).expect("remote");
    let checkpoint = scratch.path().join("checkpoint");
    std::fs::create_dir_all(&checkpoint).expect("scratch");
    let files: Vec<_> = snapshot.files().collect();
    assert!(!files.is_empty());
    for file in files {
        let bytes = remote.get(&file.remote_path).await.expect("download");
        assert_eq!(bytes.len() as u64, file.size_bytes, "{}", file.remote_path);
        assert_eq!(crc32c::crc32c(&bytes), file.crc32c, "{}", file.remote_path);
        assert_eq!(content_sha256(&bytes), file.sha256, "{}", file.remote_path);
        std::fs::write(checkpoint.join(&file.local_name), bytes).expect("write");
    }
    let engine = RocksEngineFactory::new(scratch.path().to_path_buf())
        .open_checkpoint("checkpoint", "restored")
        .expect("the snapshot opens");
    assert_eq!(engine.flushed_log_offset().expect("offset"), Some(snapshot.log_offset));
    let mut iterator =
        engine.snapshot().expect("engine snapshot").iter(KeyRange::all()).expect("iterator");
    iterator.seek_to_first();
    let mut restored = BTreeMap::new();
    while iterator.valid() {
        restored.insert(iterator.key().to_vec(), iterator.value().to_vec());
        iterator.next();
    }
    iterator.status().expect("the restored engine reads");
    assert_eq!(restored.len(), model.len());
    assert!(restored == model, "the snapshot restored from S3 differs from the rows written");
}
