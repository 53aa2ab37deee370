//! The simulated network: typed requests between nodes with seeded delays, drops, duplicates
//! and partitions.
//!
//! One call travels as three tasks:
//! 1. a wire task (owned by [`NETWORK_NODE`]) carries the request for a random delay;
//! 2. a handler task owned by the TARGET runs `RpcHandler::handle`, so a crash of the target
//!    (`SimExecutor::kill_node`) kills the request half-way;
//! 3. a wire task carries the response back for another random delay.
//!
//! Wire tasks belong to no real node: a message already sent still arrives after its sender
//! crashed, as on a real network. A request whose target restarted (`kill_node`) while it
//! was in flight is refused as `Unreachable`: its connection died with the old process. Reordering needs no rule of its own: it falls out of the
//! independent random delays.
//!
//! Every decision of a call is drawn from the network's stream at the call's first poll, in a
//! fixed number of draws, so the same seed gives the same network behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::channel::oneshot;
use futures::future::{self, BoxFuture, Either, FutureExt};
use kvtablet_core::env::{Rpc, RpcError, RpcHandler};
use kvtablet_core::message::{NodeId, Request, Response};

use crate::clock::lock;
use crate::executor::{SimExecutor, TaskName};
use crate::prng::{Prng, Ratio, Streams};

/// The pseudo-node that owns messages in flight. Killing it loses every message in flight.
pub const NETWORK_NODE: NodeId = NodeId::MAX;

/// Fault rates of the network. The default delivers everything at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetFaults {
    /// Each leg (request, response, duplicate) takes a delay drawn in `0..=delay_ms_max`.
    pub delay_ms_max: u64,
    /// Each leg is lost; the caller then times out.
    pub drop: Ratio,
    /// The request is delivered a second time; the second response is discarded.
    pub duplicate: Ratio,
}

impl NetFaults {
    /// No delay, no loss, no duplicate.
    pub fn none() -> NetFaults {
        NetFaults::default()
    }
}

/// Counters of what the network did, for tests and run summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetStats {
    pub calls: u64,
    /// Requests handed to a target's handler, duplicates included.
    pub delivered: u64,
    pub duplicated: u64,
    /// Requests and responses lost to `drop` or to a cut link.
    pub dropped: u64,
    pub unreachable: u64,
}

/// The decisions of one call, drawn together.
#[derive(Debug, Clone, Copy)]
struct CallFate {
    request_delay_ms: u64,
    drop_request: bool,
    duplicate: bool,
    duplicate_delay_ms: u64,
    response_delay_ms: u64,
    drop_response: bool,
}

struct NetState {
    handlers: BTreeMap<NodeId, Arc<dyn RpcHandler>>,
    down: BTreeSet<NodeId>,
    /// Directed links `(from, to)` that lose every message.
    cut_links: BTreeSet<(NodeId, NodeId)>,
    faults: NetFaults,
    prng: Prng,
    stats: NetStats,
}

/// What a request finds when it arrives.
enum Arrival {
    Deliver(Arc<dyn RpcHandler>),
    Unreachable,
    Lost,
}

/// The network of one simulated cluster. Cloning shares it.
#[derive(Clone)]
pub struct SimNetwork {
    state: Arc<Mutex<NetState>>,
    executor: SimExecutor,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("SimNetwork")
            .field("nodes", &state.handlers.keys().collect::<Vec<_>>())
            .field("down", &state.down)
            .field("faults", &state.faults)
            .field("stats", &state.stats)
            .finish_non_exhaustive()
    }
}

impl SimNetwork {
    /// A network drawing its faults from `streams.stream("net")`.
    pub fn new(executor: &SimExecutor, streams: &Streams, faults: NetFaults) -> SimNetwork {
        SimNetwork::with_prng(executor, streams.stream("net"), faults)
    }

    /// A network drawing its faults from `prng`, which should be a stream of its own.
    pub fn with_prng(executor: &SimExecutor, prng: Prng, faults: NetFaults) -> SimNetwork {
        SimNetwork {
            state: Arc::new(Mutex::new(NetState {
                handlers: BTreeMap::new(),
                down: BTreeSet::new(),
                cut_links: BTreeSet::new(),
                faults,
                prng,
                stats: NetStats::default(),
            })),
            executor: executor.clone(),
        }
    }

