//! Opens each bucket's changelog once and hands out shared handles.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sync::Mutex;

use crate::env::LocalFs;
use crate::log::log_tablet::{LogConfig, LogError, LogTablet};
use crate::mutant::Mutants;
use crate::table_bucket::TableBucket;

/// The changelogs of a set of buckets under one root directory.
///
/// In production one registry belongs to one node. In the simulator one registry is shared by
/// every simulated server: it is the ideal replicated log that a new leader rebuilds from.
#[derive(Clone)]
pub struct LogRegistry {
    fs: Arc<dyn LocalFs>,
    root_dir: String,
    config: LogConfig,
    mutants: Mutants,
    logs: Arc<Mutex<BTreeMap<TableBucket, Arc<LogTablet>>>>,
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
        LogRegistry { fs, root_dir, config, mutants, logs: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// The bucket's log, opened from its files on first use.
    pub fn open(&self, bucket: TableBucket) -> Result<Arc<LogTablet>, LogError> {
        let mut logs = self.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(log) = logs.get(&bucket) {
            return Ok(log.clone());
        }
        let dir = format!("{}/log/{}", self.root_dir, bucket.dir_name());
        let log =
            Arc::new(LogTablet::open(self.fs.clone(), dir, bucket, self.config, self.mutants)?);
        logs.insert(bucket, log.clone());
        Ok(log)
    }

    /// Logs opened so far, in bucket order.
    pub fn opened(&self) -> Vec<Arc<LogTablet>> {
        let logs = self.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        logs.values().cloned().collect()
    }
}
