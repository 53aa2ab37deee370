//! Randomness seeded once from the operating system.

use std::sync::Mutex;

use kvtablet_core::env::Entropy;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// The OS could not provide a seed.
#[derive(Debug, thiserror::Error)]
#[error("cannot seed randomness from the operating system: {0}")]
pub struct EntropyError(String);

/// A `StdRng` seeded from the OS once, shared behind a mutex: one syscall at start-up instead
/// of one per draw.
#[derive(Debug)]
pub struct OsEntropy {
    rng: Mutex<StdRng>,
}

impl OsEntropy {
    pub fn new() -> Result<Self, EntropyError> {
        let rng = StdRng::try_from_os_rng().map_err(|error| EntropyError(error.to_string()))?;
        Ok(OsEntropy { rng: Mutex::new(rng) })
    }
}

impl Entropy for OsEntropy {
    fn next_u64(&self) -> u64 {
        // A panic while holding the lock cannot leave the generator in a state that matters:
        // any state is as random as any other.
        let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_ids_are_hex() {
        let entropy = OsEntropy::new().expect("OS randomness");
        assert_ne!(entropy.next_u64(), entropy.next_u64());
        let id = entropy.id_hex();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(entropy.below(7) < 7);
    }
}
