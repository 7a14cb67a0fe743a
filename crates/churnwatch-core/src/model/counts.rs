//! Grouping identical customer triples.
//!
//! The likelihood of a population is a sum over customers, and customers with
//! the same `(x, t_x, T)` contribute identical terms. Real data measured in
//! whole days has far fewer distinct triples than customers (every one-time
//! buyer of the same age is the same triple), so the fitter works on counts.

use super::{ModelError, Triple};

/// Distinct triples with the number of customers sharing each one.
///
/// Entries are kept sorted by `(x, T, t_x)`, which is what the likelihood
/// evaluator wants (it walks customers grouped by `x`). Values are compared
/// bit-for-bit (with `-0.0` folded into `0.0`), so grouping is exact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TripleCounts {
    entries: Vec<(Triple, u64)>,
    customers: u64,
}

/// Sort key: IEEE bit patterns order like the numbers for values ≥ 0, and
/// anything negative or NaN is rejected later by [`TripleCounts::validate`].
type Key = [u64; 3];

fn key(tr: &Triple) -> Key {
    // `+ 0.0` turns -0.0 into 0.0 so both group together.
    [
        (tr.x + 0.0).to_bits(),
        (tr.t + 0.0).to_bits(),
        (tr.t_x + 0.0).to_bits(),
    ]
}

fn triple(k: &Key) -> Triple {
    Triple {
        x: f64::from_bits(k[0]),
        t: f64::from_bits(k[1]),
        t_x: f64::from_bits(k[2]),
    }
}

impl TripleCounts {
    /// Empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Groups `(triple, count)` pairs, merging repeated triples and dropping
    /// zero counts; for callers that already aggregate upstream.
    pub fn from_counts<I: IntoIterator<Item = (Triple, u64)>>(items: I) -> Self {
        let mut keyed: Vec<(Key, u64)> = items
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|(tr, c)| (key(&tr), c))
            .collect();
        keyed.sort_unstable_by_key(|e| e.0);
        let mut out = Self::new();
        for (k, c) in keyed {
            out.push_sorted(k, c);
        }
        out
    }

    /// Appends a key known to be ≥ the last one, merging equal keys.
    fn push_sorted(&mut self, k: Key, c: u64) {
        self.customers += c;
        if let Some(last) = self.entries.last_mut() {
            if key(&last.0) == k {
                last.1 += c;
                return;
            }
        }
        self.entries.push((triple(&k), c));
    }

    /// Number of distinct triples.
    pub fn distinct(&self) -> usize {
        self.entries.len()
    }

    /// Number of customers (sum of counts), as a collection size.
    pub fn customers(&self) -> usize {
        usize::try_from(self.customers).unwrap_or(usize::MAX)
    }

    /// Number of customers as the exact `u64` sum of counts.
    pub(crate) fn customers_u64(&self) -> u64 {
        self.customers
    }

    /// True when there are no customers.
    pub fn is_empty(&self) -> bool {
        self.customers == 0
    }

    /// Distinct triples with their counts, sorted by `(x, T, t_x)`.
    pub fn entries(&self) -> &[(Triple, u64)] {
        &self.entries
    }

    /// Checks every triple (see [`Triple::validate`]).
    pub fn validate(&self) -> Result<(), ModelError> {
        self.entries.iter().try_for_each(|(tr, _)| tr.validate())
    }
}

impl FromIterator<Triple> for TripleCounts {
    /// Groups raw per-customer triples. Sorting packed keys is faster than
    /// hashing for the million-customer case and gives the order we need.
    fn from_iter<I: IntoIterator<Item = Triple>>(iter: I) -> Self {
        let mut keys: Vec<Key> = iter.into_iter().map(|tr| key(&tr)).collect();
        keys.sort_unstable();
        let mut out = Self::new();
        for k in keys {
            out.push_sorted(k, 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(x: f64, t_x: f64, t: f64) -> Triple {
        Triple { x, t_x, t }
    }

    #[test]
    fn groups_identical_triples() {
        let data = [
            tr(1.0, 2.0, 5.0),
            tr(0.0, 0.0, 5.0),
            tr(1.0, 2.0, 5.0),
            tr(0.0, -0.0, 5.0),
        ];
        let g: TripleCounts = data.iter().copied().collect();
        assert_eq!(g.customers(), 4);
        assert_eq!(g.distinct(), 2);
        assert_eq!(g.entries()[0], (tr(0.0, 0.0, 5.0), 2));
        assert_eq!(g.entries()[1], (tr(1.0, 2.0, 5.0), 2));
    }

    #[test]
    fn from_counts_merges_and_drops_zero() {
        let g = TripleCounts::from_counts([
            (tr(2.0, 1.0, 3.0), 5),
            (tr(0.0, 0.0, 1.0), 0),
            (tr(2.0, 1.0, 3.0), 2),
        ]);
        assert_eq!(g.customers(), 7);
        assert_eq!(g.entries(), &[(tr(2.0, 1.0, 3.0), 7)]);
    }

    #[test]
    fn validate_rejects_bad_triples() {
        let g: TripleCounts = [tr(1.0, 4.0, 3.0)].into_iter().collect();
        assert!(g.validate().is_err());
        let g: TripleCounts = [tr(f64::NAN, 0.0, 3.0)].into_iter().collect();
        assert!(g.validate().is_err());
    }
}
