//! The run trace: what happened, when and where, plus a hash that fingerprints the whole run.
//!
//! Every event is rendered as one line, `"{mono_ms} n{node} {kind} {detail}"`, and a running
//! 64-bit FNV-1a hash is chained over every line (with a trailing newline), whatever the mode.
//! Two runs with the same hash recorded the same events in the same order, so a replay can be
//! checked for determinism without storing or comparing lines.
//!
//! Events come in two classes, chosen by the method the caller records them with:
//! - [`Trace::record_transition`]: a change of state worth reading in a failure report (a
//!   leader elected, a node crashed, a write acknowledged);
//! - [`Trace::record_detail`]: everything else (a message delivered, a task step).
//!
//! The mode decides which lines are kept; the hash never depends on the mode:
//! - [`TraceMode::HashOnly`] keeps no line (sweeps over many seeds);
//! - [`TraceMode::Short`] keeps transitions only;
//! - [`TraceMode::Full`] keeps every event.

use std::fmt::{self, Display, Write as _};
use std::sync::{Arc, Mutex};

use kvtablet_core::message::NodeId;

use crate::clock::lock;
use crate::prng::{fnv1a64_extend, FNV1A64_OFFSET};

/// Which lines a [`Trace`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TraceMode {
    /// Only the hash and the event count.
    HashOnly,
    /// Lines of transitions.
    #[default]
    Short,
    /// Lines of every event.
    Full,
}

/// A running FNV-1a hash that text can be formatted into without building a `String`.
#[derive(Debug, Clone, Copy)]
struct FnvWriter {
    hash: u64,
}

impl fmt::Write for FnvWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.hash = fnv1a64_extend(self.hash, text.as_bytes());
        Ok(())
    }
}

/// The events of one run. Not shared by itself; see [`SharedTrace`].
#[derive(Debug, Clone)]
pub struct Trace {
    mode: TraceMode,
    hash: FnvWriter,
    event_count: u64,
    lines: Vec<String>,
}

impl Trace {
    pub fn new(mode: TraceMode) -> Trace {
        Trace { mode, hash: FnvWriter { hash: FNV1A64_OFFSET }, event_count: 0, lines: Vec::new() }
    }

    pub fn mode(&self) -> TraceMode {
        self.mode
    }

    /// Records a change of state: kept in `Short` and `Full` modes.
    pub fn record_transition(
        &mut self,
        mono_ms: u64,
        node: NodeId,
        kind: &str,
        detail: impl Display,
    ) {
        let keep = matches!(self.mode, TraceMode::Short | TraceMode::Full);
        self.record(keep, mono_ms, node, kind, detail);
    }

    /// Records a detail: kept in `Full` mode only. A line that is not kept is formatted
    /// straight into the hash, so passing `format_args!(..)` allocates nothing in `HashOnly` and
    /// `Short` modes.
    pub fn record_detail(&mut self, mono_ms: u64, node: NodeId, kind: &str, detail: impl Display) {
        let keep = self.mode == TraceMode::Full;
        self.record(keep, mono_ms, node, kind, detail);
    }

    fn record(&mut self, keep: bool, mono_ms: u64, node: NodeId, kind: &str, detail: impl Display) {
        self.event_count += 1;
        if keep {
            let mut line = String::new();
            // Writing into a String cannot fail.
            let _ = write_event(&mut line, mono_ms, node, kind, &detail);
            let _ = self.hash.write_str(&line);
            self.lines.push(line);
        } else {
            let _ = write_event(&mut self.hash, mono_ms, node, kind, &detail);
        }
        let _ = self.hash.write_char('\n');
    }

    /// The FNV-1a hash of every event line so far, each followed by a newline.
    pub fn hash(&self) -> u64 {
        self.hash.hash
    }

    /// Events recorded so far, kept or not.
    pub fn event_count(&self) -> u64 {
        self.event_count
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The last `count` kept lines (fewer if fewer were kept).
    pub fn last_lines(&self, count: usize) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(count)..]
    }
}

fn write_event(
    out: &mut impl fmt::Write,
    mono_ms: u64,
    node: NodeId,
    kind: &str,
    detail: &impl Display,
) -> fmt::Result {
    write!(out, "{mono_ms} n{node} {kind} {detail}")
}

/// A [`Trace`] shared by the components of one simulation. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SharedTrace {
    trace: Arc<Mutex<Trace>>,
}

impl SharedTrace {
    pub fn new(mode: TraceMode) -> SharedTrace {
        SharedTrace { trace: Arc::new(Mutex::new(Trace::new(mode))) }
    }

