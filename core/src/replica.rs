//! A bucket as one tablet server hosts it: its role, its leader epoch, and when it leads, the
//! KV tablet and its flush task.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::ledgered_engine::LedgeredEngine;
use crate::engine::KvEngine;
use crate::env::Env;
use crate::kv::{KvError, KvTablet, KvTabletConfig};
use crate::log::LogTablet;
use crate::table_bucket::TableBucket;
use crate::task::Task;

enum Role {
    Follower,
    Leader { kv: Arc<KvTablet>, flush_task: Task },
}

struct ReplicaState {
    leader_epoch: u32,
    role: Role,
    /// Opened on the first leadership and kept across terms: the engine holds every change
    /// below its stored flushed offset, so a later term only replays the rest of the log.
    engine: Option<Arc<dyn KvEngine>>,
    stopped: bool,
}

pub struct Replica {
    bucket: TableBucket,
    env: Env,
    config: KvTabletConfig,
    log: Arc<LogTablet>,
    engine_dir: String,
    state: Mutex<ReplicaState>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("bucket", &self.bucket).finish_non_exhaustive()
    }
}

impl Replica {
    pub fn new(
        env: Env,
        config: KvTabletConfig,
        log: Arc<LogTablet>,
        engine_dir: String,
    ) -> Replica {
        Replica {
            bucket: log.bucket(),
            env,
            config,
            log,
            engine_dir,
            state: Mutex::new(ReplicaState {
                leader_epoch: 0,
                role: Role::Follower,
                engine: None,
                stopped: false,
            }),
        }
    }

    pub fn bucket(&self) -> TableBucket {
        self.bucket
    }

    pub fn leader_epoch(&self) -> u32 {
        self.lock().leader_epoch
    }

    pub fn log(&self) -> &Arc<LogTablet> {
        &self.log
    }

    /// The KV tablet if this replica leads, for the request paths.
    pub fn leader_kv(&self) -> Result<Arc<KvTablet>, KvError> {
        match &self.lock().role {
            Role::Leader { kv, .. } => Ok(kv.clone()),
            Role::Follower => Err(KvError::NotLeader(format!(
                "leader not local for bucket {} on tablet server {}",
                self.bucket, self.env.node_id
            ))),
        }
    }

    /// Leads from `leader_epoch` on: fences the log, rebuilds the KV from the engine's flushed
    /// offset and the log, and starts the flush task. The same epoch again is a no-op; an
    /// older one is fenced. Returns the previous term's flush task, stopped, for the caller to
    /// join outside the lock.
    pub fn become_leader(&self, leader_epoch: u32) -> Result<Option<Task>, KvError> {
        let mut state = self.lock();
        check_epoch(&state, leader_epoch)?;
        if leader_epoch == state.leader_epoch && matches!(state.role, Role::Leader { .. }) {
            return Ok(None);
        }
        let previous = end_term(&mut state);
        state.leader_epoch = leader_epoch;
        self.log.fence(leader_epoch)?;
        let engine = match &state.engine {
            Some(engine) => engine.clone(),
            None => {
                let owner = format!("node{} {}", self.env.node_id, self.bucket);
                let engine = LedgeredEngine::wrap(
                    self.env.engines.open(&self.engine_dir)?,
                    self.env.ledger.clone(),
                    owner,
                );
                state.engine = Some(engine.clone());
                engine
            }
        };
        let kv = Arc::new(KvTablet::open(
            self.env.clone(),
            self.config,
            self.log.clone(),
            engine,
            leader_epoch,
        )?);
        let flush_task = Task::spawn(
            &self.env.executor,
            &self.env.ledger,
            format!("flush node{} {}", self.env.node_id, self.bucket.dir_name()),
            kv.clone().run_flush_loop(),
        );
        state.role = Role::Leader { kv, flush_task };
        Ok(previous)
    }

    /// Stops leading; `leader_epoch` is the new term's epoch. Returns the stopped flush task.
    pub fn become_follower(&self, leader_epoch: u32) -> Result<Option<Task>, KvError> {
        let mut state = self.lock();
        check_epoch(&state, leader_epoch)?;
        state.leader_epoch = leader_epoch;
        Ok(end_term(&mut state))
    }

    /// Ends the current term and releases the engine; the replica serves nothing afterwards.
    pub fn stop(&self) -> Option<Task> {
        let mut state = self.lock();
        state.stopped = true;
        let task = end_term(&mut state);
        state.engine = None;
        task
    }

    fn lock(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn check_epoch(state: &ReplicaState, leader_epoch: u32) -> Result<(), KvError> {
    if state.stopped {
        return Err(KvError::NotLeader("replica stopped".to_string()));
    }
    if leader_epoch < state.leader_epoch {
        return Err(KvError::FencedLeaderEpoch {
            requested: leader_epoch,
            current: state.leader_epoch,
        });
    }
    Ok(())
}

/// Closes the leader's KV (if any) and aborts its flush task.
fn end_term(state: &mut ReplicaState) -> Option<Task> {
    match std::mem::replace(&mut state.role, Role::Follower) {
        Role::Leader { kv, flush_task } => {
            kv.close();
            flush_task.abort();
            Some(flush_task)
        }
        Role::Follower => None,
    }
}
