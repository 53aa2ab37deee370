//! Randomness, only through this trait, so that a seed reproduces a run.

/// A source of random bits: seeded in the simulator, from the OS in production.
pub trait Entropy: Send + Sync + 'static {
    fn next_u64(&self) -> u64;

    /// A uniformly distributed value in `0..bound`; `bound` must be positive.
    fn below(&self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0) has no value to return");
        // Rejection sampling keeps the distribution uniform for every bound.
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let value = self.next_u64();
            if value < zone {
                return value % bound;
            }
        }
    }

    /// BUGGIFY (after FoundationDB): whether the rarely taken path at `site` is taken now.
    /// `site` is a short stable name such as `"scan.open.yield_after_limit_check"`. Production
    /// never takes it; the simulator switches each site on in some seeds and then fires it
    /// with a small probability, so that paths no environment fault reaches (an extra
    /// scheduling point between two steps, a page shorter than asked) run in simulation.
    /// A site may only choose among behaviours the contract allows.
    fn buggify(&self, _site: &'static str) -> bool {
        false
    }

    /// 128 random bits as 32 lowercase hex characters (Fluss scanner ids: a UUID without dashes).
    fn id_hex(&self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }
}
