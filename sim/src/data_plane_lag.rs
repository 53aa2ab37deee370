//! The data plane's liveness after the heal. With the workload done and every fault off but
//! transient remote failures (which a loop must live through), each led bucket's background
//! tasks must catch up within a bound of virtual time:
//!
//! - KV snapshots: the latest committed snapshot holds everything the leader flushed (a term
//!   whose first snapshot is skipped because nothing was flushed since the latest one counts:
//!   that one holds it);
//! - changelog tiering: no closed segment (wholly below the high watermark) is left above the
//!   coordinator's remote end;
//! - local retention: the oldest local segment is not one that the node's own rule (the
//!   local retention settings, within the minimum retain offset, the remote end and the high
//!   watermark) would delete.
//!
//! Each task's data stays right when it stops for good (a loop that ends on its first failure,
//! a term that never starts one, a rule that never fires), so no data oracle sees it; this
//! one does. Retention is held to the leader's own bounds (its minimum retain offset, remote
//! end and high watermark, [`kvtablet_core::log::LogTablet::retention_limit`]), and the first
//! of them to the coordinator's: the minimum retain offset must have reached the latest
//! committed snapshot's offset, or a term that never raises it would never be asked to
//! delete anything.

use std::sync::Arc;

use kvtablet_core::env::Clock;
use kvtablet_core::message::NodeId;
use kvtablet_core::TableBucket;

use crate::checker::LiveServers;
use crate::coordinator::Coordinator;
use crate::plan::RunPlan;

/// What keeps `bucket`'s background work from being caught up, if anything.
pub fn lag_of(
    bucket: TableBucket,
    plan: &RunPlan,
    live: &LiveServers,
    coordinator: &Coordinator,
    clock_of: &dyn Fn(NodeId) -> Arc<dyn Clock>,
) -> Option<String> {
    let Some(leader) = coordinator.leader_of(bucket) else {
        return Some("no leader".to_string());
    };
    let server = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&leader).cloned();
    let Some(server) = server else {
        return Some(format!("its leader, node {leader}, is down"));
    };
    let Some(kv) = server.leader_kv(bucket) else {
        return Some(format!("node {leader} does not lead it"));
    };
    let log = kv.log().clone();
    let service = coordinator.snapshots()?;
    if plan.snapshot_interval_ms.is_some() {
        let flushed = kv.flushed_log_offset();
        let latest = service.store().latest(bucket).map_or(0, |snapshot| snapshot.log_offset);
        if flushed > 0 && latest != flushed {
            return Some(format!(
                "its latest committed KV snapshot holds offsets below {latest}, its leader flushed up to {flushed}"
            ));
        }
        // Recovery replays from the latest snapshot, so the log below it is the tiers' to
        // keep: a term that never learns so would keep its whole local log for ever.
        let min_retain = log.min_retain_offset();
        if min_retain < latest {
            return Some(format!(
                "its minimum retain offset {min_retain} is below its latest committed KV snapshot's {latest}"
            ));
        }
    }
    // Without tiering there is neither a remote tier to reach nor local retention to run.
    plan.tiering_interval_ms?;
    let remote_end = service.remote_logs().map_or(0, |store| store.remote_end_offset(bucket));
    if let Some(closed) = log.closed_segment_holding(remote_end) {
        return Some(format!(
            "closed segment [{}, {}) is not tiered (remote end {remote_end})",
            closed.base_offset, closed.end_offset
        ));
    }
    let requested =
        log.local_retention_offset(&plan.local_retention, clock_of(leader).now_wall_ms());
    let limit = log.retention_limit(requested);
    if let Some(oldest) = log.closed_segment_holding(log.log_start_offset()) {
        if oldest.end_offset <= limit {
            return Some(format!(
                "local segment [{}, {}) is past local retention (deletable below {limit})",
                oldest.base_offset, oldest.end_offset
            ));
        }
    }
    None
}
