//! BUGGIFY sites (after FoundationDB): core asks `Entropy::buggify(site)` on paths that no
//! environment fault reaches; the simulator answers.
//!
//! A site is active in a seed with probability `site_active`, decided by a hash of the seed
//! and the site's name (so a site's activation needs no registry and does not depend on when
//! it is first reached); an active site then fires with probability `fire`, drawn from the
//! run's "buggify" stream. Everything is off after [`Buggify::switch_off`] (the heal phase).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::clock::lock;
use crate::prng::{fnv1a64, splitmix64, Prng, Ratio, Streams};

#[derive(Debug)]
pub struct Buggify {
    seed: u64,
    site_active: Ratio,
    fire: Ratio,
    on: AtomicBool,
    prng: Mutex<Prng>,
    fired: Mutex<BTreeMap<&'static str, u64>>,
}

impl Buggify {
    pub fn new(streams: &Streams, site_active: Ratio, fire: Ratio) -> Buggify {
        Buggify {
            seed: streams.seed(),
            site_active,
            fire,
            on: AtomicBool::new(true),
            prng: Mutex::new(streams.stream("buggify")),
            fired: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether `site` is switched on in this seed.
    pub fn is_site_active(&self, site: &str) -> bool {
        if self.site_active.is_never() {
            return false;
        }
        let hash = splitmix64(self.seed ^ fnv1a64(site.as_bytes()));
        hash % self.site_active.den < self.site_active.num
    }

    /// Whether `site` takes its rare path now.
    pub fn fires(&self, site: &'static str) -> bool {
        if !self.on.load(Ordering::SeqCst) || !self.is_site_active(site) {
            return false;
        }
        let fired = lock(&self.prng).chance(self.fire);
        if fired {
            *lock(&self.fired).entry(site).or_insert(0) += 1;
        }
        fired
    }

    pub fn switch_off(&self) {
        self.on.store(false, Ordering::SeqCst);
    }

    /// `site=count` for every site that fired, or "none".
    pub fn summary(&self) -> String {
        let fired = lock(&self.fired);
        if fired.is_empty() {
            return "none".to_string();
        }
        fired.iter().map(|(site, count)| format!("{site}={count}")).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_switched_on_per_seed_and_per_site() {
        let sites = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let active = |seed: u64| {
            let buggify = Buggify::new(&Streams::new(seed), Ratio::new(1, 2), Ratio::ALWAYS);
            sites.iter().map(|site| buggify.is_site_active(site)).collect::<Vec<_>>()
        };
        assert_eq!(active(3), active(3), "the same seed switches on the same sites");
        let patterns: std::collections::BTreeSet<Vec<bool>> = (0..20).map(active).collect();
        assert!(patterns.len() > 5, "different seeds switch on different sites");
        assert!(patterns.iter().flatten().any(|on| *on) && patterns.iter().flatten().any(|on| !on));
    }

    #[test]
    fn an_active_site_fires_at_its_rate_until_switched_off() {
        let buggify = Buggify::new(&Streams::new(1), Ratio::ALWAYS, Ratio::new(1, 4));
        let fired = (0..400).filter(|_| buggify.fires("site")).count();
        assert!((60..140).contains(&fired), "about a quarter: {fired}");
        assert_eq!(buggify.summary(), format!("site={fired}"));
        buggify.switch_off();
        assert!((0..100).all(|_| !buggify.fires("site")));
        let never = Buggify::new(&Streams::new(1), Ratio::NEVER, Ratio::ALWAYS);
        assert!(!never.fires("site"));
        assert_eq!(never.summary(), "none");
    }
}
