//! The prefetch window's bookkeeping, kept under the fetcher's one lock: which segments are
//! claimed by a download, which downloads completed (in completion order) and with what, and
//! the gauges. No I/O happens here; files leave the window only as values the caller drops
//! after letting go of the lock.
//!
//! Rules:
//! - A slot (in the ledger as `PrefetchSlot`) is held from the claim of a segment until the
//!   consumer takes it, or the window is stopped: `downloading + completed <= prefetch_num`.
//! - `in_flight <= download_threads`: a claim, and the consumer's own fallback download, wait
//!   for a free download.
//! - A completed download is found by its segment id, never by its place in the completion
//!   order (downloads finish out of order).
//! - A result for a slot no longer in the window (stopped meanwhile) is abandoned: its file
//!   goes back to the caller to delete.

use std::collections::{BTreeMap, VecDeque};

use crate::ledger::{Ledger, LedgerEntry, ResourceKind};
use crate::recovery::download_retry::worth_another_attempt;
use crate::recovery::fetcher_config::FetcherConfig;
use crate::recovery::remote_log_fetcher::FetchError;
use crate::recovery::temp_file::TempFile;

/// What a simulator or a progress report reads of a fetcher, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetcherGauges {
    /// Downloaded, not yet handed to the consumer.
    pub ready: usize,
    pub ready_max: usize,
    /// Downloads running (prefetches and the consumer's fallback).
    pub in_flight: usize,
    pub in_flight_max: usize,
    /// Prefetch slots held: downloading, or completed and not yet taken.
    pub window: usize,
    pub window_max: usize,
    /// Handed to the consumer so far.
    pub segments_consumed: usize,
    /// Bytes of the downloads that completed, and of every segment to replay.
    pub bytes_downloaded: u64,
    pub bytes_total: u64,
}

/// One segment's place in the window.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Its position in the fetcher's list.
    pub(crate) index: usize,
    pub(crate) segment_id: String,
    pub(crate) status: SlotStatus,
    /// Synchronous fallback downloads made for it; at most one.
    fallbacks: u32,
    _entry: LedgerEntry,
}

