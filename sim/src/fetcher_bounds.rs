//! The bounds of recovery's remote-log fetchers, read from the leak ledger at any instant:
//! what every live fetcher holds (prefetch slots, temporary files, download tasks and the
//! blocking writes of its downloads) against its configuration. The ledger names each of them
//! after the fetcher (`remote-log-fetcher {temp_dir}`), so the check needs no handle on a
//! fetcher that core built inside a recovery: it holds for fetchers the simulator never sees.
//!
//! What it bounds, per fetcher:
//! - prefetch slots (downloading, or downloaded and not yet taken): at most `prefetch_num`;
//! - temporary files: at most `prefetch_num + 1` (the window's, and the segment the consumer
//!   holds after its slot was released);
//! - download tasks, and downloads writing their file at once: at most `download_threads`
//!   each.
//!
//! The fetcher's own gauges (`FetcherProbe`) count the downloads in flight exactly (a remote
//! read is in flight before its write starts); where the simulator holds the fetcher (the
//! fetcher tests), they are checked too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kvtablet_core::ledger::{Ledger, LedgerChange, ResourceKind};
use kvtablet_core::recovery::{FetcherConfig, FetcherGauges};

/// How every ledger entry of a fetcher begins (`RemoteLogFetcher::new`'s owner label).
pub const FETCHER_OWNER_PREFIX: &str = "remote-log-fetcher ";

/// What one fetcher holds at one instant, from the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetcherHoldings {
    pub slots: usize,
    pub temp_files: usize,
    pub download_tasks: usize,
    pub writes: usize,
}

/// Every live fetcher's holdings, by its owner label (`remote-log-fetcher {temp_dir}`).
/// Cheap when no fetcher holds a slot or a file: one look at those two kinds' owners.
pub fn holdings(ledger: &Ledger) -> BTreeMap<String, FetcherHoldings> {
    let mut by_fetcher: BTreeMap<String, FetcherHoldings> = BTreeMap::new();
    // Tasks are many (every request and background loop): read only when a fetcher holds a
    // slot or a file, which a snapshot's checkpoint files alone do not make so.
    let fetcher_holds = ledger
        .any_live_owner(&[ResourceKind::PrefetchSlot, ResourceKind::TempFile], |owner| {
            owner.starts_with(FETCHER_OWNER_PREFIX)
        });
    if !fetcher_holds {
        return by_fetcher;
    }
    let kinds = [ResourceKind::PrefetchSlot, ResourceKind::TempFile, ResourceKind::Task];
    ledger.for_each_live_owner(&kinds, |kind, owner| {
        count(&mut by_fetcher, kind, owner, LedgerChange::Registered);
    });
    reportable(by_fetcher)
}

/// What the bounds look at: nothing while no fetcher holds a slot or a file (a write or a
/// download task alone is the tail of a fetcher that is ending), else the fetchers that hold
/// something besides download tasks.
fn reportable(
    mut by_fetcher: BTreeMap<String, FetcherHoldings>,
) -> BTreeMap<String, FetcherHoldings> {
    if !by_fetcher.values().any(|held| held.slots + held.temp_files > 0) {
        by_fetcher.clear();
    }
    by_fetcher.retain(|_, held| held.holds_any());
    by_fetcher
}

impl FetcherHoldings {
    /// Download tasks of a fetcher that holds neither a slot nor a file nor a write are idle
    /// or ending.
    fn holds_any(&self) -> bool {
        self.slots + self.temp_files + self.writes > 0
    }

    fn is_empty(&self) -> bool {
        *self == FetcherHoldings::default()
    }

    fn counter(&mut self, counted: Counted) -> &mut usize {
        match counted {
            Counted::Slot => &mut self.slots,
            Counted::TempFile => &mut self.temp_files,
            Counted::DownloadTask => &mut self.download_tasks,
            Counted::Write => &mut self.writes,
        }
    }
}

