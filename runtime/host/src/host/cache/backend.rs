//! Where cached responses live: the [`CacheBackend`] trait, and [`MokaCache`], the default,
//! in memory. Each deployment has its own namespace with its own byte quota, so one tenant's
//! entries never evict another's; all namespaces together stay within the cache's capacity.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::rfc9111::Stored;

/// The responses stored for one URL: one per `Vary` secondary key, newest first.
#[derive(Clone, Debug)]
pub struct CachedResponses(pub(crate) Arc<[Arc<Stored>]>);

impl CachedResponses {
    /// Bytes the entry takes, roughly: bodies, header fields and bookkeeping.
    pub fn weight(&self) -> u64 {
        self.0
            .iter()
            .map(|s| {
                let headers: usize = s
                    .headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len() + 32)
                    .sum();
                (s.body.len() + headers + 256) as u64
            })
            .sum()
    }

    /// How long the entry is worth keeping (the longest of its responses).
    pub fn keep_for(&self) -> Duration {
        self.0
            .iter()
            .map(|s| s.keep_for())
            .max()
            .unwrap_or_default()
    }

    /// Whether any of its responses carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.0.iter().any(|s| s.tags.iter().any(|t| t == tag))
    }
}

/// Why an entry was not stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheFull {
    /// Larger than the namespace may hold at all.
    #[error(
        "the entry ({size} bytes) is larger than this deployment's cache share allows ({max} bytes)"
    )]
    EntryTooLarge {
        /// The entry's weight.
        size: u64,
        /// The largest entry the namespace takes.
        max: u64,
    },
    /// The whole cache is full.
    #[error("the host cache is full ({capacity} bytes)")]
    Full {
        /// The cache's capacity.
        capacity: u64,
    },
}

/// Stores cached responses per namespace (a deployment). Embedders may swap in their own (a
/// shared or persistent cache); the HTTP rules stay in the host.
pub trait CacheBackend: Send + Sync + std::fmt::Debug + 'static {
    /// The responses stored under `key` in `namespace`.
    fn get(&self, namespace: &str, key: &str) -> Option<CachedResponses>;
    /// Stores `value` under `key`, replacing what was there, within the namespace's `quota`
    /// bytes (evicting the namespace's own least useful entries if need be).
    fn insert(
        &self,
        namespace: &str,
        quota: u64,
        key: &str,
        value: CachedResponses,
    ) -> Result<(), CacheFull>;
    /// Removes `key`; whether it was there.
    fn remove(&self, namespace: &str, key: &str) -> bool;
    /// Removes every entry of `namespace` carrying `tag`; how many.
    fn purge_tag(&self, namespace: &str, tag: &str) -> usize;
}

type Namespace = moka::sync::Cache<String, CachedResponses>;

/// The default backend: moka caches bounded by weight (bytes), one per namespace, each entry
/// expiring when it is no longer worth keeping. Default capacity 256 MiB in all.
#[derive(Debug)]
pub struct MokaCache {
    capacity: u64,
    used: Arc<AtomicU64>,
    namespaces: RwLock<HashMap<String, Namespace>>,
}

struct KeepFor;

impl moka::Expiry<String, CachedResponses> for KeepFor {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &CachedResponses,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &CachedResponses,
        _updated_at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for())
    }
}

impl MokaCache {
    /// A cache holding at most `capacity` bytes over all namespaces.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            used: Arc::new(AtomicU64::new(0)),
            namespaces: RwLock::default(),
        }
    }

    /// Bytes held now, over all namespaces.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The namespace's cache, made (or remade, emptied, when its quota changed) on demand.
    fn namespace(&self, name: &str, quota: u64) -> Namespace {
        let current = |cache: &Namespace| cache.policy().max_capacity() == Some(quota);
        if let Some(cache) = self.namespaces.read().expect("not poisoned").get(name)
            && current(cache)
        {
            return cache.clone();
        }
        let mut all = self.namespaces.write().expect("not poisoned");
        if let Some(old) = all.get(name)
            && !current(old)
        {
            // Emptied through its listener, so the bytes it held are given back.
            old.invalidate_all();
            old.run_pending_tasks();
            all.remove(name);
        }
        all.entry(name.to_owned())
            .or_insert_with(|| {
                let used = self.used.clone();
                moka::sync::Cache::builder()
                    .max_capacity(quota)
                    .weigher(|_, v: &CachedResponses| u32::try_from(v.weight()).unwrap_or(u32::MAX))
                    .expire_after(KeepFor)
                    .eviction_listener(move |_, v: CachedResponses, _| {
                        used.fetch_sub(v.weight(), Ordering::Relaxed);
                    })
                    .build()
            })
            .clone()
    }

    fn existing(&self, name: &str) -> Option<Namespace> {
        self.namespaces
            .read()
            .expect("not poisoned")
            .get(name)
            .cloned()
    }
}

