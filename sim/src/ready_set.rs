//! The executor's set of ready tasks: a sorted vector of task ids, each with the index of the
//! task's slot in the executor's task table.
//!
//! The scheduler takes out the `index`-th smallest ready id at every step. A `BTreeSet` finds it
//! by walking `index` entries; a sorted vector indexes it directly, and with the few hundred
//! ready tasks a simulation has, its insertions and removals (a binary search and a short
//! move) cost less than the tree's. The order is the same as the `BTreeSet`'s, so a seed picks
//! the same tasks either way: traces do not change. The slot index rides along, so that the
//! picked task is found without a lookup by id.

/// Task ids in ascending order, each at most once, with their slot indices.
#[derive(Debug, Default)]
pub struct ReadySet {
    entries: Vec<(u64, usize)>,
}

impl ReadySet {
    /// Adds `id` (whose slot is `slot`); returns whether it was absent.
    pub fn insert(&mut self, id: u64, slot: usize) -> bool {
        // Newly spawned tasks have the largest ids: the common case appends.
        if self.entries.last().is_none_or(|(last, _)| *last < id) {
            self.entries.push((id, slot));
            return true;
        }
        match self.entries.binary_search_by_key(&id, |(entry, _)| *entry) {
            Ok(_) => false,
            Err(position) => {
                self.entries.insert(position, (id, slot));
                true
            }
        }
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: &u64) -> bool {
        match self.entries.binary_search_by_key(id, |(entry, _)| *entry) {
            Ok(position) => {
                self.entries.remove(position);
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes out the `index`-th smallest id (with its slot), as `BTreeSet::iter().nth(index)`
    /// and a removal of it would.
    pub fn remove_nth(&mut self, index: usize) -> Option<(u64, usize)> {
        (index < self.entries.len()).then(|| self.entries.remove(index))
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &u64> {
        self.entries.iter().map(|(id, _)| id)
    }

    /// The ids in ascending order, with their slots.
    pub fn entries(&self) -> impl Iterator<Item = &(u64, usize)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ReadySet;
    use crate::prng::Streams;

    /// Any slot index that depends on the id only.
    fn slot(id: u64) -> usize {
        (id as usize).wrapping_mul(7) % 31
    }

    #[test]
    fn a_ready_set_answers_as_a_btree_set_under_random_operations() {
        for seed in 1..=20 {
            let mut prng = Streams::new(seed).stream("ready-set-test");
            let mut ready = ReadySet::default();
            let mut model = BTreeSet::new();
            for _ in 0..2_000 {
                let id = prng.below(64);
                match prng.below(3) {
                    0 | 1 => {
                        assert_eq!(ready.insert(id, slot(id)), model.insert(id), "insert {id}")
                    }
                    _ => assert_eq!(ready.remove(&id), model.remove(&id), "remove {id}"),
                }
                assert_eq!(ready.len(), model.len());
                if prng.below(4) == 0 {
                    let index = usize::try_from(prng.below(model.len() as u64 + 1)).expect("small");
                    let expected = model.iter().nth(index).copied();
                    if let Some(id) = expected {
                        model.remove(&id);
                    }
                    assert_eq!(
                        ready.remove_nth(index),
                        expected.map(|id| (id, slot(id))),
                        "remove_nth {index}"
                    );
                }
            }
            assert!(ready.iter().copied().eq(model.iter().copied()));
            assert!(ready.entries().all(|(id, at)| *at == slot(*id)));
        }
    }

    #[test]
    fn a_ready_set_keeps_ids_sorted_refuses_repeats_and_takes_out_the_nth() {
        let mut ready = ReadySet::default();
        assert!(ready.is_empty());
        assert!(ready.insert(5, 0) && ready.insert(9, 1) && ready.insert(7, 2));
        assert!(!ready.insert(9, 3) && !ready.insert(5, 4));
        assert_eq!(ready.iter().copied().collect::<Vec<_>>(), [5, 7, 9]);
        assert!(ready.remove(&7) && !ready.remove(&7));
        assert_eq!(ready.remove_nth(2), None);
        assert_eq!(ready.remove_nth(1), Some((9, 1)));
        assert_eq!(ready.iter().copied().collect::<Vec<_>>(), [5]);
    }
}
