//! The primary-key tablet: changelog generation, the pre-write buffer, the asynchronous flush
//! into the engine, and reads of flushed data.

pub mod changelog_replay;
pub mod kv_error;
pub mod kv_tablet;
pub mod row_merger;

pub use changelog_replay::{apply_batches, check_progress, ReplayError};
pub use kv_error::KvError;
pub use kv_tablet::{EngineWriteLock, KvTablet, KvTabletConfig, PutOutcome};
pub use row_merger::{MergedValue, PartialUpdateRule, PartialUpdates, RowMerger};