/// Counts one ledger entry into (or, released, out of) its fetcher's holdings; entries that
/// are not a fetcher's change nothing. The one rule by which both [`holdings`] and
/// [`FetcherTally`] attribute an entry.
fn count(
    by_fetcher: &mut BTreeMap<String, FetcherHoldings>,
    kind: ResourceKind,
    owner: &str,
    change: LedgerChange,
) {
    let Some((fetcher, rest)) = fetcher_of(owner) else { return };
    let counted = match kind {
        ResourceKind::PrefetchSlot => Counted::Slot,
        ResourceKind::TempFile => Counted::TempFile,
        ResourceKind::Task if rest.starts_with(" download ") => Counted::DownloadTask,
        ResourceKind::Task if rest.starts_with(" write ") => Counted::Write,
        _ => return,
    };
    match change {
        LedgerChange::Registered => {
            if !by_fetcher.contains_key(fetcher) {
                by_fetcher.insert(fetcher.to_string(), FetcherHoldings::default());
            }
            *by_fetcher.get_mut(fetcher).expect("inserted above").counter(counted) += 1;
        }
        LedgerChange::Released => {
            let Some(held) = by_fetcher.get_mut(fetcher) else { return };
            let counter = held.counter(counted);
            *counter = counter.saturating_sub(1);
            if held.is_empty() {
                by_fetcher.remove(fetcher);
            }
        }
    }
}

/// Which of a fetcher's holdings an entry counts in.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Slot,
    TempFile,
    DownloadTask,
    Write,
}

/// Every fetcher's holdings kept up to date from the ledger's changes (a [`LedgerObserver`]),
/// so that a check at every scheduling step costs nothing while no fetcher's entries moved,
/// instead of a walk over every live task. Equal to [`holdings`] at every instant.
///
/// [`LedgerObserver`]: kvtablet_core::ledger::LedgerObserver
#[derive(Debug, Default)]
pub struct FetcherTally {
    state: Mutex<TallyState>,
}

#[derive(Debug, Default)]
struct TallyState {
    by_fetcher: BTreeMap<String, FetcherHoldings>,
    /// Whether a fetcher's entry moved since the last [`FetcherTally::take_changed`].
    changed: bool,
}

impl FetcherTally {
    /// A tally of `ledger`'s fetchers, kept by the ledger's one observer.
    pub fn attach(ledger: &Ledger) -> Arc<FetcherTally> {
        let tally = Arc::new(FetcherTally::default());
        let kept = tally.clone();
        ledger.observe(Arc::new(move |kind, owner, change| {
            if owner.starts_with(FETCHER_OWNER_PREFIX) {
                let mut state = lock(&kept.state);
                count(&mut state.by_fetcher, kind, owner, change);
                state.changed = true;
            }
        }));
        tally
    }

