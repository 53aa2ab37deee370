//! A single-threaded, seeded executor: the simulator's scheduler.
//!
//! Every task belongs to a node. At each step the executor picks one woken task uniformly at
//! random with the "sched" stream and polls it once; when no task is woken, virtual time jumps
//! to the earliest timer. So the interleaving of tasks is a pure function of the seed, and a
//! failing seed replays the same schedule.
//!
//! A node crash is [`SimExecutor::kill_node`]: the node's tasks are dropped without another
//! poll, and executor handles of the dead incarnation can no longer spawn, so nothing of the
//! crashed process runs again.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::{BoxFuture, FutureExt};
use kvtablet_core::env::{Clock, Executor};
use kvtablet_core::message::NodeId;

use crate::clock::{lock, SimClock, SimTime, Sleep, DEFAULT_BASE_WALL_MS};
use crate::prng::{DecisionTape, Prng, Streams};
use crate::ready_set::ReadySet;

/// Identifies a task for its whole life; never reused, so a late wake of a finished task is
/// recognised and ignored.
pub type TaskId = u64;

/// The step budget of [`SimExecutor::run_for`].
pub const RUN_FOR_MAX_STEPS: u64 = 50_000_000;

/// What one [`SimExecutor::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Polled one task once.
    Polled { task: TaskId, name: TaskName, node: NodeId, completed: bool },
    /// Nothing was ready: time jumped to the earliest timer, which woke `woken` wakers.
    AdvancedTime { to_mono_ms: u64, woken: usize },
    /// No task exists and no timer is set: the simulation has nothing left to do.
    Idle,
    /// Tasks exist, but none is ready and no timer can wake one.
    Deadlock { pending: Vec<(String, NodeId)> },
}

/// Why a run stopped before its goal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("deadlock at {mono_ms} ms: no task is ready and no timer is set, yet {} task(s) wait: {}", pending.len(), describe(pending))]
    Deadlock { mono_ms: u64, pending: Vec<(String, NodeId)> },
    #[error("step budget of {max_steps} exhausted at {mono_ms} ms (livelock?); {} task(s) live: {}", pending.len(), describe(pending))]
    StepBudgetExhausted { max_steps: u64, mono_ms: u64, pending: Vec<(String, NodeId)> },
    #[error("condition still unmet at {mono_ms} ms, and no task or timer is left to change it")]
    Idle { mono_ms: u64 },
}

fn describe(pending: &[(String, NodeId)]) -> String {
    let names: Vec<String> =
        pending.iter().map(|(name, node)| format!("{name} (node {node})")).collect();
    names.join(", ")
}

/// A task's name. The network's tasks (three per call) keep their parts and are formatted
/// only when a name is shown (pending tasks, deadlock reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskName {
    Text(Arc<str>),
    /// A name core made for the task (`Executor::spawn` hands over a `String`), kept as it
    /// came rather than copied into an `Arc<str>`.
    Owned(String),
    /// `net {from}->{to} {kind}`, with ` response` for the reply's way back.
    Wire {
        from: NodeId,
        to: NodeId,
        kind: &'static str,
        response: bool,
    },
    /// `rpc {kind} from {from}`: a request's handler.
    Handler {
        kind: &'static str,
        from: NodeId,
    },
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskName::Text(text) => f.write_str(text),
            TaskName::Owned(text) => f.write_str(text),
            TaskName::Wire { from, to, kind, response: false } => {
                write!(f, "net {from}->{to} {kind}")
            }
            TaskName::Wire { from, to, kind, response: true } => {
                write!(f, "net {from}->{to} {kind} response")
            }
            TaskName::Handler { kind, from } => write!(f, "rpc {kind} from {from}"),
        }
    }
}

impl From<Arc<str>> for TaskName {
    fn from(text: Arc<str>) -> TaskName {
        TaskName::Text(text)
    }
}

impl From<String> for TaskName {
    fn from(text: String) -> TaskName {
        TaskName::Owned(text)
    }
}

impl From<&str> for TaskName {
    fn from(text: &str) -> TaskName {
        TaskName::Text(text.into())
    }
}

struct TaskSlot {
    id: TaskId,
    name: TaskName,
    node: NodeId,
    /// `None` while the task is being polled.
    future: Option<BoxFuture<'static, ()>>,
    /// Taken out with the future while the task is polled, and put back with it, so that a
    /// step moves the waker instead of cloning it (two atomic operations saved per poll).
    waker: Option<Waker>,
}

/// The live tasks, in slots that are reused once their task is gone. A task's waker and the
/// ready set know its slot, so that neither a wake nor a pick searches for the task by id;
/// every walk that the schedule depends on goes in task-id order.
#[derive(Default)]
struct TaskTable {
    slots: Vec<Option<TaskSlot>>,
    /// Slots free for reuse.
    free: Vec<usize>,
    live: usize,
}

