//! Group commit: puts written to a bucket's log while a sync runs share the next one, and are
//! acknowledged together once it returns; a failed shared sync fails every put it would have
//! covered (and stops the log), and a resend of a batch still waiting for its sync is not
//! answered before that sync.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::KvEngineFactory;
use kvtablet_core::env::{Env, FsError, LocalFs};
use kvtablet_core::kv::{EngineWriteLock, KvError, KvTablet, KvTabletConfig, PutOutcome};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::{
    AppendMeta, Appended, ChangeRecord, ChangeType, LogConfig, LogError, LogTablet, WriterBatch,
};
use kvtablet_core::message::KvWrite;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::TableBucket;
use kvtablet_sim::executor::{SimExecutor, SlowDisk};
use kvtablet_sim::fs::SimFs;
use kvtablet_sim::network::{NetFaults, SimNetwork};
use kvtablet_sim::prng::{SimEntropy, Streams};
use kvtablet_sim::remote::{RemoteFaults, SimRemoteStorage};

const STEPS_MAX: u64 = 100_000;
const PUTS: usize = 8;
const LOG_DIR: &str = "log";

/// A disk that counts the syncs of the log's files and can be made to fail them.
struct CountingFs {
    inner: Arc<SimFs>,
    syncs: AtomicU64,
    fail_syncs: AtomicBool,
}

impl LocalFs for CountingFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.append(path, bytes)
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.write(path, bytes)
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        if path.ends_with(".log") {
            self.syncs.fetch_add(1, Ordering::SeqCst);
        }
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(FsError::Io("injected sync failure".to_string()));
        }
        self.inner.sync(path)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.inner.read(path)
    }
    fn read_range(
        &self,
        path: &str,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<Vec<u8>, FsError> {
        self.inner.read_range(path, offset_bytes, len_bytes)
    }
    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        self.inner.file_len(path)
    }
    fn truncate(&self, path: &str, len_bytes: u64) -> Result<(), FsError> {
        self.inner.truncate(path, len_bytes)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove_dir_all(path)
    }
    fn host_path(&self, path: &str) -> Option<std::path::PathBuf> {
        self.inner.host_path(path)
    }
}

struct Bench {
    exec: SimExecutor,
    disk: Arc<SimFs>,
    fs: Arc<CountingFs>,
    kv: Arc<KvTablet>,
}

fn bench(seed: u64) -> Bench {
    let streams = Streams::new(seed);
    let exec = SimExecutor::new(&streams);
    let disk = Arc::new(SimFs::new());
    let fs = Arc::new(CountingFs {
        inner: disk.clone(),
        syncs: AtomicU64::new(0),
        fail_syncs: AtomicBool::new(false),
    });
    let env = Env {
        node_id: 1,
        clock: exec.clock_for(1),
        executor: exec.executor_for(1),
        remote: Arc::new(SimRemoteStorage::new(&exec, &streams, RemoteFaults::none())),
        rpc: SimNetwork::new(&exec, &streams, NetFaults::none()).endpoint(1),
        fs: disk.clone(),
        entropy: Arc::new(SimEntropy::new(streams.stream("entropy"))),
        engines: Arc::new(MemEngineFactory::new(disk.clone())),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    };
    let log_fs: Arc<dyn LocalFs> = fs.clone();
    let log = Arc::new(
        LogTablet::open(
            log_fs,
            LOG_DIR.to_string(),
            TableBucket::new(1, 0),
            LogConfig::DEFAULT,
            Mutants::NONE,
        )
        .expect("log opens"),
    );
    log.fence(1).expect("fence");
    let engine = MemEngineFactory::new(disk.clone()).open("kv").expect("engine opens");
    let kv = Arc::new(
        KvTablet::open(env, KvTabletConfig::DEFAULT, log, engine, EngineWriteLock::default(), 1)
            .expect("kv opens"),
    );
    // The segment file exists and is synced: from here on every sync is a put's.
    kv.put_inline(&upsert("w0"), None).expect("put");
    fs.syncs.store(0, Ordering::SeqCst);
    // Disk work takes a few virtual milliseconds (as a sync takes real time): what is written
    // while a sync runs waits for the next one.
    exec.set_slow_disk(SlowDisk { one_in: 1, delay_ms_max: 5 });
    Bench { exec, disk, fs, kv }
}