    pub fn record_transition(&self, mono_ms: u64, node: NodeId, kind: &str, detail: impl Display) {
        lock(&self.trace).record_transition(mono_ms, node, kind, detail);
    }

    pub fn record_detail(&self, mono_ms: u64, node: NodeId, kind: &str, detail: impl Display) {
        lock(&self.trace).record_detail(mono_ms, node, kind, detail);
    }

    pub fn hash(&self) -> u64 {
        lock(&self.trace).hash()
    }

    pub fn event_count(&self) -> u64 {
        lock(&self.trace).event_count()
    }

    pub fn lines(&self) -> Vec<String> {
        lock(&self.trace).lines().to_vec()
    }

    pub fn last_lines(&self, count: usize) -> Vec<String> {
        lock(&self.trace).last_lines(count).to_vec()
    }

    /// A copy of the trace as it is now.
    pub fn snapshot(&self) -> Trace {
        lock(&self.trace).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::fnv1a64;

    fn record_sample(trace: &mut Trace) {
        trace.record_transition(0, 1, "start", "node up");
        trace.record_detail(5, 1, "msg", format_args!("put_kv to {}", 2));
        trace.record_transition(12, 2, "leader", "bucket t1-b0 epoch 3");
        trace.record_detail(13, 2, "msg", "");
    }

    #[test]
    fn the_hash_is_independent_of_the_mode() {
        let hashes: Vec<u64> = [TraceMode::HashOnly, TraceMode::Short, TraceMode::Full]
            .into_iter()
            .map(|mode| {
                let mut trace = Trace::new(mode);
                record_sample(&mut trace);
                assert_eq!(trace.event_count(), 4);
                trace.hash()
            })
            .collect();
        assert_eq!(hashes[0], hashes[1]);
        assert_eq!(hashes[1], hashes[2]);
    }

    #[test]
    fn the_hash_chains_fnv1a_over_every_line() {
        let mut trace = Trace::new(TraceMode::Full);
        record_sample(&mut trace);
        let text: String = trace.lines().iter().map(|line| format!("{line}\n")).collect();
        assert_eq!(trace.hash(), fnv1a64(text.as_bytes()));
        assert_eq!(Trace::new(TraceMode::Full).hash(), fnv1a64(b""));
    }

    #[test]
    fn modes_keep_the_documented_lines() {
        let mut short = Trace::new(TraceMode::Short);
        record_sample(&mut short);
        assert_eq!(short.lines(), ["0 n1 start node up", "12 n2 leader bucket t1-b0 epoch 3"]);

        let mut full = Trace::new(TraceMode::Full);
        record_sample(&mut full);
        assert_eq!(full.lines().len(), 4);
        assert_eq!(full.lines()[1], "5 n1 msg put_kv to 2");
        assert_eq!(full.last_lines(2), &full.lines()[2..]);
        assert_eq!(full.last_lines(100).len(), 4);

        let mut hash_only = Trace::new(TraceMode::HashOnly);
        record_sample(&mut hash_only);
        assert!(hash_only.lines().is_empty());
        assert!(hash_only.last_lines(3).is_empty());
    }

    #[test]
    fn any_difference_changes_the_hash() {
        let mut a = Trace::new(TraceMode::HashOnly);
        let mut b = Trace::new(TraceMode::HashOnly);
        a.record_detail(1, 1, "x", "ab");
        a.record_detail(1, 1, "x", "c");
        b.record_detail(1, 1, "x", "a");
        b.record_detail(1, 1, "x", "bc");
        assert_ne!(a.hash(), b.hash(), "line boundaries are part of the hash");
        let mut c = Trace::new(TraceMode::HashOnly);
        c.record_detail(2, 1, "x", "ab");
        c.record_detail(1, 1, "x", "c");
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn many_events_in_hash_mode_store_nothing() {
        let mut trace = Trace::new(TraceMode::HashOnly);
        for step in 0..100_000u64 {
            trace.record_detail(step, (step % 5) as NodeId, "step", format_args!("task {step}"));
        }
        assert_eq!(trace.event_count(), 100_000);
        assert!(trace.lines().is_empty());
    }

    #[test]
    fn shared_trace_records_through_clones() {
        let shared = SharedTrace::new(TraceMode::Full);
        let other = shared.clone();
        shared.record_transition(1, 1, "a", "x");
        other.record_detail(2, 2, "b", "y");
        assert_eq!(shared.lines(), vec!["1 n1 a x", "2 n2 b y"]);
        assert_eq!(shared.last_lines(1), vec!["2 n2 b y"]);
        assert_eq!(shared.snapshot().hash(), other.hash());
        assert_eq!(shared.event_count(), 2);
    }
}
