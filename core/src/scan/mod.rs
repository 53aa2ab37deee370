//! KV full-scan sessions (FIP-17 `ScanKv`): the batch format, the server's sessions and their
//! manager, the request handler, and the client scanner.

pub mod bootstrap;
pub mod kv_scanner;
pub mod scan_kv_handler;
pub mod scan_session;
pub mod scanner_config;
pub mod scanner_manager;
pub mod value_record_batch;

pub use scan_session::ScanSession;
pub use scanner_config::ScannerConfig;
pub use scanner_manager::ScannerManager;
