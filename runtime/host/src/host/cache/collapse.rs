//! Request collapsing: when many requests miss the same key at once, one fills it and the
//! others wait for that fill instead of all going to the origin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

type Key = (String, String);

/// The fills in progress, by (namespace, key).
#[derive(Debug, Default)]
pub(crate) struct Collapser {
    fills: Mutex<HashMap<Key, watch::Receiver<()>>>,
}

/// The right to fill a key: dropping it (after storing, or giving up) wakes the waiters.
pub struct FillToken {
    collapser: Arc<Collapser>,
    key: Key,
    // Dropped last, after the map no longer points at it: waiters then see the channel close.
    _done: watch::Sender<()>,
}

impl std::fmt::Debug for FillToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillToken")
            .field("key", &self.key.1)
            .finish_non_exhaustive()
    }
}

impl Drop for FillToken {
    fn drop(&mut self) {
        let mut fills = self.collapser.fills.lock().expect("not poisoned");
        if fills
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self._done.subscribe()))
        {
            fills.remove(&self.key);
        }
    }
}

/// What a request that did not get the fill waits on.
pub(crate) struct Wait(watch::Receiver<()>);

impl Collapser {
    /// The fill for `key` if nobody has it, else what to wait on.
    pub(crate) fn join(self: &Arc<Self>, namespace: &str, key: &str) -> Result<FillToken, Wait> {
        let key = (namespace.to_owned(), key.to_owned());
        let mut fills = self.fills.lock().expect("not poisoned");
        if let Some(rx) = fills.get(&key) {
            return Err(Wait(rx.clone()));
        }
        let (tx, rx) = watch::channel(());
        fills.insert(key.clone(), rx);
        Ok(FillToken {
            collapser: self.clone(),
            key,
            _done: tx,
        })
    }
}

/// Waits until the fill ends (its token is dropped) or `timeout` passes.
pub(crate) async fn wait(mut wait: Wait, timeout: Duration) {
    // `changed` fails once the sender is gone: that is the fill ending.
    let _ = tokio::time::timeout(timeout, async { while wait.0.changed().await.is_ok() {} }).await;
}