fn upsert(key: &str) -> Vec<KvWrite> {
    let mut stored = 1i16.to_le_bytes().to_vec();
    stored.extend_from_slice(b"v");
    vec![KvWrite { key: key.as_bytes().to_vec(), value: Some(stored) }]
}

type Answers = Arc<Mutex<Vec<(usize, Result<PutOutcome, KvError>)>>>;

/// `PUTS` puts sent at once (put `i` of writer `writer_of(i)`, if any), run to completion.
fn concurrent_puts(bench: &Bench, writer_of: impl Fn(usize) -> Option<WriterBatch>) -> Answers {
    let answers: Answers = Arc::new(Mutex::new(Vec::new()));
    for index in 0..PUTS {
        let put = bench.kv.put(upsert(&format!("k{index}")), writer_of(index), None);
        let answers = answers.clone();
        bench.exec.spawn(
            1,
            format!("put {index}"),
            async move {
                let answer = put.await;
                answers.lock().expect("answers").push((index, answer));
            }
            .boxed(),
        );
    }
    bench
        .exec
        .run_until(|| answers.lock().expect("answers").len() == PUTS, STEPS_MAX)
        .expect("puts run");
    answers
}

#[test]
fn concurrent_puts_share_syncs_and_are_acknowledged_once_synced() {
    let seeds = 1..=10u64;
    let mut syncs_per_seed = Vec::new();
    for seed in seeds.clone() {
        let bench = bench(seed);
        let answers = concurrent_puts(&bench, |_| None);
        let mut ends: Vec<u64> = answers
            .lock()
            .expect("answers")
            .iter()
            .map(|(index, answer)| {
                answer.as_ref().unwrap_or_else(|e| panic!("put {index}: {e}")).end_offset
            })
            .collect();
        ends.sort_unstable();
        let expected: Vec<u64> = (2..=PUTS as u64 + 1).collect();
        assert_eq!(ends, expected, "dense offsets after the warm-up");
        // Acknowledged means durable: everything written is synced.
        let log = bench.kv.log().clone();
        assert_eq!(log.high_watermark(), PUTS as u64 + 1);
        let segment = format!("{LOG_DIR}/{:020}.log", 0);
        assert_eq!(bench.disk.durable_len(&segment), bench.disk.file_len(&segment).expect("len"));
        let syncs = bench.fs.syncs.load(Ordering::SeqCst);
        assert!(syncs < PUTS as u64, "seed {seed}: one sync per put ({syncs}), none shared");
        syncs_per_seed.push(syncs);
    }
    let total: u64 = syncs_per_seed.iter().sum();
    println!("syncs for {PUTS} concurrent puts, seeds {seeds:?}: {syncs_per_seed:?}");
    // Writes are serialised and take as long as a sync here, so a sync covers the puts
    // written while the previous one ran: about 8 / 5 puts per sync (measured 48 syncs).
    assert!(
        total * 4 <= 3 * PUTS as u64 * syncs_per_seed.len() as u64,
        "fewer than 4 puts per 3 syncs on average: {syncs_per_seed:?}"
    );
}