impl Slot {
    /// The downloaded file, once the slot (and its ledger entry) is released.
    pub(crate) fn into_file(self) -> Option<TempFile> {
        match self.status {
            SlotStatus::Ready(file) => Some(file),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum SlotStatus {
    Downloading,
    Ready(TempFile),
    Failed(FetchError),
    /// The download ended without a result: its task was aborted or dropped.
    Cancelled,
}

/// A download task's next step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Download the segment at this index (the slot and the download are taken).
    Segment(usize),
    /// The window or the downloads are full: wait for a change.
    Wait,
    /// Every segment is claimed, or the window was stopped.
    Done,
}

/// The consumer's next step for the segment it wants.
#[derive(Debug)]
pub(crate) enum Take {
    /// Its slot, released to the consumer, with the file.
    Ready(Slot),
    /// Download the segment at `index` itself, now, with at most `attempts_max` attempts (its
    /// slot and a download are taken).
    Fallback {
        index: usize,
        attempts_max: u32,
    },
    /// It failed for good; the slot is the caller's to release.
    Failed(Slot, FetchError),
    Wait,
}

pub(crate) struct FetchWindow {
    config: FetcherConfig,
    segment_ids: Vec<String>,
    ledger: Ledger,
    owner: String,
    next_claim: usize,
    downloading: BTreeMap<usize, Slot>,
    /// In the order the downloads completed.
    completed: VecDeque<Slot>,
    in_flight: usize,
    workers_alive: usize,
    stopped: bool,
    gauges: FetcherGauges,
}

impl FetchWindow {
    pub(crate) fn new(
        config: FetcherConfig,
        segment_ids: Vec<String>,
        bytes_total: u64,
        ledger: Ledger,
        owner: String,
    ) -> FetchWindow {
        let gauges = FetcherGauges { bytes_total, ..FetcherGauges::default() };
        FetchWindow {
            config,
            segment_ids,
            ledger,
            owner,
            next_claim: 0,
            downloading: BTreeMap::new(),
            completed: VecDeque::new(),
            in_flight: 0,
            workers_alive: 0,
            stopped: false,
            gauges,
        }
    }

    pub(crate) fn gauges(&self) -> FetcherGauges {
        self.gauges
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn worker_started(&mut self) {
        self.workers_alive += 1;
    }

    pub(crate) fn worker_ended(&mut self) {
        assert!(self.workers_alive > 0, "a download task ended twice");
        self.workers_alive -= 1;
    }

    /// The next segment for a download task. `unbounded` is the mutant that forgets the
    /// window's bound.
    pub(crate) fn claim(&mut self, unbounded: bool) -> Claim {
        if self.stopped || self.next_claim >= self.segment_ids.len() {
            return Claim::Done;
        }
        let window_full = self.window() >= self.config.prefetch_num && !unbounded;
        if window_full || self.in_flight >= self.config.download_threads {
            return Claim::Wait;
        }
        let index = self.next_claim;
        self.next_claim += 1;
        self.start_download(self.new_slot(index));
        Claim::Segment(index)
    }

    /// The consumer's step for the segment at `index`. `by_position` is the mutant that takes
    /// the first completed download, whatever its segment.
    pub(crate) fn take(&mut self, index: usize, by_position: bool) -> Take {
        let wanted = &self.segment_ids[index];
        let found = if by_position {
            (!self.completed.is_empty()).then_some(0)
        } else {
            self.completed.iter().position(|slot| slot.segment_id == *wanted)
        };
        let Some(position) = found else {
            let downloading = self.downloading.contains_key(&index);
            let will_be_claimed = index >= self.next_claim && self.workers_alive > 0;
            if downloading || will_be_claimed || self.in_flight >= self.config.download_threads {
                return Take::Wait;
            }
            // Nobody downloads it and no download task is left to claim it (they ended, or
            // were dropped; or the window was stopped): the consumer downloads it itself.
            self.next_claim = self.next_claim.max(index + 1);
            let mut slot = self.new_slot(index);
            slot.fallbacks = 1;
            self.start_download(slot);
            return Take::Fallback { index, attempts_max: self.config.retry.attempts_max };
        };
        let slot = &self.completed[position];
        let attempts_max = match &slot.status {
            SlotStatus::Ready(_) => {
                let slot = self.remove_completed(position);
                self.gauges.segments_consumed += 1;
                self.refresh();
                return Take::Ready(slot);
            }
            SlotStatus::Failed(error) if slot.fallbacks == 0 && worth_another_attempt(error) => 1,
            SlotStatus::Cancelled if slot.fallbacks == 0 => self.config.retry.attempts_max,
            SlotStatus::Failed(error) => {
                let error = error.clone();
                return Take::Failed(self.remove_completed(position), error);
            }
            SlotStatus::Cancelled => {
                let error = FetchError::Cancelled { segment_id: slot.segment_id.clone() };
                return Take::Failed(self.remove_completed(position), error);
            }
            SlotStatus::Downloading => unreachable!("a completed slot is not downloading"),
        };
        // One synchronous download, in the slot it already holds: a failed prefetch gets one
        // more attempt (it made its own), a cancelled one the whole retry.
        if self.in_flight >= self.config.download_threads {
            return Take::Wait;
        }
        let mut slot = self.remove_completed(position);
        slot.status = SlotStatus::Downloading;
        slot.fallbacks += 1;
        let index = slot.index;
        self.start_download(slot);
        Take::Fallback { index, attempts_max }
    }

    /// The outcome of the download of `index`. A slot no longer in the window (stopped
    /// meanwhile) abandons it: the file, if any, is returned for the caller to delete.
    pub(crate) fn record(
        &mut self,
        index: usize,
        outcome: Result<TempFile, FetchError>,
    ) -> Option<TempFile> {
        let Some(mut slot) = self.downloading.remove(&index) else {
            return outcome.ok();
        };
        slot.status = match outcome {
            Ok(file) => {
                self.gauges.bytes_downloaded += file.size_bytes();
                SlotStatus::Ready(file)
            }
            Err(error) => SlotStatus::Failed(error),
        };
        self.completed.push_back(slot);
        self.refresh();
        None
    }

    /// The download of `index` has ended (after its `record`, or without one: then the slot
    /// is cancelled).
    pub(crate) fn download_ended(&mut self, index: usize) {
        assert!(self.in_flight > 0, "a download ended twice");
        self.in_flight -= 1;
        if let Some(mut slot) = self.downloading.remove(&index) {
            slot.status = SlotStatus::Cancelled;
            self.completed.push_back(slot);
        }
        self.refresh();
    }

    /// No further claims; every slot leaves the window (for the caller to drop, which deletes
    /// the downloaded files). Downloads still in flight find their slot gone.
    pub(crate) fn stop(&mut self) -> Vec<Slot> {
        self.stopped = true;
        let mut slots: Vec<Slot> = std::mem::take(&mut self.downloading).into_values().collect();
        slots.extend(self.completed.drain(..));
        self.refresh();
        assert_eq!(self.window(), 0, "a stopped window holds no slot");
        slots
    }

    fn new_slot(&self, index: usize) -> Slot {
        let segment_id = self.segment_ids[index].clone();
        let entry = self
            .ledger
            .register(ResourceKind::PrefetchSlot, format!("{} slot {segment_id}", self.owner));
        Slot { index, segment_id, status: SlotStatus::Downloading, fallbacks: 0, _entry: entry }
    }

    fn start_download(&mut self, slot: Slot) {
        let previous = self.downloading.insert(slot.index, slot);
        assert!(previous.is_none(), "a segment downloaded twice at once");
        self.in_flight += 1;
        self.refresh();
    }

    fn remove_completed(&mut self, position: usize) -> Slot {
        let slot = self.completed.remove(position).expect("the position was just found");
        self.refresh();
        slot
    }

    fn window(&self) -> usize {
        self.downloading.len() + self.completed.len()
    }

    fn refresh(&mut self) {
        let ready = self.completed.iter().filter(|s| matches!(s.status, SlotStatus::Ready(_)));
        let gauges = &mut self.gauges;
        gauges.ready = ready.count();
        gauges.in_flight = self.in_flight;
        gauges.window = self.downloading.len() + self.completed.len();
        gauges.ready_max = gauges.ready_max.max(gauges.ready);
        gauges.in_flight_max = gauges.in_flight_max.max(gauges.in_flight);
        gauges.window_max = gauges.window_max.max(gauges.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::RemoteError;

    fn window(prefetch_num: usize, download_threads: usize, segments: usize) -> FetchWindow {
        let config = FetcherConfig { prefetch_num, download_threads, ..FetcherConfig::DEFAULT };
        let ids = (0..segments).map(|i| format!("e1-{i:020}")).collect();
        FetchWindow::new(config, ids, 0, Ledger::new(), "test".into())
    }

    fn transient(index: usize) -> FetchError {
        let source = RemoteError::Transient("flaky".into());
        FetchError::Download { segment_id: format!("e1-{index:020}"), attempts: 5, source }
    }

    #[test]
    fn claims_stop_at_the_download_limit_and_then_at_the_window() {
        let mut window = window(3, 2, 10);
        window.worker_started();
        assert_eq!(window.claim(false), Claim::Segment(0));
        assert_eq!(window.claim(false), Claim::Segment(1));
        assert_eq!(window.claim(false), Claim::Wait, "two downloads at most");
        assert!(window.record(0, Err(transient(0))).is_none());
        window.download_ended(0);
        assert_eq!(window.claim(false), Claim::Segment(2));
        assert_eq!(window.claim(false), Claim::Wait, "three slots at most");
        assert_eq!(window.gauges().window_max, 3);
        assert_eq!(window.gauges().in_flight_max, 2);
    }

    #[test]
    fn a_download_that_ends_without_a_result_is_cancelled_and_falls_back_once() {
        let mut window = window(2, 1, 2);
        window.worker_started();
        assert_eq!(window.claim(false), Claim::Segment(0));
        window.download_ended(0);
        match window.take(0, false) {
            Take::Fallback { index: 0, attempts_max: 5 } => {}
            other => panic!("{other:?}"),
        }
        window.download_ended(0);
        match window.take(0, false) {
            Take::Failed(slot, FetchError::Cancelled { .. }) => assert_eq!(slot.index, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_prefetch_gets_one_more_attempt_and_a_final_failure_ends_it() {
        let mut window = window(2, 2, 2);
        window.worker_started();
        assert_eq!(window.claim(false), Claim::Segment(0));
        assert!(window.record(0, Err(transient(0))).is_none());
        window.download_ended(0);
        assert!(matches!(window.take(0, false), Take::Fallback { index: 0, attempts_max: 1 }));
        assert!(window.record(0, Err(transient(0))).is_none());
        window.download_ended(0);
        assert!(matches!(window.take(0, false), Take::Failed(_, FetchError::Download { .. })));
    }

    #[test]
    fn the_consumer_downloads_itself_when_no_download_task_is_left() {
        let mut window = window(2, 2, 3);
        assert!(matches!(window.take(0, false), Take::Fallback { index: 0, attempts_max: 5 }));
        assert!(matches!(window.take(0, false), Take::Wait), "one download per segment");
    }

    #[test]
    fn a_stopped_window_releases_every_slot_and_abandons_late_results() {
        let ledger = Ledger::new();
        let config = FetcherConfig::DEFAULT;
        let ids = (0..4).map(|i| format!("s{i}")).collect();
        let mut window = FetchWindow::new(config, ids, 0, ledger.clone(), "test".into());
        window.worker_started();
        assert_eq!(window.claim(false), Claim::Segment(0));
        assert_eq!(window.claim(false), Claim::Segment(1));
        assert_eq!(ledger.count(ResourceKind::PrefetchSlot), 2);
        let slots = window.stop();
        assert_eq!(slots.len(), 2);
        drop(slots);
        assert_eq!(ledger.count(ResourceKind::PrefetchSlot), 0);
        assert_eq!(window.claim(false), Claim::Done);
        assert!(window.record(1, Err(transient(1))).is_none());
        window.download_ended(1);
        window.download_ended(0);
        assert_eq!(window.gauges().window, 0);
        assert_eq!(window.gauges().in_flight, 0);
    }
}