impl TaskTable {
    /// The slot the next insert fills.
    fn next_slot(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Puts `task` into the slot [`TaskTable::next_slot`] named.
    fn insert(&mut self, task: TaskSlot) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(slot) => {
                debug_assert!(self.slots[slot].is_none(), "a free slot is empty");
                self.slots[slot] = Some(task);
                slot
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }

    /// Task `id`, if it is still live (its slot may hold a later task).
    fn get(&self, id: TaskId, slot: usize) -> Option<&TaskSlot> {
        self.slots.get(slot)?.as_ref().filter(|task| task.id == id)
    }

    fn get_mut(&mut self, id: TaskId, slot: usize) -> Option<&mut TaskSlot> {
        self.slots.get_mut(slot)?.as_mut().filter(|task| task.id == id)
    }

    fn remove(&mut self, id: TaskId, slot: usize) -> Option<TaskSlot> {
        self.get(id, slot)?;
        self.live -= 1;
        self.free.push(slot);
        self.slots[slot].take()
    }

    fn len(&self) -> usize {
        self.live
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The live tasks, in slot order (not id order).
    fn iter(&self) -> impl Iterator<Item = (usize, &TaskSlot)> {
        self.slots.iter().enumerate().filter_map(|(slot, task)| Some((slot, task.as_ref()?)))
    }

    /// `(id, slot)` of every live task that `keep` selects, in id order.
    fn ids_where(&self, keep: impl Fn(&TaskSlot) -> bool) -> Vec<(TaskId, usize)> {
        let mut ids: Vec<(TaskId, usize)> = self
            .iter()
            .filter(|(_, task)| keep(task))
            .map(|(slot, task)| (task.id, slot))
            .collect();
        ids.sort_unstable();
        ids
    }
}

struct SchedState {
    tasks: TaskTable,
    /// Woken tasks. Ordered, so that the index drawn by the scheduler maps to the same task on
    /// every run.
    ready: ReadySet,
    /// Nodes that are paused (a stop-the-world GC, a stalled VM): their tasks are not polled.
    paused: BTreeSet<NodeId>,
    /// Woken tasks of paused nodes (with their slots), made ready again when their node
    /// resumes.
    parked: BTreeMap<TaskId, usize>,
    next_task_id: TaskId,
    /// Bumped by every crash of a node; handles of an older incarnation cannot spawn.
    incarnations: BTreeMap<NodeId, u64>,
    sched: Prng,
    /// Set while a task is polled: `step` must not re-enter from inside a task.
    polling: bool,
    steps: u64,
}

struct Inner {
    sched: Mutex<SchedState>,
    time: SimTime,
    /// Decides how long a yield point takes: usually no time, sometimes a few virtual
    /// milliseconds, as a preempted thread would (FoundationDB injects the same delays).
    yield_delays: Mutex<Prng>,
    /// The slow disk: how often blocking work (appends and syncs) waits, and for how long.
    slow_disk: Mutex<(Prng, SlowDisk)>,
    /// Called after every poll (an oracle sampling state at every scheduling step); set once.
    step_observer: std::sync::OnceLock<StepObserver>,
}

/// A check run after every poll of a task; it must not drive the executor or draw from its
/// streams, so that observing never changes a schedule.
pub type StepObserver = Arc<dyn Fn() + Send + Sync>;

/// One yield in this many takes virtual time.
const SLOW_YIELD_ONE_IN: u64 = 4;

/// How blocking work (disk I/O) is delayed; `delay_ms_max == 0` is a fast disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowDisk {
    pub one_in: u64,
    pub delay_ms_max: u64,
}
const SLOW_YIELD_MS_MAX: u64 = 5;

/// The simulator's executor and virtual time. Cloning shares it.
#[derive(Clone)]
pub struct SimExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimExecutor")
            .field("now_mono_ms", &self.now_mono_ms())
            .field("task_count", &self.task_count())
            .finish_non_exhaustive()
    }
}

/// Wakes one task by putting its id back into the ready set.
struct TaskWaker {
    task: TaskId,
    slot: usize,
    /// Weak, because tasks (which the executor owns) hold their wakers.
    inner: Weak<Inner>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(inner) = self.inner.upgrade() {
            let mut state = lock(&inner.sched);
            // A finished or killed task stays finished.
            if let Some(task) = state.tasks.get(self.task, self.slot) {
                if state.paused.contains(&task.node) {
                    state.parked.insert(self.task, self.slot);
                } else {
                    state.ready.insert(self.task, self.slot);
                }
            }
        }
    }
}

impl SimExecutor {
    /// An executor scheduling with `streams.stream("sched")`, wall time starting at
    /// [`DEFAULT_BASE_WALL_MS`].
    pub fn new(streams: &Streams) -> SimExecutor {
        SimExecutor::with_base_wall_ms(streams, DEFAULT_BASE_WALL_MS)
    }