    /// The holdings as [`holdings`] reads them from the ledger, if a fetcher's entry moved
    /// since the last call; `None` otherwise.
    pub fn take_changed(&self) -> Option<BTreeMap<String, FetcherHoldings>> {
        let mut state = lock(&self.state);
        if !std::mem::take(&mut state.changed) {
            return None;
        }
        Some(reportable(state.by_fetcher.clone()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The fetcher an entry's owner label belongs to (`remote-log-fetcher {temp_dir}`), and what
/// follows that label.
fn fetcher_of(owner: &str) -> Option<(&str, &str)> {
    let after = owner.strip_prefix(FETCHER_OWNER_PREFIX)?;
    // The temporary directory has no space in it; the label ends where the first space is.
    let end = FETCHER_OWNER_PREFIX.len() + after.find(' ').unwrap_or(after.len());
    Some((&owner[..end], &owner[end..]))
}

/// The bounds `config` sets that some live fetcher breaks now, as violations.
pub fn violations(ledger: &Ledger, config: FetcherConfig) -> Vec<String> {
    violations_of(holdings(ledger), config)
}

/// The bounds `config` sets that the given holdings break, as violations.
pub fn violations_of(
    holdings: BTreeMap<String, FetcherHoldings>,
    config: FetcherConfig,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (owner, held) in holdings {
        let mut broken = Vec::new();
        if held.slots > config.prefetch_num {
            broken.push(format!(
                "{} prefetch slots (prefetch-num {})",
                held.slots, config.prefetch_num
            ));
        }
        if held.temp_files > config.prefetch_num + 1 {
            broken.push(format!(
                "{} temporary files (prefetch-num {} + the consumer's)",
                held.temp_files, config.prefetch_num
            ));
        }
        if held.download_tasks > config.download_threads {
            broken.push(format!(
                "{} download tasks (download-threads {})",
                held.download_tasks, config.download_threads
            ));
        }
        if held.writes > config.download_threads {
            broken.push(format!(
                "{} downloads writing at once (download-threads {})",
                held.writes, config.download_threads
            ));
        }
        if !broken.is_empty() {
            problems.push(format!("{owner} holds {}", broken.join(", ")));
        }
    }
    problems
}

/// The bounds `config` sets that a fetcher's own gauges break, as violations.
pub fn gauge_violations(gauges: &FetcherGauges, config: FetcherConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if gauges.ready > config.prefetch_num {
        problems.push(format!(
            "remote-log fetcher has {} segments downloaded and not taken (prefetch-num {})",
            gauges.ready, config.prefetch_num
        ));
    }
    if gauges.window > config.prefetch_num {
        problems.push(format!(
            "remote-log fetcher holds {} prefetch slots (prefetch-num {})",
            gauges.window, config.prefetch_num
        ));
    }
    if gauges.in_flight > config.download_threads {
        problems.push(format!(
            "remote-log fetcher runs {} downloads at once (download-threads {})",
            gauges.in_flight, config.download_threads
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetcher_within_its_window_breaks_nothing_and_one_beyond_it_is_named() {
        let ledger = Ledger::new();
        let config =
            FetcherConfig { prefetch_num: 2, download_threads: 1, ..FetcherConfig::DEFAULT };
        let owner = "remote-log-fetcher log/t1-b0/tmp/remote-log-recovery-ab";
        let mut held = vec![
            ledger.register(ResourceKind::PrefetchSlot, owner),
            ledger.register(ResourceKind::PrefetchSlot, owner),
            ledger.register(ResourceKind::TempFile, format!("{owner} file x/1.log")),
            ledger.register(ResourceKind::Task, format!("{owner} download 0")),
            ledger.register(ResourceKind::Task, format!("{owner} write e1-0")),
            // Another component's resources are not the fetcher's.
            ledger.register(ResourceKind::PrefetchSlot, "something else"),
            ledger.register(ResourceKind::Task, "flush node1 t1-b0"),
        ];
        assert_eq!(violations(&ledger, config), Vec::<String>::new());
        let counted = holdings(&ledger);
        assert_eq!(
            counted.get(owner),
            Some(&FetcherHoldings { slots: 2, temp_files: 1, download_tasks: 1, writes: 1 })
        );
        held.push(ledger.register(ResourceKind::PrefetchSlot, owner));
        held.push(ledger.register(ResourceKind::Task, format!("{owner} write e1-7")));
        let problems = violations(&ledger, config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("3 prefetch slots (prefetch-num 2)"), "{problems:?}");
        assert!(problems[0].contains("2 downloads writing at once"), "{problems:?}");
        drop(held);
        assert!(holdings(&ledger).is_empty(), "released with their entries");
    }

    #[test]
    fn the_tally_reads_what_a_walk_over_the_ledger_reads_after_every_change() {
        let ledger = Ledger::new();
        let early = ledger.register(ResourceKind::TempFile, "remote-log-fetcher a file 1.log");
        let tally = FetcherTally::attach(&ledger);
        let walked = |tally: &FetcherTally| {
            let tallied = tally.take_changed().expect("an entry of a fetcher moved");
            assert_eq!(tallied, holdings(&ledger));
            tallied
        };
        assert_eq!(walked(&tally).len(), 1, "entries live before the attach are counted");
        let others = ledger.register(ResourceKind::Task, "flush node1 t1-b0");
        assert_eq!(tally.take_changed(), None, "another component's entry moves nothing");
        let mut held = vec![
            ledger.register(ResourceKind::PrefetchSlot, "remote-log-fetcher b"),
            ledger.register(ResourceKind::Task, "remote-log-fetcher b download 0"),
            ledger.register(ResourceKind::Task, "remote-log-fetcher b write e1-0"),
            ledger.register(ResourceKind::Task, "remote-log-fetcher a download 2"),
        ];
        assert_eq!(walked(&tally).len(), 2);
        drop(early);
        assert_eq!(walked(&tally).len(), 1, "a holds only a download task now");
        held.truncate(1);
        assert_eq!(walked(&tally).len(), 1);
        held.clear();
        assert!(walked(&tally).is_empty());
        drop(others);
    }

    #[test]
    fn gauges_beyond_the_configuration_are_violations() {
        let config = FetcherConfig::DEFAULT;
        let within =
            FetcherGauges { ready: 4, window: 4, in_flight: 3, ..FetcherGauges::default() };
        assert!(gauge_violations(&within, config).is_empty());
        let beyond =
            FetcherGauges { ready: 5, window: 5, in_flight: 4, ..FetcherGauges::default() };
        assert_eq!(gauge_violations(&beyond, config).len(), 3);
    }
}
