//! Seeded randomness for the simulator, split into named streams.
//!
//! Every random decision of a run comes from one `u64` seed. Each component (scheduler,
//! network, remote storage, workload) draws from its own named stream, so adding a decision to
//! one component never shifts the decisions of another: a seed that reproduced a bug keeps
//! reproducing it in the components that did not change.
//!
//! Decisions use integers only ([`Ratio`], [`Prng::below`]): no floating point, whose rounding
//! could differ between platforms.
//!
//! A stream may be fed by a [`DecisionTape`] (bytes a fuzzer chose): its draws take the tape's
//! bytes first, and when the tape runs out the seeded stream takes over. A stream without a
//! tape draws exactly what it always did.

use std::sync::{Arc, Mutex};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use kvtablet_core::env::Entropy;

/// A probability as an exact fraction `num / den`.
///
/// `num >= den` means always; `num == 0` or `den == 0` means never (a zero denominator is
/// treated as "fault off" rather than an error, so that a default-constructed value is inert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ratio {
    pub num: u64,
    pub den: u64,
}

impl Ratio {
    pub const NEVER: Ratio = Ratio { num: 0, den: 1 };
    pub const ALWAYS: Ratio = Ratio { num: 1, den: 1 };

    pub const fn new(num: u64, den: u64) -> Ratio {
        Ratio { num, den }
    }

    /// True when [`Prng::chance`] can never return true for this ratio.
    pub const fn is_never(self) -> bool {
        self.num == 0 || self.den == 0
    }
}

/// Decisions chosen from outside (by a fuzzer): bytes that the streams fed by it consume in
/// the order they draw, shared by every stream it feeds. Cloning shares the position.
///
/// A draw below `bound` takes the fewest bytes that can express `bound - 1` (one byte for a
/// choice among up to 256 ready tasks), little-endian, modulo `bound`; a full 64-bit draw
/// takes eight. A draw that meets the end of the tape takes what is left, zero-padded; every
/// later draw comes from the seeded stream.
#[derive(Debug, Clone, Default)]
pub struct DecisionTape {
    state: Arc<Mutex<TapeState>>,
}

#[derive(Debug, Default)]
struct TapeState {
    bytes: Vec<u8>,
    position: usize,
}

impl DecisionTape {
    pub fn new(bytes: &[u8]) -> DecisionTape {
        DecisionTape {
            state: Arc::new(Mutex::new(TapeState { bytes: bytes.to_vec(), position: 0 })),
        }
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> usize {
        self.lock().position
    }

    pub fn len(&self) -> usize {
        self.lock().bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().bytes.is_empty()
    }

    /// The next `width` bytes (1..=8) as a little-endian number, or `None` once the tape is
    /// used up.
    fn take(&self, width: usize) -> Option<u64> {
        let mut state = self.lock();
        let start = state.position;
        if start >= state.bytes.len() {
            return None;
        }
        let end = (start + width).min(state.bytes.len());
        let value = state.bytes[start..end]
            .iter()
            .rev()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte));
        state.position = end;
        Some(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapeState> {
        // A draw cannot leave the position half-updated, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The number of bytes that can express every value below `bound`.
fn tape_width(bound: u64) -> usize {
    let bits = 64 - (bound - 1).leading_zeros() as usize;
    bits.div_ceil(8).max(1)
}

/// One deterministic stream of random numbers (ChaCha8), optionally fed by a decision tape.
#[derive(Debug, Clone)]
pub struct Prng {
    rng: ChaCha8Rng,
    tape: Option<DecisionTape>,
}

impl Prng {
    pub fn from_seed(seed: u64) -> Prng {
        Prng { rng: ChaCha8Rng::seed_from_u64(seed), tape: None }
    }

    /// This stream, drawing from `tape` first.
    pub fn fed_by(self, tape: DecisionTape) -> Prng {
        Prng { tape: Some(tape), ..self }
    }

    pub fn next_u64(&mut self) -> u64 {
        if let Some(value) = self.tape.as_ref().and_then(|tape| tape.take(8)) {
            return value;
        }
        self.rng.next_u64()
    }

    /// A uniformly distributed value in `0..bound`. `bound` must be positive.
    ///
    /// Implemented here rather than through `rand`'s distributions so that the mapping from
    /// bits to values is fixed by this crate, not by a dependency upgrade.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Prng::below(0) has no value to return");
        if let Some(value) = self.tape.as_ref().and_then(|tape| tape.take(tape_width(bound))) {
            return value % bound;
        }
        // Rejection sampling: values in the last, incomplete block of size `bound` would make
        // small results more likely than large ones.
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let value = self.next_u64();
            if value < zone {
                return value % bound;
            }
        }
    }

    /// True with probability `ratio`. Always consumes the same amount of randomness whatever
    /// the ratio, so that turning a fault on or off does not shift later draws of the stream.
    pub fn chance(&mut self, ratio: Ratio) -> bool {
        let draw = self.below(ratio.den.max(1));
        !ratio.is_never() && draw < ratio.num
    }

    /// A uniformly distributed value in `low..=high`; `low <= high` is required.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "Prng::range_inclusive({low}, {high}): empty range");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            // The full u64 range: every value of next_u64 is in range.
            None => self.next_u64(),
        }
    }

    /// A uniformly chosen element, or `None` for an empty slice (which draws nothing).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let index = self.below(items.len() as u64);
        items.get(usize::try_from(index).ok()?)
    }
}