    pub fn with_base_wall_ms(streams: &Streams, base_wall_ms: u64) -> SimExecutor {
        SimExecutor {
            inner: Arc::new(Inner {
                sched: Mutex::new(SchedState {
                    tasks: TaskTable::default(),
                    ready: ReadySet::default(),
                    paused: BTreeSet::new(),
                    parked: BTreeMap::new(),
                    next_task_id: 0,
                    incarnations: BTreeMap::new(),
                    sched: streams.stream("sched"),
                    polling: false,
                    steps: 0,
                }),
                time: SimTime::new(base_wall_ms),
                yield_delays: Mutex::new(streams.stream("yield-delays")),
                slow_disk: Mutex::new((streams.stream("slow-disk"), SlowDisk::default())),
                step_observer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Runs `observer` after every poll from now on (at most one observer per executor).
    ///
    /// # Panics
    /// When an observer is already set.
    pub fn set_step_observer(&self, observer: StepObserver) {
        assert!(self.inner.step_observer.set(observer).is_ok(), "one step observer per executor");
    }

    /// From now on blocking work waits as `slow_disk` says.
    pub fn set_slow_disk(&self, slow_disk: SlowDisk) {
        lock(&self.inner.slow_disk).1 = slow_disk;
    }

    /// Scheduling decisions (which ready task runs, whether a yield takes time) come from
    /// `tape` first, then from the seeded streams: a fuzzer steers the schedule this way.
    pub fn feed_schedule_from(&self, tape: &DecisionTape) {
        let mut state = lock(&self.inner.sched);
        let sched = std::mem::replace(&mut state.sched, Prng::from_seed(0));
        state.sched = sched.fed_by(tape.clone());
        drop(state);
        let mut yield_delays = lock(&self.inner.yield_delays);
        let delays = std::mem::replace(&mut *yield_delays, Prng::from_seed(0));
        *yield_delays = delays.fed_by(tape.clone());
    }

    /// The [`Executor`] of `node`'s current incarnation.
    pub fn executor_for(&self, node: NodeId) -> Arc<dyn Executor> {
        let incarnation = self.incarnation(node);
        Arc::new(NodeExecutor { executor: self.clone(), node, incarnation })
    }

    /// The [`Clock`] of `node`: shared monotonic time, the node's wall-clock offset.
    pub fn clock_for(&self, node: NodeId) -> Arc<dyn Clock> {
        Arc::new(self.sim_clock_for(node))
    }

    pub fn sim_clock_for(&self, node: NodeId) -> SimClock {
        self.inner.time.clock_for(node)
    }

    /// The shared virtual time, for components that need timers outside any node.
    pub fn time(&self) -> &SimTime {
        &self.inner.time
    }

    /// Sleeps on the virtual clock; the executor fires it when nothing else is ready.
    pub fn sleep_until(&self, deadline_mono_ms: u64) -> Sleep {
        self.inner.time.sleep_until(deadline_mono_ms)
    }

    /// Spawns a task owned by `node`'s current incarnation.
    pub fn spawn(
        &self,
        node: NodeId,
        name: impl Into<TaskName>,
        future: BoxFuture<'static, ()>,
    ) -> TaskId {
        let mut state = lock(&self.inner.sched);
        spawn_locked(&self.inner, &mut state, node, name.into(), future)
    }

    pub fn incarnation(&self, node: NodeId) -> u64 {
        lock(&self.inner.sched).incarnations.get(&node).copied().unwrap_or(0)
    }

    pub fn now_mono_ms(&self) -> u64 {
        self.inner.time.now_mono_ms()
    }

    pub fn now_wall_ms(&self, node: NodeId) -> u64 {
        self.inner.time.now_wall_ms(node)
    }

    /// Models wall-clock drift or steps of `node`; monotonic time is unaffected.
    pub fn set_wall_offset(&self, node: NodeId, offset_ms: i64) {
        self.inner.time.set_wall_offset(node, offset_ms);
    }

    /// Jumps monotonic time forward (a stalled VM, a clock-jump fault), waking every timer due
    /// by then. Targets in the past are ignored. Returns the time afterwards.
    pub fn advance_to(&self, mono_ms: u64) -> u64 {
        self.inner.time.advance_to(mono_ms);
        self.inner.time.now_mono_ms()
    }

    /// Crashes `node`: drops all of its tasks without polling them again, and stops handles of
    /// this incarnation from spawning. Returns how many tasks were dropped.
    ///
    /// Safe to call from inside a task, including one of `node` itself (it finishes its current
    /// poll, then is dropped).
    pub fn kill_node(&self, node: NodeId) -> usize {
        let killed: Vec<TaskSlot> = {
            let mut state = lock(&self.inner.sched);
            *state.incarnations.entry(node).or_insert(0) += 1;
            let ids = state.tasks.ids_where(|task| task.node == node);
            let mut killed = Vec::with_capacity(ids.len());
            for (id, slot) in ids {
                state.ready.remove(&id);
                state.parked.remove(&id);
                if let Some(task) = state.tasks.remove(id, slot) {
                    killed.push(task);
                }
            }
            killed
        };
        let count = killed.len();
        // Dropped outside the lock: dropping a future runs its destructors, which may wake or
        // spawn other tasks.
        drop(killed);
        count
    }

    /// Pauses `node`: none of its tasks is polled until [`SimExecutor::resume_node`]; wakes
    /// and spawns in between are kept. Its timers still fire (into the parked set), and the
    /// network still delivers to it, so requests pile up as on a stalled process.
    pub fn pause_node(&self, node: NodeId) {
        let mut state = lock(&self.inner.sched);
        state.paused.insert(node);
        let of_node: Vec<(TaskId, usize)> = state
            .ready
            .entries()
            .copied()
            .filter(|(id, slot)| state.tasks.get(*id, *slot).is_some_and(|task| task.node == node))
            .collect();
        for (id, slot) in of_node {
            state.ready.remove(&id);
            state.parked.insert(id, slot);
        }
    }

    /// Resumes a paused node: its woken tasks become ready again.
    pub fn resume_node(&self, node: NodeId) {
        let mut state = lock(&self.inner.sched);
        state.paused.remove(&node);
        let of_node: Vec<(TaskId, usize)> = state
            .parked
            .iter()
            .map(|(id, slot)| (*id, *slot))
            .filter(|(id, slot)| state.tasks.get(*id, *slot).is_some_and(|task| task.node == node))
            .collect();
        for (id, slot) in of_node {
            state.parked.remove(&id);
            state.ready.insert(id, slot);
        }
    }

    pub fn is_paused(&self, node: NodeId) -> bool {
        lock(&self.inner.sched).paused.contains(&node)
    }

    /// Every live task (pending or ready), in spawn order.
    pub fn pending_tasks(&self) -> Vec<(String, NodeId)> {
        pending_locked(&lock(&self.inner.sched))
    }

    pub fn task_count(&self) -> usize {
        lock(&self.inner.sched).tasks.len()
    }

    /// Tasks of `node` alive now.
    pub fn task_count_of(&self, node: NodeId) -> usize {
        lock(&self.inner.sched).tasks.iter().filter(|(_, task)| task.node == node).count()
    }

    pub fn ready_count(&self) -> usize {
        lock(&self.inner.sched).ready.len()
    }

    /// Steps taken so far, polls and time jumps alike.
    pub fn steps(&self) -> u64 {
        lock(&self.inner.sched).steps
    }

    /// Polls one randomly chosen ready task once; if none is ready, moves time to the earliest
    /// timer instead.
    ///
    /// # Panics
    /// When called from inside a task being polled: a task cannot drive the executor.
    pub fn step(&self) -> StepOutcome {
        match self.step_unnamed(true) {
            Step::Polled { task, name, node, completed } => StepOutcome::Polled {
                task,
                name: name.expect("a named step carries the task's name"),
                node,
                completed,
            },
            Step::Idle(outcome) => outcome,
        }
    }

    /// One step as [`SimExecutor::step`] takes it; the polled task's name is cloned only when
    /// `named` (the run loops never look at it).
    fn step_unnamed(&self, named: bool) -> Step {
        let picked = {
            let mut state = lock(&self.inner.sched);
            assert!(!state.polling, "SimExecutor::step called from inside a task");
            state.steps += 1;
            pick_ready(&mut state, named)
        };
        let Some(Picked { task, slot, name, node, waker, future }) = picked else {
            return Step::Idle(self.step_idle());
        };
        let mut guard = PollGuard { inner: &self.inner, task, slot, armed: true };
        let mut future = future;
        let poll = future.as_mut().poll(&mut Context::from_waker(&waker));
        guard.armed = false;
        let completed = poll.is_ready();
        let leftover = {
            let mut state = lock(&self.inner.sched);
            state.polling = false;
            if completed {
                state.ready.remove(&task);
                state.parked.remove(&task);
                state.tasks.remove(task, slot).map(|slot| (slot.future, Some(waker)))
            } else {
                match state.tasks.get_mut(task, slot) {
                    Some(slot) => {
                        debug_assert!(
                            slot.future.is_none(),
                            "task {task} was polled twice at once"
                        );
                        slot.future = Some(future);
                        slot.waker = Some(waker);
                        None
                    }
                    // Killed while it was running: the crash takes effect now.
                    None => Some((Some(future), Some(waker))),
                }
            }
        };
        drop(leftover);
        if let Some(observer) = self.inner.step_observer.get() {
            observer();
        }
        Step::Polled { task, name, node, completed }
    }

    fn step_idle(&self) -> StepOutcome {
        if let Some(deadline_ms) = self.inner.time.next_deadline_ms() {
            let woken = self.inner.time.advance_to(deadline_ms);
            return StepOutcome::AdvancedTime { to_mono_ms: self.now_mono_ms(), woken };
        }
        let state = lock(&self.inner.sched);
        if state.tasks.is_empty() {
            StepOutcome::Idle
        } else {
            StepOutcome::Deadlock { pending: pending_locked(&state) }
        }
    }

    /// Steps until `condition()` holds (checked before every step). Returns the steps taken.
    pub fn run_until(
        &self,
        mut condition: impl FnMut() -> bool,
        max_steps: u64,
    ) -> Result<u64, SimError> {
        let mut steps = 0;
        loop {
            if condition() {
                return Ok(steps);
            }
            if steps >= max_steps {
                return Err(self.budget_exhausted(max_steps));
            }
            steps += 1;
            match self.step_unnamed(false) {
                Step::Polled { .. } | Step::Idle(StepOutcome::AdvancedTime { .. }) => {}
                Step::Idle(StepOutcome::Deadlock { pending }) => {
                    return Err(SimError::Deadlock { mono_ms: self.now_mono_ms(), pending })
                }
                Step::Idle(_) => return Err(SimError::Idle { mono_ms: self.now_mono_ms() }),
            }
        }
    }

    /// Steps until no task is left.
    pub fn run_to_completion(&self, max_steps: u64) -> Result<u64, SimError> {
        self.run_until(|| self.task_count() == 0, max_steps)
    }

    /// Runs every task and timer due within the next `duration_ms` of virtual time, then leaves
    /// the clock exactly `duration_ms` later. Tasks that wait with no timer are not an error
    /// here: a server idling for requests is normal. Bounded by [`RUN_FOR_MAX_STEPS`].
    pub fn run_for(&self, duration_ms: u64) -> Result<u64, SimError> {
        self.run_for_bounded(duration_ms, RUN_FOR_MAX_STEPS)
    }

    pub fn run_for_bounded(&self, duration_ms: u64, max_steps: u64) -> Result<u64, SimError> {
        let end_ms = self.now_mono_ms().saturating_add(duration_ms);
        let mut steps = 0;
        loop {
            let timer_due = self.inner.time.next_deadline_ms().is_some_and(|ms| ms <= end_ms);
            if self.ready_count() == 0 && !timer_due {
                self.inner.time.advance_to(end_ms);
                return Ok(steps);
            }
            if steps >= max_steps {
                return Err(self.budget_exhausted(max_steps));
            }
            steps += 1;
            self.step_unnamed(false);
        }
    }

    /// Runs `future` as a task of `node` until it completes and returns its output.
    pub fn block_on<T: Send + 'static>(
        &self,
        node: NodeId,
        name: impl Into<TaskName>,
        future: impl Future<Output = T> + Send + 'static,
        max_steps: u64,
    ) -> Result<T, SimError> {
        let output: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let slot = output.clone();
        self.spawn(
            node,
            name,
            async move {
                let value = future.await;
                *lock(&slot) = Some(value);
            }
            .boxed(),
        );
        self.run_until(|| lock(&output).is_some(), max_steps)?;
        let value = lock(&output).take();
        value.ok_or_else(|| self.budget_exhausted(max_steps))
    }

    fn budget_exhausted(&self, max_steps: u64) -> SimError {
        SimError::StepBudgetExhausted {
            max_steps,
            mono_ms: self.now_mono_ms(),
            pending: self.pending_tasks(),
        }
    }
}

/// What [`SimExecutor::step_unnamed`] did: [`StepOutcome`], with the name only if asked for.
enum Step {
    Polled {
        task: TaskId,
        name: Option<TaskName>,
        node: NodeId,
        completed: bool,
    },
    /// Nothing was polled: time advanced, or nothing is left, or a deadlock.
    Idle(StepOutcome),
}

/// A ready task taken out of its slot for polling, with its waker.
struct Picked {
    task: TaskId,
    slot: usize,
    name: Option<TaskName>,
    node: NodeId,
    waker: Waker,
    future: BoxFuture<'static, ()>,
}

/// Takes a uniformly chosen ready task out of its slot for polling (its name cloned only if
/// `named`).
fn pick_ready(state: &mut SchedState, named: bool) -> Option<Picked> {
    let ready_count = state.ready.len() as u64;
    if ready_count == 0 {
        return None;
    }
    let index = usize::try_from(state.sched.below(ready_count)).ok()?;
    let (task, slot) = state.ready.remove_nth(index)?;
    // Wakers only mark live tasks ready, and removal clears the ready mark, so a ready task
    // has a slot; only one task is polled at a time, so its future is there.
    let live = state.tasks.get_mut(task, slot).expect("a ready task is live");
    let future = live.future.take().expect("a ready task is not being polled");
    let waker = live.waker.take().expect("a task that is not being polled has its waker");
    let name = named.then(|| live.name.clone());
    let picked = Picked { task, slot, name, node: live.node, waker, future };
    state.polling = true;
    Some(picked)
}

fn spawn_locked(
    inner: &Arc<Inner>,
    state: &mut SchedState,
    node: NodeId,
    name: TaskName,
    future: BoxFuture<'static, ()>,
) -> TaskId {
    let task = state.next_task_id;
    state.next_task_id += 1;
    let slot = state.tasks.next_slot();
    let waker = Waker::from(Arc::new(TaskWaker { task, slot, inner: Arc::downgrade(inner) }));
    let filled = state.tasks.insert(TaskSlot {
        id: task,
        name,
        node,
        future: Some(future),
        waker: Some(waker),
    });
    assert_eq!(filled, slot, "task {task} goes where its waker points");
    // A new task is ready: its first poll starts it (once its node runs).
    if state.paused.contains(&node) {
        state.parked.insert(task, slot);
    } else {
        state.ready.insert(task, slot);
    }
    task
}

fn pending_locked(state: &SchedState) -> Vec<(String, NodeId)> {
    // In spawn order: task ids are handed out in order.
    let mut tasks: Vec<(TaskId, &TaskSlot)> = state.tasks.iter().map(|(_, t)| (t.id, t)).collect();
    tasks.sort_unstable_by_key(|(id, _)| *id);
    tasks.into_iter().map(|(_, task)| (task.name.to_string(), task.node)).collect()
}

/// Cleans up when a polled task panics: the task is gone and the executor is usable again.
struct PollGuard<'a> {
    inner: &'a Arc<Inner>,
    task: TaskId,
    slot: usize,
    armed: bool,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let removed = {
                let mut state = lock(&self.inner.sched);
                state.polling = false;
                state.ready.remove(&self.task);
                state.parked.remove(&self.task);
                state.tasks.remove(self.task, self.slot)
            };
            drop(removed);
        }
    }
}