impl Default for MokaCache {
    fn default() -> Self {
        Self::new(256 << 20)
    }
}

impl CacheBackend for MokaCache {
    fn get(&self, namespace: &str, key: &str) -> Option<CachedResponses> {
        self.existing(namespace)?.get(key)
    }

    fn insert(
        &self,
        namespace: &str,
        quota: u64,
        key: &str,
        value: CachedResponses,
    ) -> Result<(), CacheFull> {
        let size = value.weight();
        // One entry may take at most half the namespace's share, so that it cannot flush
        // everything else out at once.
        let max = quota / 2;
        if size > max {
            return Err(CacheFull::EntryTooLarge { size, max });
        }
        let cache = self.namespace(namespace, quota);
        let replaced = cache.get(key).map_or(0, |old| old.weight());
        let fits =
            || self.used.load(Ordering::Relaxed).saturating_sub(replaced) + size <= self.capacity;
        if !fits() {
            // Let pending evictions land; if the whole cache is still full, this namespace
            // makes room among its own entries (never another's).
            cache.run_pending_tasks();
            let mut own = cache.iter().map(|(k, _)| k);
            while !fits() {
                let Some(victim) = own.next() else {
                    return Err(CacheFull::Full {
                        capacity: self.capacity,
                    });
                };
                if victim.as_str() != key {
                    cache.invalidate(victim.as_str());
                    cache.run_pending_tasks();
                }
            }
        }
        self.used.fetch_add(size, Ordering::Relaxed);
        cache.insert(key.to_owned(), value);
        Ok(())
    }

    fn remove(&self, namespace: &str, key: &str) -> bool {
        self.existing(namespace)
            .is_some_and(|cache| cache.remove(key).is_some())
    }

    fn purge_tag(&self, namespace: &str, tag: &str) -> usize {
        let Some(cache) = self.existing(namespace) else {
            return 0;
        };
        let keys: Vec<Arc<String>> = cache
            .iter()
            .filter(|(_, v)| v.has_tag(tag))
            .map(|(k, _)| k)
            .collect();
        keys.iter()
            .filter(|k| cache.remove(k.as_str()).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn entry(size: usize, tag: &str) -> CachedResponses {
        let stored = Stored {
            status: 200,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(vec![0u8; size]),
            vary: Vec::new(),
            directives: super::super::rfc9111::Directives::default(),
            response_time: SystemTime::now(),
            initial_age: Duration::ZERO,
            lifetime: Duration::from_secs(60),
            tags: vec![tag.to_owned()],
        };
        CachedResponses(vec![Arc::new(stored)].into())
    }

    #[test]
    fn bytes_are_accounted_and_bounded() {
        let cache = MokaCache::new(1 << 20);
        let quota = 1 << 20;
        for i in 0..20 {
            cache
                .insert("a", quota, &format!("k{i}"), entry(100_000, "t"))
                .unwrap();
            assert!(cache.used() <= 1 << 20, "used {}", cache.used());
        }
        // The whole cache is full of a's entries: b may not push them out, and a's entry
        // cannot exceed half a's share.
        assert!(matches!(
            cache.insert("a", quota, "huge", entry(600_000, "t")),
            Err(CacheFull::EntryTooLarge { .. })
        ));
        let before = cache.used();
        assert!(matches!(
            cache.insert("b", quota, "b1", entry(100_000, "t")),
            Err(CacheFull::Full { .. })
        ));
        assert_eq!(cache.used(), before, "b evicted nothing of a's");
        // a itself makes room among its own entries.
        cache
            .insert("a", quota, "k-new", entry(100_000, "t"))
            .unwrap();
        assert!(cache.used() <= 1 << 20);
    }

    #[test]
    fn purge_tag_and_remove_stay_in_their_namespace() {
        let cache = MokaCache::new(8 << 20);
        let quota = 4 << 20;
        cache.insert("a", quota, "x", entry(10, "news")).unwrap();
        cache.insert("b", quota, "x", entry(10, "news")).unwrap();
        cache.insert("a", quota, "y", entry(10, "sport")).unwrap();
        assert_eq!(cache.purge_tag("a", "news"), 1);
        assert!(cache.get("a", "x").is_none());
        assert!(cache.get("a", "y").is_some());
        assert!(cache.get("b", "x").is_some(), "b keeps its entry");
        assert!(cache.remove("b", "x"));
        assert!(!cache.remove("b", "x"));
    }

    #[test]
    fn a_new_quota_empties_the_namespace_and_gives_its_bytes_back() {
        let cache = MokaCache::new(8 << 20);
        cache
            .insert("a", 4 << 20, "x", entry(100_000, "t"))
            .unwrap();
        assert!(cache.used() > 0);
        cache.insert("a", 2 << 20, "y", entry(10, "t")).unwrap();
        assert!(cache.get("a", "x").is_none());
        assert!(cache.used() < 1000, "used {}", cache.used());
    }
}