#[test]
fn a_failed_shared_sync_fails_every_put_it_covered_and_stops_the_log() {
    let bench = bench(3);
    let segment = format!("{LOG_DIR}/{:020}.log", 0);
    let len_before = bench.disk.file_len(&segment).expect("len");
    bench.fs.fail_syncs.store(true, Ordering::SeqCst);
    let answers = concurrent_puts(&bench, |_| None);
    for (index, answer) in answers.lock().expect("answers").iter() {
        match answer {
            Err(KvError::NotLeader(message)) => {
                assert!(message.contains("stopped"), "put {index}: {message}")
            }
            other => panic!("put {index} answered {other:?} after a failed sync"),
        }
    }
    let log = bench.kv.log().clone();
    assert!(log.stopped().is_some(), "a failed sync stops the log");
    assert_eq!(log.high_watermark(), 1, "nothing of the failed sync is committed");
    assert_eq!(
        bench.fs.syncs.load(Ordering::SeqCst),
        1,
        "one sync, shared and failed, and none after it"
    );
    // Several puts were written and waited on that one sync.
    let frame_bytes = len_before; // the warm-up's frame: one put of the same size
    assert!(
        bench.disk.file_len(&segment).expect("len") >= len_before + 2 * frame_bytes,
        "the failed sync covered more than one put"
    );
    // Healthy again, the log still refuses until it is reopened from its files.
    bench.fs.fail_syncs.store(false, Ordering::SeqCst);
    assert!(matches!(bench.kv.put_inline(&upsert("after"), None), Err(KvError::NotLeader(_))));
}

fn insert(key: &str) -> Vec<ChangeRecord> {
    vec![ChangeRecord {
        change_type: ChangeType::Insert,
        key: key.as_bytes().to_vec(),
        value: b"\x01\x00v".to_vec(),
    }]
}

#[test]
fn a_resend_of_a_batch_waiting_for_its_sync_waits_for_that_sync() {
    let bench = bench(1);
    let log = bench.kv.log().clone();
    let writer = WriterBatch { writer_id: 4, batch_sequence: 0 };
    let meta = AppendMeta { commit_timestamp_ms: 0, writer: Some(writer) };
    let (first, ticket) = log.write_as_leader(1, meta, insert("a")).expect("write");
    let Appended::Batch(first) = first else { panic!("a first batch is written") };
    assert!(!log.is_synced_through(ticket));
    assert_eq!(log.high_watermark(), 1, "an unsynced batch is not committed");
    assert_eq!(log.read(1, u64::MAX).expect("read").len(), 0, "nor visible to a fetch");
    // The resend is a duplicate of the written batch, and waits for the same sync.
    let (resent, resent_ticket) = log.write_as_leader(1, meta, insert("a")).expect("resend");
    assert_eq!(
        resent,
        Appended::Duplicate { base_offset: first.base_offset, end_offset: first.end_offset() }
    );
    assert!(!log.is_synced_through(resent_ticket), "a duplicate of an unsynced batch is not done");
    // The writer's next batch follows the unsynced one.
    let next = WriterBatch { writer_id: 4, batch_sequence: 1 };
    let (_, next_ticket) = log
        .write_as_leader(1, AppendMeta { commit_timestamp_ms: 0, writer: Some(next) }, insert("b"))
        .expect("next");
    // One sync covers all three.
    bench.fs.syncs.store(0, Ordering::SeqCst);
    log.sync_through(resent_ticket).expect("sync");
    assert!(log.is_synced_through(ticket) && log.is_synced_through(next_ticket));
    assert_eq!(bench.fs.syncs.load(Ordering::SeqCst), 1);
    log.sync_through(next_ticket).expect("already synced");
    assert_eq!(bench.fs.syncs.load(Ordering::SeqCst), 1, "nothing left to sync");
    assert_eq!(log.high_watermark(), 3);

    // With the sync failing, neither the batch nor its resend is acknowledged.
    let third = WriterBatch { writer_id: 4, batch_sequence: 2 };
    let meta = AppendMeta { commit_timestamp_ms: 0, writer: Some(third) };
    let (_, ticket) = log.write_as_leader(1, meta, insert("c")).expect("write");
    let (resent, resent_ticket) = log.write_as_leader(1, meta, insert("c")).expect("resend");
    assert!(matches!(resent, Appended::Duplicate { .. }));
    bench.fs.fail_syncs.store(true, Ordering::SeqCst);
    assert!(matches!(log.sync_through(resent_ticket), Err(LogError::Stopped { .. })));
    assert!(matches!(log.sync_through(ticket), Err(LogError::Stopped { .. })));
    assert_eq!(log.high_watermark(), 3);
}

