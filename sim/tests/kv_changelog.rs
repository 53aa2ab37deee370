//! What changelog a sequence of puts produces, and what reads see before and after the flush.
//! Data-driven: each case is a script and the changelog it must produce.

use std::sync::Arc;

use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::engine::KvEngineFactory;
use kvtablet_core::env::{Env, LocalFs};
use kvtablet_core::kv::{EngineWriteLock, KvTablet, KvTabletConfig, PartialUpdateRule};
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
use kvtablet_sim::sim_row::{self, SimPartialUpdates};

const STEPS_MAX: u64 = 100_000;

struct Bench {
    exec: SimExecutor,
    kv: Arc<KvTablet>,
}

fn bench() -> Bench {
    let streams = Streams::new(1);
    let exec = SimExecutor::new(&streams);
    let fs = Arc::new(SimFs::new());
    let engines = MemEngineFactory::new(fs.clone());
    let env = Env {
        node_id: 1,
        clock: exec.clock_for(1),
        executor: exec.executor_for(1),
        remote: Arc::new(SimRemoteStorage::new(&exec, &streams, RemoteFaults::none())),
        rpc: SimNetwork::new(&exec, &streams, NetFaults::none()).endpoint(1),
        fs: fs.clone(),
        entropy: Arc::new(SimEntropy::new(streams.stream("entropy"))),
        engines: Arc::new(MemEngineFactory::new(fs.clone())),
        ledger: Ledger::new(),
        mutants: Mutants::NONE,
    };
    let log_fs: Arc<dyn LocalFs> = fs;
    let log = Arc::new(
        LogTablet::open(
            log_fs,
            "log".to_string(),
            TableBucket::new(1, 0),
            LogConfig::DEFAULT,
            Mutants::NONE,
        )
        .expect("log opens"),
    );
    log.fence(1).expect("fence");
    let engine = engines.open("kv").expect("engine opens");
    let kv = Arc::new(
        KvTablet::open(env, KvTabletConfig::DEFAULT, log, engine, EngineWriteLock::default(), 1)
            .expect("kv opens"),
    );
    Bench { exec, kv }
}

/// `k=v` upserts, `-k` deletes; a line is one put batch.
fn parse_batch(line: &str) -> Vec<KvWrite> {
    line.split_whitespace()
        .map(|word| match word.strip_prefix('-') {
            Some(key) => KvWrite { key: key.as_bytes().to_vec(), value: None },
            None => {
                let (key, value) = word.split_once('=').expect("k=v");
                let mut stored = 1i16.to_le_bytes().to_vec();
                stored.extend_from_slice(value.as_bytes());
                KvWrite { key: key.as_bytes().to_vec(), value: Some(stored) }
            }
        })
        .collect()
}

fn changelog_text(kv: &KvTablet) -> String {
    let mut lines = Vec::new();
    for batch in kv.log().read(0, u64::MAX).expect("read") {
        if batch.records.is_empty() {
            lines.push(format!("{} (no change)", batch.base_offset));
        }
        for record in batch.records {
            let value = String::from_utf8_lossy(&record.value[2..]).into_owned();
            let key = String::from_utf8_lossy(&record.key).into_owned();
            lines.push(format!(
                "{} {} {key}={value}",
                record.offset,
                record.change_type.short_name()
            ));
        }
    }
    lines.join("\n")
}

fn check(script: &str, expected: &str) {
    let bench = bench();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        bench.kv.put_inline(&parse_batch(line), None).expect("put");
    }
    assert_eq!(changelog_text(&bench.kv), expected.trim(), "script:\n{script}");
}

#[test]
fn a_new_key_is_an_insert() {
    check("a=1", "0 +I a=1");
}

#[test]
fn an_update_is_a_before_and_after_pair() {
    check("a=1\na=2", "0 +I a=1\n1 -U a=1\n2 +U a=2");
}

#[test]
fn a_delete_carries_the_old_value() {
    check("a=1\n-a", "0 +I a=1\n1 -D a=1");
}

#[test]
fn deleting_a_missing_key_changes_nothing_but_takes_an_offset() {
    check("-a\nb=1", "0 (no change)\n1 +I b=1");
}