    /// Makes `node` answer requests with `handler` (replacing any earlier one, e.g. after a
    /// restart).
    pub fn register(&self, node: NodeId, handler: Arc<dyn RpcHandler>) {
        let previous = lock(&self.state).handlers.insert(node, handler);
        drop(previous);
    }

    pub fn unregister(&self, node: NodeId) {
        let previous = lock(&self.state).handlers.remove(&node);
        drop(previous);
    }

    /// Forgets every handler. A handler's environment holds an endpoint of this network, so
    /// the two keep each other alive until this breaks the cycle at the end of a run.
    pub fn unregister_all(&self) {
        let previous = std::mem::take(&mut lock(&self.state).handlers);
        drop(previous);
    }

    /// A down node neither receives nor sends: calls to or from it fail `Unreachable`.
    pub fn set_node_up(&self, node: NodeId, up: bool) {
        let mut state = lock(&self.state);
        if up {
            state.down.remove(&node);
        } else {
            state.down.insert(node);
        }
    }

    pub fn is_node_up(&self, node: NodeId) -> bool {
        !lock(&self.state).down.contains(&node)
    }

    /// Cuts or restores the one-way link `from → to`. A cut link loses messages silently, so
    /// callers time out (unlike a down node, which is refused at once).
    pub fn set_link_up(&self, from: NodeId, to: NodeId, up: bool) {
        let mut state = lock(&self.state);
        if up {
            state.cut_links.remove(&(from, to));
        } else {
            state.cut_links.insert((from, to));
        }
    }