/// A tablet over a plain disk with a pre-write buffer of `buffer_bytes_max`.
fn tablet_with_buffer(exec: &SimExecutor, buffer_bytes_max: u64) -> Arc<KvTablet> {
    let streams = Streams::new(1);
    let disk = Arc::new(SimFs::new());
    let env = Env {
        node_id: 1,
        clock: exec.clock_for(1),
        executor: exec.executor_for(1),
        remote: Arc::new(SimRemoteStorage::new(exec, &streams, RemoteFaults::none())),
        rpc: SimNetwork::new(exec, &streams, NetFaults::none()).endpoint(1),
        fs: disk.clone(),
        entropy: Arc::new(SimEntropy::new(streams.stream("entropy"))),
        engines: Arc::new(MemEngineFactory::new(disk.clone())),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    };
    let log_fs: Arc<dyn LocalFs> = disk.clone();
    let log = Arc::new(
        LogTablet::open(
            log_fs,
            LOG_DIR.to_string(),
            TableBucket::new(1, 0),
            LogConfig::DEFAULT,
            Mutants::NONE,
        )
        .expect("log opens"),
    );
    log.fence(1).expect("fence");
    let engine = MemEngineFactory::new(disk).open("kv").expect("engine opens");
    let config =
        KvTabletConfig { pre_write_buffer_bytes_max: buffer_bytes_max, ..KvTabletConfig::DEFAULT };
    Arc::new(
        KvTablet::open(env, config, log, engine, EngineWriteLock::default(), 1).expect("kv opens"),
    )
}

#[test]
fn a_full_pre_write_buffer_refuses_puts_retriably_until_the_flush_catches_up() {
    let exec = SimExecutor::new(&Streams::new(1));
    // Room for a few one-row batches (each counts its key, value and 64 bytes).
    let kv = tablet_with_buffer(&exec, 300);
    let writer = |sequence| Some(WriterBatch { writer_id: 21, batch_sequence: sequence });
    let mut sequence = 0;
    // No flush runs: the buffer fills.
    let refused = loop {
        match kv.put_inline(&upsert(&format!("k{sequence}")), writer(sequence)) {
            Ok(outcome) => assert!(!outcome.duplicate),
            Err(error) => break error,
        }
        sequence += 1;
        assert!(sequence < 100, "the buffer never filled");
    };
    assert!(matches!(refused, KvError::Backpressure(_)), "{refused:?}");
    assert_eq!(refused.code(), kvtablet_core::error::ErrorCode::StorageBackpressure);
    assert_eq!(refused.code().wire_code(), 72);
    assert!(refused.is_retriable());
    let end_before = kv.log().log_end_offset();
    assert_eq!(end_before, sequence as u64, "nothing of the refused batch was written");
    // Still full: the same batch is refused again, and nothing is written.
    assert!(matches!(
        kv.put_inline(&upsert(&format!("k{sequence}")), writer(sequence)),
        Err(KvError::Backpressure(_))
    ));
    // The flush catches up; the same writer's resend of the same batch is appended in sequence.
    let flusher = kv.clone();
    exec.block_on(
        1,
        "flush",
        async move { while flusher.flush_once().await.expect("flush") {} },
        STEPS_MAX,
    )
    .expect("flush runs");
    let outcome =
        kv.put_inline(&upsert(&format!("k{sequence}")), writer(sequence)).expect("resend");
    assert!(!outcome.duplicate, "the refused batch was never written");
    assert_eq!((outcome.base_offset, outcome.end_offset), (end_before, end_before + 1));
    // And its next batch follows.
    kv.put_inline(&upsert("next"), writer(sequence + 1)).expect("next batch in sequence");
}
