//! The leak ledger audited while the cluster runs, not only after shutdown: every engine
//! snapshot and iterator a live server holds must belong to one of its scan sessions that is
//! still alive (registered, or closed but deferred to the request holding it), so a resource
//! kept for the server's lifetime is seen the moment it outlives its owner.
//!
//! Between two executor steps nothing else holds an engine snapshot or iterator: lookups,
//! prefix lookups, limit scans and flushes take and drop theirs within one step, and a scan
//! open takes its snapshot and registers its session under one lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use kvtablet_core::ledger::{Ledger, ResourceKind};
use kvtablet_core::message::NodeId;
use kvtablet_core::tablet_server::TabletServer;

/// Engine resources of live servers with no live scan session to hold them, as violations
/// (`when` names the quiescent point).
pub fn unowned_engine_resources(
    ledger: &Ledger,
    servers: &BTreeMap<NodeId, Arc<TabletServer>>,
    when: &str,
) -> Vec<String> {
    // Resources of a crashed server die with its process, which the simulator does not
    // audit here.
    let live_prefixes: Vec<String> = servers.keys().map(|node| format!("node{node} ")).collect();
    let mut held: BTreeMap<(String, ResourceKind), i64> = BTreeMap::new();
    for resource in ledger.live_of(&[ResourceKind::EngineSnapshot, ResourceKind::EngineIterator]) {
        if live_prefixes.iter().any(|prefix| resource.owner.starts_with(prefix.as_str())) {
            *held.entry((resource.owner, resource.kind)).or_insert(0) += 1;
        }
    }
    if held.is_empty() {
        return Vec::new();
    }
    // Owner label (as the replica names its engine) → sessions alive for it.
    let mut sessions_alive: BTreeMap<String, i64> = BTreeMap::new();
    for (node, server) in servers {
        for (bucket, count) in server.scanners().counts().per_bucket {
            sessions_alive.insert(format!("node{node} {bucket}"), count);
        }
    }
    held.into_iter()
        .filter_map(|((owner, kind), count)| {
            let alive = sessions_alive.get(&owner).copied().unwrap_or(0);
            (count > alive).then(|| {
                format!(
                    "leak ledger {when}: {count} {kind:?} held by {owner}, which has {alive} live scan sessions"
                )
            })
        })
        .collect()
}
