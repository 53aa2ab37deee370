//! Writer ids never repeat: core's `WriterIdAllocator` on the simulator's file system, whose
//! crash model drops whatever was not made durable. Restarts, crashes at every step of a block
//! reservation and failed reservations never let an id be handed out twice. The allocator reads
//! no clock at all, so a clock stepped back across a restart (what reissued ids before, when
//! they were the start time × 2^16) cannot matter.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kvtablet_core::env::{FsError, LocalFs};
use kvtablet_core::writer_id_allocator::{WriterIdAllocator, WriterIdError, FIRST_WRITER_ID};
use kvtablet_sim::fs::SimFs;

mod support;
use support::FailingFs;

const MARK: &str = "coordinator/writer_ids.bin";

/// Hands out `count` ids, checking each is new.
fn allocate_new(allocator: &WriterIdAllocator, count: usize, seen: &mut BTreeSet<i64>) {
    for _ in 0..count {
        let id = allocator.allocate().expect("allocates");
        assert!(id >= FIRST_WRITER_ID);
        assert!(seen.insert(id), "writer id {id} handed out twice");
    }
}

#[test]
fn restarts_and_crashes_between_runs_reissue_no_id() {
    let fs = Arc::new(SimFs::new());
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        let allocator = WriterIdAllocator::open(fs.clone(), MARK, 4).expect("opens");
        allocate_new(&allocator, 7, &mut seen);
        drop(allocator);
        // A crash between runs loses nothing that matters.
        fs.crash();
    }
    assert_eq!(seen.len(), 35);
}

/// A file system that fails, and crashes the underlying `SimFs`, at its `fail_at`-th mutating
/// call, either before or after performing it.
struct CrashingFs {
    inner: Arc<SimFs>,
    calls: AtomicUsize,
    fail_at: usize,
    after: bool,
}

impl CrashingFs {
    fn step(&self, operation: impl FnOnce() -> Result<(), FsError>) -> Result<(), FsError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.fail_at {
            return operation();
        }
        if call == self.fail_at {
            if self.after {
                operation()?;
            }
            self.inner.crash();
        }
        Err(FsError::Io("the node crashed".to_string()))
    }
}

impl LocalFs for CrashingFs {
    fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.step(|| self.inner.create_dir_all(path))
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.step(|| self.inner.append(path, bytes))
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.step(|| self.inner.write(path, bytes))
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.step(|| self.inner.sync(path))
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        self.inner.read_range(path, offset, len)
    }
    fn file_len(&self, path: &str) -> Result<u64, FsError> {
        self.inner.file_len(path)
    }
    fn truncate(&self, path: &str, len: u64) -> Result<(), FsError> {
        self.step(|| self.inner.truncate(path, len))
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.step(|| self.inner.rename(from, to))
    }
    fn remove_file(&self, path: &str) -> Result<(), FsError> {
        self.step(|| self.inner.remove_file(path))
    }
    fn remove_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.step(|| self.inner.remove_dir_all(path))
    }
    fn host_path(&self, _path: &str) -> Option<std::path::PathBuf> {
        None
    }
}

#[test]
fn a_crash_at_any_step_of_a_reservation_never_reissues_an_id() {
    // Opening creates the directory (one mutating call); three reservations of 3 ids each are
    // 9 more. Crash before and after each one.
    for fail_at in 0..11 {
        for after in [false, true] {
            let inner = Arc::new(SimFs::new());
            let mut seen = BTreeSet::new();
            let crashing = Arc::new(CrashingFs {
                inner: inner.clone(),
                calls: AtomicUsize::new(0),
                fail_at,
                after,
            });
            if let Ok(allocator) = WriterIdAllocator::open(crashing, MARK, 3) {
                for _ in 0..9 {
                    match allocator.allocate() {
                        Ok(id) => assert!(seen.insert(id), "writer id {id} handed out twice"),
                        Err(error) => {
                            assert!(matches!(error, WriterIdError::Fs { .. }), "{error}");
                            break;
                        }
                    }
                }
            }
            // The node comes back on what the crash left.
            let reopened = WriterIdAllocator::open(inner.clone(), MARK, 3).expect("reopens");
            allocate_new(&reopened, 10, &mut seen);
            drop(reopened);
            inner.crash();
            let crashed_again = WriterIdAllocator::open(inner, MARK, 3).expect("reopens");
            allocate_new(&crashed_again, 4, &mut seen);
        }
    }
}

#[test]
fn a_failed_reservation_hands_out_nothing_and_is_retried() {
    let disk = Arc::new(FailingFs::default());
    let allocator = WriterIdAllocator::open(disk.clone(), MARK, 2).expect("opens");
    let mut seen = BTreeSet::new();
    allocate_new(&allocator, 2, &mut seen);
    disk.set_failing_writes(true);
    let error = allocator.allocate().expect_err("no block can be reserved on a full disk");
    assert!(error.is_retriable(), "{error}");
    disk.set_failing_writes(false);
    allocate_new(&allocator, 5, &mut seen);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), (1..=7).collect::<Vec<i64>>());
}

#[test]
fn a_damaged_mark_stops_the_allocator_instead_of_starting_over() {
    let fs = Arc::new(SimFs::new());
    let allocator = WriterIdAllocator::open(fs.clone(), MARK, 8).expect("opens");
    allocator.allocate().expect("allocates");
    drop(allocator);
    let mut bytes = fs.read(MARK).expect("mark written");
    bytes[5] ^= 1;
    fs.write(MARK, &bytes).expect("damaged");
    let error = WriterIdAllocator::open(fs, MARK, 8).expect_err("a damaged mark is refused");
    assert!(matches!(error, WriterIdError::Corrupt { .. }), "{error}");
}
