//! Deliberate bugs, compiled in only with the `mutants` feature and chosen by name at run time.
//!
//! The simulator's worth is measured by whether it catches these. Without the feature,
//! [`Mutants::is_on`] is a constant `false` and every mutant branch is dead code.

/// A named deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// The flush publishes the new flushed offset before the engine write lands.
    FlushAdvancesOffsetBeforeWrite,
    /// A write under a stale leader epoch is appended instead of fenced.
    StaleEpochWriteAccepted,
    /// Log retention deletes segments below the minimum retain offset.
    RetentionIgnoresMinRetain,
    /// An update is logged as `+I` without the `-U` of the old value.
    UpdateLoggedAsInsert,
}

impl Mutant {
    pub const ALL: &'static [Mutant] = &[
        Mutant::FlushAdvancesOffsetBeforeWrite,
        Mutant::StaleEpochWriteAccepted,
        Mutant::RetentionIgnoresMinRetain,
        Mutant::UpdateLoggedAsInsert,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::FlushAdvancesOffsetBeforeWrite => "flush-advances-offset-before-write",
            Mutant::StaleEpochWriteAccepted => "stale-epoch-write-accepted",
            Mutant::RetentionIgnoresMinRetain => "retention-ignores-min-retain",
            Mutant::UpdateLoggedAsInsert => "update-logged-as-insert",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.iter().copied().find(|m| m.name() == name)
    }

    fn bit(self) -> u64 {
        let index = Mutant::ALL.iter().position(|m| *m == self).unwrap_or(0);
        1u64 << index
    }
}

/// The set of mutants switched on for one run; empty in production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mutants(u64);

impl Mutants {
    pub const NONE: Mutants = Mutants(0);

    pub fn with(self, mutant: Mutant) -> Mutants {
        Mutants(self.0 | mutant.bit())
    }

    /// Whether `mutant` is on. Always false unless the crate is built with `mutants`.
    #[inline(always)]
    pub fn is_on(self, mutant: Mutant) -> bool {
        cfg!(feature = "mutants") && (self.0 & mutant.bit()) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_round_trips_through_its_name() {
        for mutant in Mutant::ALL {
            assert_eq!(Mutant::from_name(mutant.name()), Some(*mutant));
        }
        assert_eq!(Mutant::from_name("no-such-mutant"), None);
        assert!(Mutant::ALL.len() < 64, "the mutant set is a u64 bitmap");
    }
}
