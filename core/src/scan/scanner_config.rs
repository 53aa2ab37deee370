//! Server-side limits of full-scan sessions, with Fluss's keys and defaults.

/// `kv.scanner.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannerConfig {
    /// `kv.scanner.ttl`: a session idle for longer than this is evicted.
    pub ttl_ms: u64,
    /// `kv.scanner.expiration-interval`: how often the evictor runs.
    pub expiration_interval_ms: u64,
    /// `kv.scanner.max-per-bucket`.
    pub sessions_per_bucket_max: u32,
    /// `kv.scanner.max-per-server`.
    pub sessions_per_server_max: u32,
    /// `kv.scanner.max-batch-size`: caps the requested `batch_size_bytes`.
    pub batch_bytes_max: u32,
}

impl ScannerConfig {
    pub const DEFAULT: ScannerConfig = ScannerConfig {
        ttl_ms: 10 * 60 * 1000,
        expiration_interval_ms: 30 * 1000,
        sessions_per_bucket_max: 8,
        sessions_per_server_max: 200,
        batch_bytes_max: 10 * 1024 * 1024,
    };

    /// Refuses limits that would make sessions unusable.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl_ms == 0 || self.expiration_interval_ms == 0 {
            return Err(
                "kv.scanner.ttl and kv.scanner.expiration-interval must be positive".to_string()
            );
        }
        if self.sessions_per_bucket_max == 0 || self.sessions_per_server_max == 0 {
            return Err("kv.scanner.max-per-bucket and max-per-server must be positive".to_string());
        }
        if self.batch_bytes_max == 0 {
            return Err("kv.scanner.max-batch-size must be positive".to_string());
        }
        Ok(())
    }
}