/// One node's [`Executor`], bound to the incarnation that was current when it was made.
struct NodeExecutor {
    executor: SimExecutor,
    node: NodeId,
    incarnation: u64,
}

impl NodeExecutor {
    fn spawn_if_alive(&self, name: String, future: BoxFuture<'static, ()>) {
        let rejected = {
            let mut state = lock(&self.executor.inner.sched);
            let current = state.incarnations.get(&self.node).copied().unwrap_or(0);
            if current == self.incarnation {
                spawn_locked(&self.executor.inner, &mut state, self.node, name.into(), future);
                None
            } else {
                // A crashed process spawns nothing; the future is dropped unpolled.
                Some(future)
            }
        };
        drop(rejected);
    }
}

impl Executor for NodeExecutor {
    fn spawn(&self, name: String, task: BoxFuture<'static, ()>) {
        self.spawn_if_alive(name, task);
    }

    fn spawn_blocking(&self, name: String, work: Box<dyn FnOnce() + Send + 'static>) {
        // One scheduled step: the closure runs whole at its first poll, after the slow disk's
        // delay if one is drawn.
        let delay_ms = {
            let mut slow = lock(&self.executor.inner.slow_disk);
            let (prng, plan) = &mut *slow;
            if plan.delay_ms_max == 0 {
                0
            } else {
                // Two draws every time, so the stream's position never depends on the outcome.
                let slow = prng.below(plan.one_in.max(1)) == 0;
                let delay_ms = prng.range_inclusive(1, plan.delay_ms_max);
                if slow {
                    delay_ms
                } else {
                    0
                }
            }
        };
        if delay_ms == 0 {
            self.spawn_if_alive(name, async move { work() }.boxed());
            return;
        }
        let sleep = self.executor.sleep_until(self.executor.now_mono_ms() + delay_ms);
        self.spawn_if_alive(
            name,
            async move {
                sleep.await;
                work()
            }
            .boxed(),
        );
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        let delay_ms = {
            let mut prng = lock(&self.executor.inner.yield_delays);
            // Two draws every time, so the stream's position never depends on the outcome.
            let slow = prng.below(SLOW_YIELD_ONE_IN) == 0;
            let delay_ms = prng.range_inclusive(1, SLOW_YIELD_MS_MAX);
            if slow {
                delay_ms
            } else {
                0
            }
        };
        if delay_ms == 0 {
            return YieldNow { yielded: false }.boxed();
        }
        let deadline_ms = self.executor.now_mono_ms() + delay_ms;
        self.executor.sleep_until(deadline_ms).boxed()
    }
}