    /// Cuts every link between `side_a` and `side_b`, both ways.
    pub fn partition(&self, side_a: &[NodeId], side_b: &[NodeId]) {
        for a in side_a {
            for b in side_b {
                self.set_link_up(*a, *b, false);
                self.set_link_up(*b, *a, false);
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        lock(&self.state).cut_links.clear();
    }

    /// Changes the fault rates for calls issued from now on.
    pub fn set_faults(&self, faults: NetFaults) {
        lock(&self.state).faults = faults;
    }

    pub fn faults(&self) -> NetFaults {
        lock(&self.state).faults
    }

    pub fn stats(&self) -> NetStats {
        lock(&self.state).stats
    }

    /// The [`Rpc`] through which `node` sends.
    pub fn endpoint(&self, node: NodeId) -> Arc<dyn Rpc> {
        Arc::new(SimRpc { network: self.clone(), from: node })
    }

    fn draw_fate(&self) -> CallFate {
        let mut state = lock(&self.state);
        let faults = state.faults;
        state.stats.calls += 1;
        let prng = &mut state.prng;
        CallFate {
            request_delay_ms: prng.range_inclusive(0, faults.delay_ms_max),
            drop_request: prng.chance(faults.drop),
            duplicate: prng.chance(faults.duplicate),
            duplicate_delay_ms: prng.range_inclusive(0, faults.delay_ms_max),
            response_delay_ms: prng.range_inclusive(0, faults.delay_ms_max),
            drop_response: prng.chance(faults.drop),
        }
    }

    /// Decides what a message from `from` finds at `to` now. `dropped` is the drawn loss;
    /// `sent_to_incarnation` is the incarnation of `to` when the message was sent.
    fn arrive(&self, from: NodeId, to: NodeId, dropped: bool, sent_to_incarnation: u64) -> Arrival {
        // A restart of the target in between resets the connection: the message reaches
        // neither the dead process nor its successor.
        let restarted = self.executor.incarnation(to) != sent_to_incarnation;
        let mut state = lock(&self.state);
        if restarted || state.down.contains(&from) || state.down.contains(&to) {
            state.stats.unreachable += 1;
            return Arrival::Unreachable;
        }
        if dropped || state.cut_links.contains(&(from, to)) {
            state.stats.dropped += 1;
            return Arrival::Lost;
        }
        match state.handlers.get(&to) {
            Some(handler) => {
                let handler = handler.clone();
                state.stats.delivered += 1;
                Arrival::Deliver(handler)
            }
            None => {
                state.stats.unreachable += 1;
                Arrival::Unreachable
            }
        }
    }

    /// Whether a response from `from` to `to` gets through now.
    fn response_arrives(&self, from: NodeId, to: NodeId, dropped: bool) -> bool {
        let mut state = lock(&self.state);
        let lost = dropped
            || state.down.contains(&from)
            || state.down.contains(&to)
            || state.cut_links.contains(&(from, to));
        if lost {
            state.stats.dropped += 1;
        }
        !lost
    }

    fn sleep_ms(&self, duration_ms: u64) -> crate::clock::Sleep {
        self.executor.sleep_until(self.executor.now_mono_ms().saturating_add(duration_ms))
    }

    /// Runs the handler as a task of `target`; if `reply` is given, sends the response back
    /// through a wire task after `response_delay_ms`.
    fn spawn_handler(
        &self,
        from: NodeId,
        target: NodeId,
        handler: Arc<dyn RpcHandler>,
        request: Request,
        reply: Option<(oneshot::Sender<Result<Response, RpcError>>, CallFate)>,
    ) {
        let network = self.clone();
        let kind = request.kind();
        let name = TaskName::Handler { kind, from };
        self.executor.spawn(
            target,
            name,
            async move {
                let response = handler.handle(from, request).await;
                let Some((reply, fate)) = reply else {
                    // A duplicate delivery: its response is discarded.
                    return;
                };
                let wire = network.clone();
                network.executor.spawn(
                    NETWORK_NODE,
                    TaskName::Wire { from: target, to: from, kind, response: true },
                    async move {
                        wire.sleep_ms(fate.response_delay_ms).await;
                        if wire.response_arrives(target, from, fate.drop_response) {
                            // The caller may have given up already; nobody is left to tell.
                            let _ = reply.send(Ok(response));
                        }
                    }
                    .boxed(),
                );
            }
            .boxed(),
        );
    }

    /// The wire task of a request: delivers it (and its duplicate) after the drawn delays.
    async fn carry_request(
        self,
        from: NodeId,
        target: NodeId,
        request: Request,
        fate: CallFate,
        reply: oneshot::Sender<Result<Response, RpcError>>,
        sent_to_incarnation: u64,
    ) {
        self.sleep_ms(fate.request_delay_ms).await;
        let duplicate = fate.duplicate.then(|| request.clone());
        match self.arrive(from, target, fate.drop_request, sent_to_incarnation) {
            Arrival::Deliver(handler) => {
                self.spawn_handler(from, target, handler, request, Some((reply, fate)));
            }
            Arrival::Unreachable => {
                let _ = reply.send(Err(RpcError::Unreachable(target)));
                return;
            }
            // Dropping `reply` lets the caller wait out its deadline.
            Arrival::Lost => drop(reply),
        }
        if let Some(request) = duplicate {
            self.sleep_ms(fate.duplicate_delay_ms).await;
            if let Arrival::Deliver(handler) = self.arrive(from, target, false, sent_to_incarnation)
            {
                lock(&self.state).stats.duplicated += 1;
                self.spawn_handler(from, target, handler, request, None);
            }
        }
    }
}

/// One node's view of the network.
struct SimRpc {
    network: SimNetwork,
    from: NodeId,
}

impl Rpc for SimRpc {
    fn call(
        &self,
        target: NodeId,
        request: Request,
        timeout_ms: u64,
    ) -> BoxFuture<'static, Result<Response, RpcError>> {
        let network = self.network.clone();
        let from = self.from;
        async move {
            let deadline_ms = network.executor.now_mono_ms().saturating_add(timeout_ms);
            let fate = network.draw_fate();
            // Taken now, not when the wire task first runs: the connection is to this process.
            let sent_to_incarnation = network.executor.incarnation(target);
            let (reply, reply_received) = oneshot::channel();
            let name = TaskName::Wire { from, to: target, kind: request.kind(), response: false };
            let wire = network.clone().carry_request(
                from,
                target,
                request,
                fate,
                reply,
                sent_to_incarnation,
            );
            network.executor.spawn(NETWORK_NODE, name, wire.boxed());
            let deadline = network.executor.sleep_until(deadline_ms);
            match future::select(reply_received, deadline).await {
                Either::Left((Ok(result), _)) => result,
                // Lost on the way, or the target crashed: the caller only learns at its deadline.
                Either::Left((Err(oneshot::Canceled), deadline)) => {
                    deadline.await;
                    Err(RpcError::Timeout(target))
                }
                Either::Right(((), _)) => Err(RpcError::Timeout(target)),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use kvtablet_core::env::Clock;

    use super::*;

    /// Answers `Ok` after `work_ms`, counting invocations.
    struct SlowHandler {
        clock: Arc<dyn Clock>,
        work_ms: u64,
        invocations: Arc<AtomicU64>,
    }

    impl RpcHandler for SlowHandler {
        fn handle(&self, _from: NodeId, _request: Request) -> BoxFuture<'static, Response> {
            self.invocations.fetch_add(1, Ordering::SeqCst);
            let clock = self.clock.clone();
            let work_ms = self.work_ms;
            async move {
                clock.sleep(work_ms).await;
                Response::Ok
            }
            .boxed()
        }
    }

    struct Cluster {
        executor: SimExecutor,
        network: SimNetwork,
        invocations: Arc<AtomicU64>,
    }

    /// Node 1 is a client; node 2 a server whose handler takes `work_ms`.
    fn cluster(seed: u64, faults: NetFaults, work_ms: u64) -> Cluster {
        let streams = Streams::new(seed);
        let executor = SimExecutor::new(&streams);
        let network = SimNetwork::new(&executor, &streams, faults);
        let invocations = Arc::new(AtomicU64::new(0));
        let handler =
            SlowHandler { clock: executor.clock_for(2), work_ms, invocations: invocations.clone() };
        network.register(2, Arc::new(handler));
        Cluster { executor, network, invocations }
    }

    fn call(cluster: &Cluster, target: NodeId, timeout_ms: u64) -> Result<Response, RpcError> {
        let rpc = cluster.network.endpoint(1);
        cluster
            .executor
            .block_on(1, "caller", rpc.call(target, Request::Metadata, timeout_ms), 10_000)
            .expect("the call finishes within the step budget")
    }

    #[test]
    fn a_call_reaches_the_handler_and_returns_within_the_delays() {
        let cluster = cluster(1, NetFaults { delay_ms_max: 20, ..NetFaults::default() }, 5);
        assert_eq!(call(&cluster, 2, 1_000), Ok(Response::Ok));
        assert_eq!(cluster.invocations.load(Ordering::SeqCst), 1);
        let elapsed_ms = cluster.executor.now_mono_ms();
        assert!((5..=45).contains(&elapsed_ms), "two legs of at most 20 ms plus 5: {elapsed_ms}");
    }

    #[test]
    fn down_or_unknown_targets_are_unreachable() {
        let cluster = cluster(2, NetFaults { delay_ms_max: 10, ..NetFaults::default() }, 0);
        assert_eq!(call(&cluster, 9, 1_000), Err(RpcError::Unreachable(9)));
        cluster.network.set_node_up(2, false);
        assert_eq!(call(&cluster, 2, 1_000), Err(RpcError::Unreachable(2)));
        assert!(cluster.executor.now_mono_ms() <= 20, "refused after the delay, not the timeout");
        cluster.network.set_node_up(2, true);
        assert_eq!(call(&cluster, 2, 1_000), Ok(Response::Ok));
        assert_eq!(cluster.network.stats().unreachable, 2);
    }

    #[test]
    fn dropped_messages_time_out_at_the_deadline() {
        let cluster = cluster(3, NetFaults { drop: Ratio::ALWAYS, ..NetFaults::default() }, 0);
        assert_eq!(call(&cluster, 2, 300), Err(RpcError::Timeout(2)));
        assert_eq!(cluster.executor.now_mono_ms(), 300);
        assert_eq!(cluster.invocations.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_cut_link_loses_the_response_after_the_handler_ran() {
        let cluster = cluster(4, NetFaults::default(), 10);
        cluster.network.set_link_up(2, 1, false);
        assert_eq!(call(&cluster, 2, 100), Err(RpcError::Timeout(2)));
        assert_eq!(cluster.invocations.load(Ordering::SeqCst), 1, "the request took effect");
        cluster.network.heal();
        assert_eq!(call(&cluster, 2, 100), Ok(Response::Ok));
        cluster.network.partition(&[1], &[2]);
        assert_eq!(call(&cluster, 2, 100), Err(RpcError::Timeout(2)));
        assert_eq!(cluster.invocations.load(Ordering::SeqCst), 2, "the request was lost");
    }

    #[test]
    fn a_slow_handler_times_out() {
        let cluster = cluster(5, NetFaults::default(), 500);
        assert_eq!(call(&cluster, 2, 100), Err(RpcError::Timeout(2)));
        assert_eq!(cluster.executor.now_mono_ms(), 100);
    }

    #[test]
    fn the_handler_runs_as_a_task_of_the_target_and_dies_with_it() {
        let cluster = cluster(6, NetFaults::default(), 50);
        let rpc = cluster.network.endpoint(1);
        let outcome: Arc<Mutex<Option<Result<Response, RpcError>>>> = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        cluster.executor.spawn(
            1,
            "caller",
            async move {
                let result = rpc.call(2, Request::Metadata, 400).await;
                *lock(&slot) = Some(result);
            }
            .boxed(),
        );
        cluster
            .executor
            .run_until(|| cluster.invocations.load(Ordering::SeqCst) == 1, 100)
            .expect("the request arrives");
        assert_eq!(
            cluster.executor.pending_tasks().iter().filter(|(_, node)| *node == 2).count(),
            1
        );
        assert_eq!(cluster.executor.kill_node(2), 1);
        cluster.executor.run_to_completion(100).expect("the caller gives up");
        assert_eq!(*lock(&outcome), Some(Err(RpcError::Timeout(2))));
        assert_eq!(cluster.executor.now_mono_ms(), 400);
    }

    #[test]
    fn a_duplicated_request_runs_twice_but_answers_once() {
        let cluster = cluster(
            7,
            NetFaults { delay_ms_max: 10, duplicate: Ratio::ALWAYS, ..NetFaults::default() },
            0,
        );
        assert_eq!(call(&cluster, 2, 1_000), Ok(Response::Ok));
        cluster.executor.run_to_completion(1_000).expect("the duplicate is delivered");
        assert_eq!(cluster.invocations.load(Ordering::SeqCst), 2);
        assert_eq!(cluster.network.stats().duplicated, 1);
    }

    #[test]
    fn messages_in_flight_survive_a_crash_of_the_sender() {
        let cluster = cluster(8, NetFaults { delay_ms_max: 50, ..NetFaults::default() }, 0);
        let rpc = cluster.network.endpoint(1);
        cluster.executor.spawn(
            1,
            "fire-and-forget",
            async move {
                let _ = rpc.call(2, Request::Metadata, 1_000).await;
            }
            .boxed(),
        );
        cluster.executor.step();
        cluster.executor.kill_node(1);
        cluster.executor.run_to_completion(1_000).expect("the wire finishes");
        assert_eq!(cluster.invocations.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_request_in_flight_to_a_restarted_node_is_refused() {
        let cluster = cluster(9, NetFaults { delay_ms_max: 0, ..NetFaults::default() }, 0);
        let rpc = cluster.network.endpoint(1);
        let outcome: Arc<Mutex<Option<Result<Response, RpcError>>>> = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        cluster.executor.spawn(
            1,
            "caller",
            async move {
                let result = rpc.call(2, Request::Metadata, 400).await;
                *lock(&slot) = Some(result);
            }
            .boxed(),
        );
        // The caller's first poll sends; the request has not been delivered yet.
        cluster.executor.step();
        cluster.executor.kill_node(2);
        cluster.executor.run_to_completion(100).expect("the caller is answered");
        assert_eq!(*lock(&outcome), Some(Err(RpcError::Unreachable(2))));
        assert_eq!(cluster.invocations.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_same_seed_gives_the_same_network() {
        let run = |seed: u64| {
            let faults =
                NetFaults { delay_ms_max: 30, drop: Ratio::new(1, 5), duplicate: Ratio::new(1, 5) };
            let cluster = cluster(seed, faults, 3);
            let results: Vec<(Result<Response, RpcError>, u64)> =
                (0..30).map(|_| (call(&cluster, 2, 100), cluster.executor.now_mono_ms())).collect();
            (results, cluster.network.stats())
        };
        let first = run(11);
        assert_eq!(first, run(11));
        assert_ne!(first, run(12));
        assert!(first.1.dropped > 0 && first.1.duplicated > 0, "{:?}", first.1);
    }
}
