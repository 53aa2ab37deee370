//! The executor's set of ready tasks: a sorted vector of task ids.
//!
//! The scheduler picks the `index`-th smallest ready id at every step. A `BTreeSet` finds it
//! by walking `index` entries; a sorted vector indexes it directly, and with the few hundred
//! ready tasks a simulation has, its insertions and removals (a binary search and a short
//! move) cost less than the tree's. The order is the same as the `BTreeSet`'s, so a seed picks
//! the same tasks either way: traces do not change.

/// Task ids in ascending order, each at most once.
#[derive(Debug, Default, Clone)]
pub struct ReadySet {
    ids: Vec<u64>,
}

impl ReadySet {
    pub fn new() -> ReadySet {
        ReadySet { ids: Vec::new() }
    }

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

    /// The `index`-th smallest id, as `BTreeSet::iter().nth(index)`.
    pub fn nth(&self, index: usize) -> Option<u64> {
        self.ids.get(index).copied()
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
            let mut ready = ReadySet::new();
            let mut model = BTreeSet::new();
            for _ in 0..2_000 {
                let id = prng.below(64);
                match prng.below(3) {
                    0 | 1 => assert_eq!(ready.insert(id), model.insert(id), "insert {id}"),
                    _ => assert_eq!(ready.remove(&id), model.remove(&id), "remove {id}"),
                }
                assert_eq!(ready.len(), model.len());
                let index = usize::try_from(prng.below(model.len() as u64 + 1)).expect("small");
                assert_eq!(ready.nth(index), model.iter().nth(index).copied(), "nth {index}");
            }
            assert!(ready.iter().copied().eq(model.iter().copied()));
        }
    }

    #[test]
    fn a_ready_set_appends_new_largest_ids_and_refuses_repeats() {
        let mut ready = ReadySet::new();
        assert!(ready.is_empty());
        assert!(ready.insert(5) && ready.insert(9) && ready.insert(7));
        assert!(!ready.insert(9) && !ready.insert(5));
        assert_eq!(ready.iter().copied().collect::<Vec<_>>(), [5, 7, 9]);
        assert!(ready.remove(&7) && !ready.remove(&7));
        assert_eq!(ready.nth(1), Some(9));
        assert_eq!(ready.nth(2), None);
    }
}