#[test]
fn writes_in_one_batch_see_each_other() {
    check("a=1 a=2 -a a=3", "0 +I a=1\n1 -U a=1\n2 +U a=2\n3 -D a=2\n4 +I a=3");
}

#[test]
fn unflushed_writes_shape_the_changelog_but_stay_invisible_to_reads() {
    let bench = bench();
    bench.kv.put_inline(&parse_batch("a=1 b=1"), None).expect("put");
    let (values, read_offset) = bench.kv.lookup(&[b"a".to_vec()]).expect("lookup");
    assert_eq!((values, read_offset), (vec![None], 0), "reads see flushed data only");
    bench.kv.put_inline(&parse_batch("a=2"), None).expect("put");
    assert!(changelog_text(&bench.kv).ends_with("2 -U a=1\n3 +U a=2"), "the buffer is consulted");

    let kv = bench.kv.clone();
    bench
        .exec
        .block_on(
            1,
            "flush",
            async move { while kv.flush_once().await.expect("flush") {} },
            STEPS_MAX,
        )
        .expect("flush runs");
    assert_eq!(bench.kv.flushed_log_offset(), 4);
    let (values, read_offset) =
        bench.kv.lookup(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]).expect("lookup");
    assert_eq!(read_offset, 4);
    assert_eq!(values, vec![Some(b"\x01\x002".to_vec()), Some(b"\x01\x001".to_vec()), None]);
    let (rows, _) = bench.kv.limit_scan(1).expect("limit scan");
    assert_eq!(rows, vec![b"\x01\x002".to_vec()]);
}

/// Puts `writes` as a partial update of `targets`, under the simulated table's rule.
fn put_partial(kv: &KvTablet, targets: &[u32], writes: &[KvWrite]) {
    let merger = SimPartialUpdates.partial_updater(targets).expect("valid targets");
    kv.put_inline_merged(writes, None, Some(merger.as_ref())).expect("partial put");
}

fn partial(key: &str, tag: &str, targets: &[u32]) -> KvWrite {
    KvWrite {
        key: key.as_bytes().to_vec(),
        value: Some(sim_row::partial_row(key.as_bytes(), tag, targets)),
    }
}

#[test]
fn a_partial_update_merges_into_the_unflushed_row_and_logs_whole_rows() {
    let bench = bench();
    let full = KvWrite { key: b"a".to_vec(), value: Some(sim_row::full_row(b"a", "t1")) };
    bench.kv.put_inline(&[full], None).expect("put");
    // Not flushed: the merge must find the row in the pre-write buffer, not in the engine.
    put_partial(&bench.kv, &[0, 2], &[partial("a", "t2", &[0, 2])]);
    // A second write of the key in the same batch merges into the first one's result.
    put_partial(&bench.kv, &[0, 1], &[partial("a", "t3", &[0, 1]), partial("a", "t4", &[0, 1])]);
    assert_eq!(
        changelog_text(&bench.kv),
        "0 +I a=a|t1|t1\n1 -U a=a|t1|t1\n2 +U a=a|t1|t2\n3 -U a=a|t1|t2\n4 +U a=a|t3|t2\n\
         5 -U a=a|t3|t2\n6 +U a=a|t4|t2"
    );
}

#[test]
fn a_partial_update_of_the_key_only_logs_nothing_and_a_partial_delete_clears_its_columns() {
    let bench = bench();
    put_partial(&bench.kv, &[0, 1], &[partial("a", "t1", &[0, 1])]);
    put_partial(&bench.kv, &[0], &[partial("a", "t2", &[0])]);
    let delete = || KvWrite { key: b"a".to_vec(), value: None };
    // b is NULL already: a delete targeting a removes the row.
    put_partial(&bench.kv, &[0, 1], &[delete()]);
    assert_eq!(changelog_text(&bench.kv), "0 +I a=a|t1|~\n1 (no change)\n2 -D a=a|t1|~");
    put_partial(&bench.kv, &[0, 1, 2], &[partial("b", "t3", &[0, 1, 2])]);
    // a is not the only value: the delete targeting b clears b and keeps the row.
    put_partial(&bench.kv, &[0, 2], &[KvWrite { key: b"b".to_vec(), value: None }]);
    assert!(changelog_text(&bench.kv).ends_with("3 +I b=b|t3|t3\n4 -U b=b|t3|t3\n5 +U b=b|t3|~"));
}