/// Pending once (waking itself at once), then ready: lets the scheduler run something else.
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl YieldNow {
    pub fn new() -> YieldNow {
        YieldNow { yielded: false }
    }
}

impl Default for YieldNow {
    fn default() -> Self {
        YieldNow::new()
    }
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use futures::channel::oneshot;
    use kvtablet_core::ledger::{Ledger, ResourceKind};
    use kvtablet_core::task::Task;

    use super::*;

    /// Spawns a mix of yielding and sleeping tasks on three nodes and returns the sequence of
    /// polled task names.
    fn polled_sequence(seed: u64) -> Vec<String> {
        let executor = SimExecutor::new(&Streams::new(seed));
        for node in 0..3u32 {
            let node_executor = executor.executor_for(node);
            let clock = executor.clock_for(node);
            for index in 0..4u64 {
                let yielder = node_executor.clone();
                let clock = clock.clone();
                node_executor.spawn(
                    format!("n{node}-t{index}"),
                    async move {
                        for round in 0..5u64 {
                            if (round + index) % 2 == 0 {
                                yielder.yield_now().await;
                            } else {
                                clock.sleep(1 + index).await;
                            }
                        }
                    }
                    .boxed(),
                );
            }
        }
        let mut sequence = Vec::new();
        for _ in 0..10_000 {
            match executor.step() {
                StepOutcome::Polled { name, .. } => sequence.push(name.to_string()),
                StepOutcome::AdvancedTime { to_mono_ms, .. } => {
                    sequence.push(format!("@{to_mono_ms}"))
                }
                StepOutcome::Idle => return sequence,
                StepOutcome::Deadlock { pending } => panic!("unexpected deadlock: {pending:?}"),
            }
        }
        panic!("the tasks should finish well within 10000 steps");
    }

