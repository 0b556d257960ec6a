//! Offset-paged listings that may change while they are walked.
//!
//! An offset-paged listing that changes between pages can skip an entry (one removed ahead of
//! the walk moves the next one onto a page already read) or show one twice, and its total
//! cannot tell: a removal and an addition leave it unchanged. So a listing that must be
//! complete is walked until two consecutive walks agree on the set of entries, each walk
//! having seen one total on all its pages and as many distinct entries as that total. A quiet
//! listing costs two walks.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// One walk of a listing: its entries by key, and whether the walk was consistent in itself.
pub struct Walk<K, V> {
    pub entries: BTreeMap<K, V>,
    pub consistent: bool,
    /// The request id of the last page, when the service sent one.
    pub trace_id: Option<String>,
}

/// Gathers one walk's pages.
pub struct Walker<K, V> {
    entries: BTreeMap<K, V>,
    totals: BTreeSet<u64>,
    listed: u64,
    trace_id: Option<String>,
}

impl<K: Ord, V> Default for Walker<K, V> {
    fn default() -> Self {
        Walker {
            entries: BTreeMap::new(),
            totals: BTreeSet::new(),
            listed: 0,
            trace_id: None,
        }
    }
}

impl<K: Ord, V> Walker<K, V> {
    /// Takes one page: its entries, the total its `Content-Range` stated, its request id.
    pub fn page(
        &mut self,
        entries: impl IntoIterator<Item = (K, V)>,
        total: Option<u64>,
        trace_id: Option<String>,
    ) {
        self.totals.extend(total);
        self.trace_id = trace_id.or(self.trace_id.take());
        for (k, v) in entries {
            self.listed += 1;
            self.entries.insert(k, v);
        }
    }

    /// The walk: consistent when every page stated one total, every entry was seen once, and
    /// there were as many as the total said.
    pub fn finish(self) -> Walk<K, V> {
        let n = self.entries.len() as u64;
        let consistent =
            self.totals.len() <= 1 && self.listed == n && self.totals.iter().all(|t| *t == n);
        Walk {
            entries: self.entries,
            consistent,
            trace_id: self.trace_id,
        }
    }
}

/// Walks a listing (`walk`) until two consecutive consistent walks agree on its keys, at most
/// `max_walks` times. Returns the last walk and the number taken, or `None` when the listing
/// kept changing.
pub async fn settle<K, V, E, F, Fut>(
    what: &str,
    max_walks: u32,
    mut walk: F,
) -> Result<Option<(Walk<K, V>, u32)>, E>
where
    K: Ord,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Walk<K, V>, E>>,
{
    let mut previous: Option<Walk<K, V>> = None;
    for n in 1..=max_walks {
        let w = walk().await?;
        if let Some(p) = &previous {
            if p.consistent && w.consistent && p.entries.keys().eq(w.entries.keys()) {
                return Ok(Some((w, n)));
            }
            tracing::info!(
                listing = what,
                walk = n,
                before = p.entries.len(),
                now = w.entries.len(),
                "the listing changed during the walk; walking it again"
            );
        }
        previous = Some(w);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(keys: &[&str], total: u64) -> Walk<String, ()> {
        let mut w = Walker::default();
        w.page(keys.iter().map(|k| (k.to_string(), ())), Some(total), None);
        w.finish()
    }

    #[test]
    fn a_walk_is_consistent_only_when_its_pages_agree_with_the_total() {
        assert!(walk(&["a", "b"], 2).consistent);
        assert!(!walk(&["a", "b"], 3).consistent, "one short of the total");
        assert!(!walk(&["a", "a"], 2).consistent, "one entry seen twice");
        let mut w = Walker::default();
        w.page([("a".to_string(), ())], Some(2), None);
        w.page([("b".to_string(), ())], Some(3), None);
        assert!(!w.finish().consistent, "two totals");
    }

    #[tokio::test]
    async fn two_agreeing_walks_settle_a_listing_and_a_shifting_one_does_not() {
        let walks = std::cell::RefCell::new(vec![
            walk(&["a", "c"], 2),
            walk(&["a", "b"], 2),
            walk(&["a", "b"], 2),
        ]);
        let settled = settle("t", 6, || {
            let w = walks.borrow_mut().remove(0);
            async move { Ok::<_, ()>(w) }
        })
        .await
        .unwrap();
        let (w, n) = settled.expect("settled");
        assert_eq!(n, 3);
        assert_eq!(w.entries.keys().collect::<Vec<_>>(), ["a", "b"]);

        let mut i = 0;
        let never = settle("t", 4, || {
            i += 1;
            let w = walk(&[if i % 2 == 0 { "x" } else { "y" }], 1);
            async move { Ok::<_, ()>(w) }
        })
        .await
        .unwrap();
        assert!(never.is_none());
    }
}