/// The named sub-streams of one run's seed.
///
/// `stream(name)` always returns a fresh stream at its start, so each component should take
/// its stream once and keep it. Names are free-form; use e.g. `"net"` or `"workload/3"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    seed: u64,
}

impl Streams {
    pub fn new(seed: u64) -> Streams {
        Streams { seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The stream called `name`: seeded by `splitmix64(seed ^ fnv1a64(name))`, independent of
    /// every other name.
    pub fn stream(&self, name: &str) -> Prng {
        Prng::from_seed(splitmix64(self.seed ^ fnv1a64(name.as_bytes())))
    }
}

/// The 64-bit FNV-1a offset basis: the hash of no bytes.
pub const FNV1A64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV1A64_OFFSET, bytes)
}

/// Continues an FNV-1a hash `state` over more bytes: `fnv1a64_extend(fnv1a64(a), b)` equals
/// `fnv1a64(a ++ b)`.
pub fn fnv1a64_extend(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV1A64_PRIME))
}

/// The splitmix64 finaliser: spreads nearby seeds (1, 2, 3...) over the whole u64 range.
pub fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// [`Entropy`] for simulated nodes: a [`Prng`] shared behind a mutex, and the run's BUGGIFY
/// sites.
#[derive(Debug)]
pub struct SimEntropy {
    prng: Mutex<Prng>,
    buggify: Option<std::sync::Arc<crate::buggify::Buggify>>,
}

impl SimEntropy {
    pub fn new(prng: Prng) -> SimEntropy {
        SimEntropy { prng: Mutex::new(prng), buggify: None }
    }

    /// Entropy whose `buggify` answers from `buggify` (shared by the run's nodes).
    pub fn with_buggify(
        prng: Prng,
        buggify: std::sync::Arc<crate::buggify::Buggify>,
    ) -> SimEntropy {
        SimEntropy { prng: Mutex::new(prng), buggify: Some(buggify) }
    }
}