    #[test]
    fn same_seed_same_schedule_different_seed_different_schedule() {
        let first = polled_sequence(1234);
        assert_eq!(first, polled_sequence(1234));
        assert_ne!(first, polled_sequence(1235));
        assert!(first.len() > 60, "every task is polled several times: {}", first.len());
    }

    #[test]
    fn time_jumps_to_the_earliest_timer_only_when_nothing_is_ready() {
        let executor = SimExecutor::new(&Streams::new(1));
        let clock = executor.clock_for(1);
        let woke_at = Arc::new(AtomicU64::new(0));
        let seen = woke_at.clone();
        let sleeper_clock = clock.clone();
        executor.spawn(
            1,
            "sleeper",
            async move {
                sleeper_clock.sleep(250).await;
                seen.store(sleeper_clock.now_mono_ms(), Ordering::SeqCst);
            }
            .boxed(),
        );
        let steps = executor.run_to_completion(100).expect("the sleeper finishes");
        assert_eq!(woke_at.load(Ordering::SeqCst), 250);
        assert_eq!(executor.now_mono_ms(), 250);
        assert_eq!(steps, 3, "poll, jump, poll");
    }

    #[test]
    fn deadlock_names_every_pending_task() {
        let executor = SimExecutor::new(&Streams::new(2));
        let (_keep_sender_alive, receiver) = oneshot::channel::<()>();
        executor.spawn(
            7,
            "waits-forever",
            async move {
                let _ = receiver.await;
            }
            .boxed(),
        );
        executor.spawn(8, "finishes", async {}.boxed());
        let error = executor.run_to_completion(100).expect_err("the waiter never wakes");
        match &error {
            SimError::Deadlock { pending, .. } => {
                assert_eq!(pending, &vec![("waits-forever".to_string(), 7)]);
            }
            other => panic!("expected a deadlock, got {other:?}"),
        }
        assert!(error.to_string().contains("waits-forever (node 7)"), "{error}");
    }

