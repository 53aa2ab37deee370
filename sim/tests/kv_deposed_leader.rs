//! A leader that has been deposed but not yet told keeps its flush loop for a moment; the
//! flush must not claim the newer leader's batches, or its engine, reused when it leads
//! again, would skip them. Found by the scan-leadership-churn scenario (seed 1025): a read
//! after a re-election returned old values and a `-U` carried a stale before-image.

use std::sync::Arc;

use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::KvEngineFactory;
use kvtablet_core::env::{Env, LocalFs};
use kvtablet_core::kv::{EngineWriteLock, KvTablet, KvTabletConfig};
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::{LogConfig, LogTablet};
use kvtablet_core::message::KvWrite;
use kvtablet_core::mutant::Mutants;
use kvtablet_core::TableBucket;
use kvtablet_sim::executor::SimExecutor;
use kvtablet_sim::fs::SimFs;
use kvtablet_sim::network::{NetFaults, SimNetwork};
use kvtablet_sim::prng::{SimEntropy, Streams};
use kvtablet_sim::remote::{RemoteFaults, SimRemoteStorage};

const STEPS_MAX: u64 = 100_000;

fn env(exec: &SimExecutor, streams: &Streams, node: u32, fs: &Arc<SimFs>) -> Env {
    Env {
        node_id: node,
        clock: exec.clock_for(node),
        executor: exec.executor_for(node),
        remote: Arc::new(SimRemoteStorage::new(exec, streams, RemoteFaults::none())),
        rpc: SimNetwork::new(exec, streams, NetFaults::none()).endpoint(node),
        fs: fs.clone(),
        entropy: Arc::new(SimEntropy::new(streams.stream(&format!("entropy-{node}")))),
        engines: Arc::new(MemEngineFactory::new(fs.clone())),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    }
}

fn upsert(key: &str, value: &str) -> Vec<KvWrite> {
    let mut stored = 1i16.to_le_bytes().to_vec();
    stored.extend_from_slice(value.as_bytes());
    vec![KvWrite { key: key.as_bytes().to_vec(), value: Some(stored) }]
}

fn flush(exec: &SimExecutor, kv: &Arc<KvTablet>) {
    let kv = kv.clone();
    exec.block_on(
        1,
        "flush",
        async move { while kv.flush_once().await.expect("flush") {} },
        STEPS_MAX,
    )
    .expect("flush finishes");
}

#[test]
fn a_deposed_leaders_flush_does_not_claim_the_new_leaders_batches() {
    let streams = Streams::new(1);
    let exec = SimExecutor::new(&streams);
    let (disk_a, disk_b, log_disk) =
        (Arc::new(SimFs::new()), Arc::new(SimFs::new()), Arc::new(SimFs::new()));
    let log_fs: Arc<dyn LocalFs> = log_disk;
    let log = Arc::new(
        LogTablet::open(
            log_fs,
            "log".into(),
            TableBucket::new(1, 0),
            LogConfig::DEFAULT,
            Mutants::NONE,
        )
        .expect("log opens"),
    );
    let engines_a = MemEngineFactory::new(disk_a.clone());
    let writes_a = EngineWriteLock::default();
    let open_a = |epoch| {
        let engine = engines_a.open("kv").expect("engine opens");
        let env = env(&exec, &streams, 1, &disk_a);
        Arc::new(
            KvTablet::open(
                env,
                KvTabletConfig::DEFAULT,
                log.clone(),
                engine,
                writes_a.clone(),
                epoch,
            )
            .expect("opens"),
        )
    };

    // Server A leads under epoch 1 and flushes k=v1.
    log.fence(1).expect("fence");
    let a = open_a(1);
    a.put_inline(&upsert("k", "v1"), None).expect("put");
    flush(&exec, &a);

    // Server B takes over under epoch 2 and writes k=v2 before A hears of it.
    log.fence(2).expect("fence");
    let engine_b = MemEngineFactory::new(disk_b.clone()).open("kv").expect("engine opens");
    let b = Arc::new(
        KvTablet::open(
            env(&exec, &streams, 2, &disk_b),
            KvTabletConfig::DEFAULT,
            log.clone(),
            engine_b,
            EngineWriteLock::default(),
            2,
        )
        .expect("opens"),
    );
    b.put_inline(&upsert("k", "v2"), None).expect("put");

    // A's flush loop runs once more, then A is told and closes.
    flush(&exec, &a);
    assert_eq!(a.flushed_log_offset(), 1, "A flushed past what it holds");
    a.close();
    drop(a);

    // A leads again under epoch 3 from its own engine: it must see B's write.
    log.fence(3).expect("fence");
    let again = open_a(3);
    let (values, read_offset) = again.lookup(&[b"k".to_vec()]).expect("lookup");
    assert_eq!(read_offset, log.high_watermark());
    let value = values[0].as_deref().map(|v| String::from_utf8_lossy(&v[2..]).into_owned());
    assert_eq!(value.as_deref(), Some("v2"), "A's engine skipped B's batch");
}
