//! The executor's set of ready tasks: a sorted vector of task ids.
//!
//! The scheduler takes out the `index`-th smallest ready id at every step. A `BTreeSet` finds it
//! by walking `index` entries; a sorted vector indexes it directly, and with the few hundred
//! ready tasks a simulation has, its insertions and removals (a binary search and a short
//! move) cost less than the tree's. The order is the same as the `BTreeSet`'s, so a seed picks
//! the same tasks either way: traces do not change.

/// Task ids in ascending order, each at most once.
#[derive(Debug, Default)]
pub struct ReadySet {
    ids: Vec<u64>,
}

impl ReadySet {
    /// Adds `id`; returns whether it was absent.
    pub fn insert(&mut self, id: u64) -> bool {
        // Newly spawned tasks have the largest ids: the common case appends.
        if self.ids.last().is_none_or(|last| *last < id) {
            self.ids.push(id);
            return true;
        }
        match self.ids.binary_search(&id) {
            Ok(_) => false,
            Err(position) => {
                self.ids.insert(position, id);
                true
            }
        }
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: &u64) -> bool {
        match self.ids.binary_search(id) {
            Ok(position) => {
                self.ids.remove(position);
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Takes out the `index`-th smallest id, as `BTreeSet::iter().nth(index)` and a removal of
    /// it would.
    pub fn remove_nth(&mut self, index: usize) -> Option<u64> {
        (index < self.ids.len()).then(|| self.ids.remove(index))
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &u64> {
        self.ids.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ReadySet;
    use crate::prng::Streams;

    #[test]
    fn a_ready_set_answers_as_a_btree_set_under_random_operations() {
        for seed in 1..=20 {
            let mut prng = Streams::new(seed).stream("ready-set-test");
            let mut ready = ReadySet::default();
            let mut model = BTreeSet::new();
            for _ in 0..2_000 {
                let id = prng.below(64);
                match prng.below(3) {
                    0 | 1 => assert_eq!(ready.insert(id), model.insert(id), "insert {id}"),
                    _ => assert_eq!(ready.remove(&id), model.remove(&id), "remove {id}"),
                }
                assert_eq!(ready.len(), model.len());
                if prng.below(4) == 0 {
                    let index = usize::try_from(prng.below(model.len() as u64 + 1)).expect("small");
                    let expected = model.iter().nth(index).copied();
                    if let Some(id) = expected {
                        model.remove(&id);
                    }
                    assert_eq!(ready.remove_nth(index), expected, "remove_nth {index}");
                }
            }
            assert!(ready.iter().copied().eq(model.iter().copied()));
        }
    }

    #[test]
    fn a_ready_set_keeps_ids_sorted_refuses_repeats_and_takes_out_the_nth() {
        let mut ready = ReadySet::default();
        assert!(ready.is_empty());
        assert!(ready.insert(5) && ready.insert(9) && ready.insert(7));
        assert!(!ready.insert(9) && !ready.insert(5));
        assert_eq!(ready.iter().copied().collect::<Vec<_>>(), [5, 7, 9]);
        assert!(ready.remove(&7) && !ready.remove(&7));
        assert_eq!(ready.remove_nth(2), None);
        assert_eq!(ready.remove_nth(1), Some(9));
        assert_eq!(ready.iter().copied().collect::<Vec<_>>(), [5]);
    }
}