    #[test]
    fn kill_node_drops_its_tasks_and_stale_handles_cannot_spawn() {
        let executor = SimExecutor::new(&Streams::new(3));
        let ledger = Ledger::new();
        let doomed_executor = executor.executor_for(1);
        let polls = Arc::new(AtomicUsize::new(0));
        for index in 0..3 {
            let polls = polls.clone();
            let yielder = doomed_executor.clone();
            let _task = Task::spawn(
                &doomed_executor,
                &ledger,
                format!("loop-{index}"),
                async move {
                    loop {
                        polls.fetch_add(1, Ordering::SeqCst);
                        yielder.yield_now().await;
                    }
                }
                .boxed(),
            );
        }
        executor.spawn(2, "survivor", async {}.boxed());
        for _ in 0..20 {
            executor.step();
        }
        assert_eq!(executor.kill_node(1), 3);
        assert_eq!(ledger.count(ResourceKind::Task), 0, "dropped tasks release their entries");
        let polls_at_crash = polls.load(Ordering::SeqCst);
        doomed_executor.spawn("zombie".to_string(), async {}.boxed());
        assert_eq!(executor.task_count_of(1), 0, "the dead incarnation spawns nothing");
        executor.run_to_completion(100).expect("only the survivor may be left");
        assert_eq!(polls.load(Ordering::SeqCst), polls_at_crash, "no poll after the crash");

        // The restarted node spawns through a fresh handle.
        executor.executor_for(1).spawn("reborn".to_string(), async {}.boxed());
        assert_eq!(executor.task_count_of(1), 1);
    }

    #[test]
    fn a_task_can_kill_its_own_node() {
        let executor = SimExecutor::new(&Streams::new(4));
        let handle = executor.clone();
        executor.spawn(
            5,
            "suicide",
            async move {
                handle.kill_node(5);
                futures::future::pending::<()>().await;
            }
            .boxed(),
        );
        executor.run_to_completion(10).expect("the killed task is gone");
        assert_eq!(executor.task_count(), 0);
    }

