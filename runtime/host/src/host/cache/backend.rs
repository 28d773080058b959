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

    fn namespace(&self, name: &str, quota: u64) -> Namespace {
        if let Some(cache) = self.namespaces.read().expect("not poisoned").get(name) {
            return cache.clone();
        }
        let mut all = self.namespaces.write().expect("not poisoned");
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
