//! The lease manager's limits and the expiry check's interval.

use crate::mutant::Mutants;

/// Fluss's `kv.snapshot.lease.expiration-check-interval` default: 10 minutes.
pub const EXPIRATION_CHECK_INTERVAL_MS_DEFAULT: u64 = 10 * 60 * 1_000;
/// Leases at once (Fluss has no limit; its consumers hold one per Flink job or tiering
/// enumerator).
pub const LEASES_MAX_DEFAULT: usize = 10_000;
/// Pinned buckets per lease: a Flink source pins every bucket of its tables, and a table has at
/// most 128,000 buckets.
pub const BUCKETS_PER_LEASE_MAX_DEFAULT: usize = 200_000;
/// Pinned buckets over all leases.
pub const PINS_MAX_DEFAULT: usize = 2_000_000;
/// A lease id's UTF-8 bytes. The id names the lease's file in hex, so twice this plus the
/// suffixes must stay under a file name's 255 bytes (Fluss's ids: a UUID, `tiering-` + UUID).
pub const LEASE_ID_BYTES_MAX: usize = 120;
/// Fluss's consumers ask for 1 day (Flink) and 6 hours (tiering).
pub const LEASE_DURATION_MS_MAX_DEFAULT: u64 = 30 * 24 * 60 * 60 * 1_000;
/// Distinct snapshots of one bucket that leases may pin at once. It bounds how many snapshots
/// outside the retention window a bucket keeps (see `snapshot_store::BUCKET_SNAPSHOTS_MAX`).
pub const LEASED_SNAPSHOTS_PER_BUCKET_MAX: usize = 64;

/// Hard caps that a configuration may lower but not raise: the decoder of a lease file checks
/// against them, whatever the configuration.
pub const BUCKETS_PER_LEASE_HARD_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    pub leases_max: usize,
    pub buckets_per_lease_max: usize,
    pub pins_max: usize,
    pub lease_duration_ms_max: u64,
    /// How often the coordinator's loop runs the expiry check (`LeaseExpirySweeper`).
    pub expiration_check_interval_ms: u64,
    pub mutants: Mutants,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            leases_max: LEASES_MAX_DEFAULT,
            buckets_per_lease_max: BUCKETS_PER_LEASE_MAX_DEFAULT,
            pins_max: PINS_MAX_DEFAULT,
            lease_duration_ms_max: LEASE_DURATION_MS_MAX_DEFAULT,
            expiration_check_interval_ms: EXPIRATION_CHECK_INTERVAL_MS_DEFAULT,
            mutants: Mutants::NONE,
        }
    }
}

impl LeaseConfig {
    /// Panics on a configuration no manager can run with (the caller checks user input).
    pub fn assert_valid(&self) {
        assert!(self.leases_max >= 1, "leases_max must be at least 1");
        assert!(self.buckets_per_lease_max >= 1, "buckets_per_lease_max must be at least 1");
        assert!(
            self.buckets_per_lease_max <= BUCKETS_PER_LEASE_HARD_MAX,
            "buckets_per_lease_max above {BUCKETS_PER_LEASE_HARD_MAX}"
        );
        assert!(self.pins_max >= self.buckets_per_lease_max, "pins_max below a lease's");
        assert!(self.expiration_check_interval_ms >= 1, "a zero check interval spins");
    }
}