    #[test]
    fn task_join_completes_when_the_task_is_killed() {
        let executor = SimExecutor::new(&Streams::new(5));
        let ledger = Ledger::new();
        let victim = Task::spawn(
            &executor.executor_for(1),
            &ledger,
            "victim",
            futures::future::pending::<()>().boxed(),
        );
        let joined = Arc::new(AtomicUsize::new(0));
        let flag = joined.clone();
        executor.spawn(
            2,
            "joiner",
            async move {
                victim.join().await;
                flag.store(1, Ordering::SeqCst);
            }
            .boxed(),
        );
        executor.run_for(10).expect("nothing is due");
        assert_eq!(joined.load(Ordering::SeqCst), 0);
        executor.kill_node(1);
        executor.run_to_completion(10).expect("the joiner finishes");
        assert_eq!(joined.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn spawn_blocking_runs_as_one_step_and_yield_now_yields_once() {
        let executor = SimExecutor::new(&Streams::new(6));
        let node_executor = executor.executor_for(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        node_executor.spawn_blocking(
            "blocking".to_string(),
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert!(matches!(executor.step(), StepOutcome::Polled { completed: true, .. }));
        assert_eq!(ran.load(Ordering::SeqCst), 1);

        let yielder = node_executor.clone();
        executor.spawn(1, "yielder", async move { yielder.yield_now().await }.boxed());
        assert!(matches!(executor.step(), StepOutcome::Polled { completed: false, .. }));
        assert_eq!(executor.ready_count(), 1, "yield_now wakes its own task");
        assert!(matches!(executor.step(), StepOutcome::Polled { completed: true, .. }));
        assert_eq!(executor.step(), StepOutcome::Idle);
    }

    #[test]
    fn run_until_respects_the_step_budget() {
        let executor = SimExecutor::new(&Streams::new(7));
        // Zero-time yields: `Executor::yield_now` sometimes takes virtual time, which would
        // let a spinner advance the clock.
        executor.spawn(
            1,
            "spinner",
            async move {
                loop {
                    YieldNow::new().await;
                }
            }
            .boxed(),
        );
        let error = executor.run_until(|| false, 50).expect_err("never true");
        assert!(matches!(error, SimError::StepBudgetExhausted { max_steps: 50, .. }), "{error:?}");
        assert_eq!(executor.run_until(|| true, 0), Ok(0));
        assert!(executor.run_for_bounded(10, 100).is_err(), "a spinner starves time");
    }

    #[test]
    fn run_for_stops_at_the_end_and_fires_timers_due_by_then() {
        let executor = SimExecutor::new(&Streams::new(8));
        let clock = executor.clock_for(1);
        let fired = Arc::new(AtomicUsize::new(0));
        for delay_ms in [10u64, 20, 30] {
            let clock = clock.clone();
            let fired = fired.clone();
            executor.spawn(
                1,
                format!("timer-{delay_ms}"),
                async move {
                    clock.sleep(delay_ms).await;
                    fired.fetch_add(1, Ordering::SeqCst);
                }
                .boxed(),
            );
        }
        executor.run_for(20).expect("bounded");
        assert_eq!(executor.now_mono_ms(), 20);
        assert_eq!(fired.load(Ordering::SeqCst), 2);
        executor.run_for(5).expect("bounded");
        assert_eq!(executor.now_mono_ms(), 25);
        assert_eq!(fired.load(Ordering::SeqCst), 2);
        executor.run_for(100).expect("bounded");
        assert_eq!(executor.now_mono_ms(), 125, "time passes even when idle");
        assert_eq!(fired.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn advance_to_wakes_sleepers_late_and_wall_offsets_apply() {
        let executor = SimExecutor::new(&Streams::new(9));
        let clock = executor.clock_for(1);
        let woke_at = Arc::new(AtomicU64::new(0));
        let seen = woke_at.clone();
        let sleeper_clock = clock.clone();
        executor.spawn(
            1,
            "sleeper",
            async move {
                sleeper_clock.sleep(100).await;
                seen.store(sleeper_clock.now_mono_ms(), Ordering::SeqCst);
            }
            .boxed(),
        );
        executor.step();
        assert_eq!(executor.advance_to(5_000), 5_000);
        assert_eq!(executor.advance_to(10), 5_000, "monotonic time never goes back");
        executor.run_to_completion(10).expect("the sleeper finishes");
        assert_eq!(woke_at.load(Ordering::SeqCst), 5_000);

        executor.set_wall_offset(1, -60_000);
        assert_eq!(clock.now_wall_ms(), DEFAULT_BASE_WALL_MS + 5_000 - 60_000);
        assert_eq!(executor.now_wall_ms(2), DEFAULT_BASE_WALL_MS + 5_000);
    }

    #[test]
    fn block_on_returns_the_output() {
        let executor = SimExecutor::new(&Streams::new(10));
        let clock = executor.clock_for(1);
        let value = executor
            .block_on(
                1,
                "compute",
                async move {
                    clock.sleep(7).await;
                    clock.now_mono_ms() * 2
                },
                100,
            )
            .expect("finishes");
        assert_eq!(value, 14);
    }

    #[test]
    fn a_panicking_task_leaves_the_executor_usable() {
        let executor = SimExecutor::new(&Streams::new(11));
        executor.spawn(1, "panics", async { panic!("deliberate") }.boxed());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.step()));
        assert!(outcome.is_err());
        assert_eq!(executor.task_count(), 0);
        executor.spawn(1, "after", async {}.boxed());
        assert_eq!(executor.run_to_completion(10), Ok(1));
    }

    #[test]
    fn late_wakes_of_finished_tasks_are_ignored() {
        let executor = SimExecutor::new(&Streams::new(12));
        let stolen: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let slot = stolen.clone();
        executor.spawn(
            1,
            "leaks-its-waker",
            futures::future::poll_fn(move |cx| {
                *lock(&slot) = Some(cx.waker().clone());
                Poll::Ready(())
            })
            .boxed(),
        );
        executor.run_to_completion(10).expect("finishes");
        let waker = lock(&stolen).take().expect("the task stored its waker");
        waker.wake();
        assert_eq!(executor.ready_count(), 0);
        assert_eq!(executor.step(), StepOutcome::Idle);
    }

    #[test]
    fn a_paused_node_runs_nothing_until_it_resumes() {
        let executor = SimExecutor::new(&Streams::new(12));
        let counter = Arc::new(Mutex::new(0u32));
        for node in [1, 2] {
            let clock = executor.clock_for(node);
            let counter = counter.clone();
            executor.spawn(
                node,
                format!("ticker {node}"),
                async move {
                    for _ in 0..10 {
                        clock.sleep(10).await;
                        *lock(&counter) += node;
                    }
                }
                .boxed(),
            );
        }
        executor.pause_node(2);
        assert!(executor.is_paused(2));
        executor.run_for(50).expect("runs");
        assert_eq!(*lock(&counter), 5, "only node 1 ticked: {}", *lock(&counter));
        let spawned = counter.clone();
        executor.spawn(2, "spawned while paused", async move { *lock(&spawned) += 100 }.boxed());
        executor.run_for(1).expect("runs");
        assert!(*lock(&counter) < 100, "a task spawned on a paused node waits");
        executor.resume_node(2);
        executor.run_to_completion(10_000).expect("everything finishes after the resume");
        assert_eq!(*lock(&counter), 10 + 20 + 100);
    }
}
