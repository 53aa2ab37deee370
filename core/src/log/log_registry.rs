//! Opens each bucket's changelog once and hands out shared handles.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};

use crate::env::LocalFs;
use crate::log::log_tablet::{LogConfig, LogError, LogTablet};
use crate::log::replication::Replicator;
use crate::mutant::Mutants;
use crate::table_bucket::TableBucket;
use crate::tablet_dirs::TabletDirs;

/// The changelogs of a set of buckets under one root directory.
///
/// One registry belongs to one node, on that node's disk. In the simulator each server has its
/// own, reopened from its files when the server restarts, and a replicator copies the leader's
/// durable batches to the other replicas' registries.
#[derive(Clone)]
pub struct LogRegistry {
    fs: Arc<dyn LocalFs>,
    root_dir: String,
    config: LogConfig,
    mutants: Mutants,
    replicator: Option<Arc<dyn Replicator>>,
    /// Where each bucket's log lives, named by the tables and partitions served.
    dirs: Arc<TabletDirs>,
    logs: Arc<Mutex<Logs>>,
}

#[derive(Default)]
struct Logs {
    opened: BTreeMap<TableBucket, Arc<LogTablet>>,
    /// Logs whose files failed their checks: nothing this node does while it runs changes
    /// those bytes, so the refusal stands until the registry is made again (a restart) rather
    /// than re-reading the whole log at every leadership request. Failed reads are retried.
    refused: BTreeMap<TableBucket, LogError>,
}

impl std::fmt::Debug for LogRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRegistry").field("root_dir", &self.root_dir).finish_non_exhaustive()
    }
}

impl LogRegistry {
    pub fn new(fs: Arc<dyn LocalFs>, root_dir: String, config: LogConfig) -> LogRegistry {
        LogRegistry::with_mutants(fs, root_dir, config, Mutants::NONE)
    }

    pub fn with_mutants(
        fs: Arc<dyn LocalFs>,
        root_dir: String,
        config: LogConfig,
        mutants: Mutants,
    ) -> LogRegistry {
        LogRegistry {
            fs,
            root_dir,
            config,
            mutants,
            replicator: None,
            dirs: Arc::new(TabletDirs::new()),
            logs: Arc::new(Mutex::new(Logs::default())),
        }
    }

    /// Every log opened from now on hands its synced batches to `replicator`.
    pub fn with_replicator(mut self, replicator: Arc<dyn Replicator>) -> LogRegistry {
        self.replicator = Some(replicator);
        self
    }

    /// The names of the tables and partitions whose logs this registry opens: a bucket's log
    /// lives in [`TabletDirs::dirs`]'s `log_dir` under the registry's root.
    pub fn dirs(&self) -> &Arc<TabletDirs> {
        &self.dirs
    }

    /// The bucket's log if it has been opened.
    pub fn get(&self, bucket: TableBucket) -> Option<Arc<LogTablet>> {
        self.lock().opened.get(&bucket).cloned()
    }

    /// The bucket's log, opened from its files on first use.
    pub fn open(&self, bucket: TableBucket) -> Result<Arc<LogTablet>, LogError> {
        let mut logs = self.lock();
        if let Some(log) = logs.opened.get(&bucket) {
            return Ok(log.clone());
        }
        if let Some(refusal) = logs.refused.get(&bucket) {
            return Err(refusal.clone());
        }
        let Some(dirs) = self.dirs.dirs(bucket) else {
            return Err(LogError::NoDirectory { bucket: bucket.to_string() });
        };
        let dir = format!("{}/{}", self.root_dir, dirs.log_dir);
        let mut log = match LogTablet::open(self.fs.clone(), dir, bucket, self.config, self.mutants)
        {
            Ok(log) => log,
            Err(error) => {
                if matches!(error, LogError::Corrupt { .. }) {
                    tracing::error!(%bucket, %error, "the changelog refuses to open until restart");
                    logs.refused.insert(bucket, error.clone());
                }
                return Err(error);
            }
        };
        if let Some(replicator) = &self.replicator {
            log = log.with_replicator(replicator.clone());
        }
        let log = Arc::new(log);
        logs.opened.insert(bucket, log.clone());
        Ok(log)
    }

    /// Whether some log refused to open because its files failed their checks.
    pub fn has_refused_logs(&self) -> bool {
        !self.lock().refused.is_empty()
    }

    /// Whether some opened log stopped taking writes (a failed sync, a panic).
    pub fn has_stopped_logs(&self) -> bool {
        self.lock().opened.values().any(|log| log.is_stopped())
    }

    /// Logs opened so far, in bucket order.
    pub fn opened(&self) -> Vec<Arc<LogTablet>> {
        self.lock().opened.values().cloned().collect()
    }

    /// Poisoning is harmless here: the maps change only by one insert each, after the log
    /// is fully opened or its refusal known, so a panic (in an open, say) leaves them as they
    /// were. A log whose own state a panic left in doubt stops itself.
    fn lock(&self) -> MutexGuard<'_, Logs> {
        self.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