impl Entropy for SimEntropy {
    fn next_u64(&self) -> u64 {
        // The critical section draws one number and cannot leave the generator half-updated,
        // so a poisoned lock is still usable.
        self.prng.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).next_u64()
    }

    fn buggify(&self, site: &'static str) -> bool {
        self.buggify.as_ref().is_some_and(|buggify| buggify.fires(site))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(prng: &mut Prng, count: usize) -> Vec<u64> {
        (0..count).map(|_| prng.next_u64()).collect()
    }

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64_extend(fnv1a64(b"foo"), b"bar"), fnv1a64(b"foobar"));
    }

    #[test]
    fn same_seed_same_stream_and_names_are_independent() {
        let streams = Streams::new(42);
        assert_eq!(draws(&mut streams.stream("sched"), 8), draws(&mut streams.stream("sched"), 8));
        assert_ne!(draws(&mut streams.stream("sched"), 8), draws(&mut streams.stream("net"), 8));
        assert_ne!(
            draws(&mut streams.stream("sched"), 8),
            draws(&mut Streams::new(43).stream("sched"), 8)
        );
    }

    #[test]
    fn drawing_from_one_stream_does_not_shift_another() {
        let streams = Streams::new(7);
        let mut net_alone = streams.stream("net");
        let expected = draws(&mut net_alone, 16);

        let mut sched = streams.stream("sched");
        let mut net = streams.stream("net");
        let mut interleaved = Vec::new();
        for _ in 0..16 {
            sched.next_u64();
            sched.next_u64();
            interleaved.push(net.next_u64());
        }
        assert_eq!(interleaved, expected);
    }

    #[test]
    fn below_and_range_stay_in_bounds_and_cover_them() {
        let mut prng = Prng::from_seed(1);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let value = prng.below(7);
            assert!(value < 7);
            seen[value as usize] = true;
            let ranged = prng.range_inclusive(10, 12);
            assert!((10..=12).contains(&ranged));
        }
        assert!(seen.iter().all(|hit| *hit), "every value of 0..7 should come up: {seen:?}");
        assert_eq!(prng.range_inclusive(5, 5), 5);
        let _full_range = prng.range_inclusive(0, u64::MAX);
    }

    #[test]
    fn chance_respects_extremes_and_roughly_the_ratio() {
        let mut prng = Prng::from_seed(3);
        for _ in 0..100 {
            assert!(!prng.chance(Ratio::NEVER));
            assert!(prng.chance(Ratio::ALWAYS));
            assert!(!prng.chance(Ratio::new(5, 0)), "a zero denominator means never");
            assert!(prng.chance(Ratio::new(3, 2)), "above one means always");
        }
        let hits = (0..10_000).filter(|_| prng.chance(Ratio::new(1, 4))).count();
        assert!((2_000..3_000).contains(&hits), "1/4 of 10000 draws, got {hits}");
    }

    #[test]
    fn chance_consumes_the_same_randomness_for_every_ratio() {
        let mut a = Prng::from_seed(9);
        let mut b = Prng::from_seed(9);
        a.chance(Ratio::NEVER);
        b.chance(Ratio::new(1, 3));
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn pick_chooses_an_element_and_handles_empty() {
        let mut prng = Prng::from_seed(5);
        let empty: [u8; 0] = [];
        assert_eq!(prng.pick(&empty), None);
        let items = ["a", "b", "c"];
        for _ in 0..50 {
            assert!(items.contains(prng.pick(&items).expect("non-empty slice")));
        }
    }

    #[test]
    fn a_tape_decides_first_then_the_seeded_stream_takes_over() {
        let tape = DecisionTape::new(&[2, 0x34, 0x12, 7]);
        let mut fed = Prng::from_seed(21).fed_by(tape.clone());
        assert_eq!(fed.below(3), 2, "one byte decides among three");
        assert_eq!(fed.below(1000), 0x1234 % 1000, "two bytes, little-endian");
        assert_eq!(fed.below(2), 1, "7 mod 2");
        assert_eq!(tape.consumed(), 4);
        let mut seeded = Prng::from_seed(21);
        assert_eq!(
            draws(&mut fed, 4),
            draws(&mut seeded, 4),
            "then the seed's stream, from its start"
        );
    }

    #[test]
    fn a_short_tape_is_zero_padded_and_an_empty_one_changes_nothing() {
        let mut fed = Prng::from_seed(4).fed_by(DecisionTape::new(&[1]));
        assert_eq!(fed.next_u64(), 1);
        let mut empty = Prng::from_seed(4).fed_by(DecisionTape::new(&[]));
        assert_eq!(draws(&mut empty, 8), draws(&mut Prng::from_seed(4), 8));
    }

    #[test]
    fn streams_fed_by_one_tape_share_it_in_draw_order() {
        let tape = DecisionTape::new(&[1, 2, 3]);
        let mut a = Prng::from_seed(1).fed_by(tape.clone());
        let mut b = Prng::from_seed(2).fed_by(tape.clone());
        assert_eq!((a.below(10), b.below(10), a.below(10)), (1, 2, 3));
    }

    #[test]
    fn tape_width_fits_the_bound() {
        assert_eq!(tape_width(1), 1);
        assert_eq!(tape_width(256), 1);
        assert_eq!(tape_width(257), 2);
        assert_eq!(tape_width(u64::MAX), 8);
    }

    #[test]
    fn sim_entropy_is_reproducible() {
        let a = SimEntropy::new(Streams::new(11).stream("entropy"));
        let b = SimEntropy::new(Streams::new(11).stream("entropy"));
        assert_eq!(a.id_hex(), b.id_hex());
        assert_eq!(a.below(1000), b.below(1000));
        assert_eq!(a.id_hex().len(), 32);
    }
}
