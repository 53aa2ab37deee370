//! The periodic KV snapshot of a led bucket: one task per term, a tick every
//! `interval_ms` (Fluss's `kv.snapshot.interval`), each tick one [`take_snapshot`] attempt
//! that is skipped when nothing was flushed since the last snapshot.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::env::Env;
use crate::kv::kv_tablet::KvTablet;
use crate::mutant::Mutant;
use crate::snapshot::completed_snapshot::{bucket_dir, CompletedSnapshot};
use crate::snapshot::snapshot_uploader::{
    take_snapshot, SnapshotCommitter, SnapshotError, SnapshotUploadConfig,
};
use crate::task::run_blocking;

/// Fluss's `kv.snapshot.interval` default: 10 minutes.
pub const SNAPSHOT_INTERVAL_MS_DEFAULT: u64 = 10 * 60 * 1_000;

/// When and how a server's leaders snapshot their buckets.
#[derive(Clone)]
pub struct SnapshotSchedule {
    pub interval_ms: u64,
    pub committer: Arc<dyn SnapshotCommitter>,
    pub upload: SnapshotUploadConfig,
}

/// Two schedules are equal when they have the same settings and the same committer.
impl PartialEq for SnapshotSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.interval_ms == other.interval_ms
            && self.upload == other.upload
            && Arc::ptr_eq(&self.committer, &other.committer)
    }
}

impl Eq for SnapshotSchedule {}

impl std::fmt::Debug for SnapshotSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSchedule")
            .field("interval_ms", &self.interval_ms)
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

/// The snapshot loop of one term of `kv`. It ends when the tablet stops leading; the replica
/// aborts it at the end of the term (an upload in flight is dropped: the uploader never
/// deletes remote objects, so what it left is for the store's orphan sweep). It first removes
/// the bucket's local checkpoint directories that an earlier term or a crash left behind.
pub fn run_snapshot_loop(
    env: Env,
    kv: Arc<KvTablet>,
    schedule: Arc<SnapshotSchedule>,
) -> BoxFuture<'static, ()> {
    async move {
        assert!(schedule.interval_ms > 0, "a snapshot interval is positive");
        let leftovers = format!("{}/{}", schedule.upload.local_dir, bucket_dir(kv.bucket()));
        let fs = env.fs.clone();
        let name = format!("clear snapshot checkpoints node{} {}", env.node_id, kv.bucket().dir_name());
        let _ = run_blocking(&env.executor, &env.ledger, name, move || fs.remove_dir_all(&leftovers))
            .await;
        // The bucket's latest committed snapshot, asked of the coordinator at the first tick
        // (again at the next while it does not answer): a term's first snapshot is skipped when
        // nothing was flushed since, and reuses its files where this engine still has them (a
        // leader that leads again, or a restart on the same disk).
        let mut previous: Option<CompletedSnapshot> = None;
        let mut previous_known = false;
        loop {
            let deadline_ms = env.clock.now_mono_ms().saturating_add(schedule.interval_ms);
            env.clock.sleep_until(deadline_ms).await;
            if kv.is_closed() {
                return;
            }
            if !previous_known {
                match schedule.committer.latest(kv.bucket()).await {
                    Ok(latest) => {
                        previous = latest;
                        previous_known = true;
                    }
                    Err(error) => {
                        tracing::info!(bucket = %kv.bucket(), %error, "latest kv snapshot unknown; asked again at the next tick");
                        continue;
                    }
                }
            }
            match take_snapshot(&env, &kv, &schedule.committer, previous.as_ref(), &schedule.upload)
                .await
            {
                Ok(Some(snapshot)) => {
                    tracing::debug!(
                        bucket = %kv.bucket(),
                        snapshot_id = snapshot.snapshot_id,
                        log_offset = snapshot.log_offset,
                        "kv snapshot committed"
                    );
                    previous = Some(snapshot);
                }
                Ok(None) => {}
                Err(error) => {
                    log_failure(&kv, &error);
                    // What this term knows of the latest snapshot may be stale: a recovery
                    // elsewhere reported it broken and the coordinator forgot it, and every
                    // snapshot reusing its files would then be refused, for ever. Asked again.
                    previous_known = env.mutants.is_on(Mutant::SnapshotLoopKeepsStaleLatest);
                }
            }
        }
    }
    .boxed()
}

fn log_failure(kv: &KvTablet, error: &SnapshotError) {
    if error.is_retriable() {
        tracing::info!(bucket = %kv.bucket(), %error, "kv snapshot failed; the next tick tries again");
    } else {
        tracing::warn!(bucket = %kv.bucket(), %error, "kv snapshot refused");
    }
}
