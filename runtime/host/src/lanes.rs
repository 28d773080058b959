//! Sharing the CPU between long-running guests and everyone else.
//!
//! A guest yields to the executor at every epoch tick, which keeps one busy guest from
//! starving the requests on its worker thread; but many busy guests at once (CPU loops,
//! memory bombs, heavy handlers) would still fill every worker, and a short request would
//! queue behind all of them. So a guest that has run longer than [`Lanes::after`] of CPU
//! time continues only while it holds one of a few *long-running lanes*, which such guests
//! take turns at, one tick at a time (a fair, first-come queue). Short requests never wait
//! for a lane: whatever long guests do, they leave the other workers to the short ones. A
//! guest gives its lane back whenever it has to wait (for I/O, a timer, its turn), so a lane
//! is only ever held by a guest that is running — its own code or the host calls it makes
//! that finish at once. (Giving it back at every host call instead would let a guest that
//! calls the host in a tight loop — appending thousands of header fields, writing stdout a
//! line at a time — run on outside the lanes.)
//!
//! Time a guest spends yielded (waiting for a worker or a lane) is not its CPU time. Its next
//! tick's deadline was set before it yielded, so when it resumes after the epoch has moved
//! on, the deadline has already passed: that first tick after a resume is not charged unless
//! the epoch advanced while the guest was running again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::UpdateDeadline;

/// The long-running lanes of a runtime.
#[derive(Clone, Debug)]
pub(crate) struct Lanes {
    lanes: Arc<Semaphore>,
    /// The engine's epoch, as counted by the runtime's ticker (wasmtime does not expose it).
    epoch: Arc<AtomicU64>,
    /// Epoch ticks of CPU time after which a guest counts as long-running.
    after_ticks: u64,
}

impl Lanes {
    /// CPU time after which a guest is long-running: far above what a typical handler uses
    /// (tens to hundreds of microseconds), far below the default CPU limit (50 ms). Counted
    /// in whole ticks, so a guest is long-running after between 1 and 2 ms with the default
    /// 1 ms tick.
    pub(crate) const AFTER: Duration = Duration::from_millis(2);

    /// `count` lanes (at least one); ticks of `tick`.
    pub(crate) fn new(count: usize, tick: Duration, epoch: Arc<AtomicU64>) -> Self {
        let tick_ns = tick.as_nanos().max(1);
        Self {
            lanes: Arc::new(Semaphore::new(count.max(1))),
            epoch,
            after_ticks: u64::try_from(Self::AFTER.as_nanos().div_ceil(tick_ns)).unwrap_or(1),
        }
    }

    /// The default number of lanes: half the machine's cores, at least one.
    pub(crate) fn default_count() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }
}

/// One request's use of the lanes.
#[derive(Debug)]
pub(crate) struct LaneUse {
    lanes: Lanes,
    ticks: u64,
    /// Shared with the guest's pending yield and with the code that polls the guest.
    turn: Arc<Turn>,
    /// The epoch and the count of waits when the guest last called into the host.
    host_call: (u64, u64),
}

/// What a guest's yield leaves behind for its next tick.
#[derive(Debug)]
struct Turn {
    /// The lane held during the current tick, once the guest is long-running.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Whether `permit` holds a lane (read without the lock on every wait).
    holding: AtomicBool,
    /// How many times the guest has waited (its poll returned pending).
    waits: AtomicU64,
    /// The epoch when the guest last resumed from a yield ([`NOT_RESUMED`] if it has not
    /// since its last tick).
    resumed_at: AtomicU64,
}

const NOT_RESUMED: u64 = u64::MAX;

impl LaneUse {
    pub(crate) fn new(lanes: &Lanes) -> Self {
        Self {
            lanes: lanes.clone(),
            ticks: 0,
            turn: Arc::new(Turn {
                permit: Mutex::new(None),
                holding: AtomicBool::new(false),
                waits: AtomicU64::new(0),
                resumed_at: AtomicU64::new(NOT_RESUMED),
            }),
            host_call: (0, 0),
        }
    }

    /// The guest calls into the host.
    pub(crate) fn on_calling_host(&mut self) {
        self.host_call = (
            self.lanes.epoch.load(Ordering::Relaxed),
            self.turn.waits.load(Ordering::Relaxed),
        );
    }

    /// The guest's host call returns: the epoch ticks it took if it never waited (work the
    /// host did for the guest, which is the guest's CPU time like its own code), else 0 (it
    /// waited for I/O, a timer or another task: not CPU time).
    /// Those ticks count towards the guest becoming long-running, the last one through the
    /// [`on_tick`](Self::on_tick) its caller makes happen.
    pub(crate) fn on_returning_from_host(&mut self) -> u64 {
        let (epoch, waits) = self.host_call;
        if self.turn.waits.load(Ordering::Relaxed) != waits {
            return 0;
        }
        let ticks = self
            .lanes
            .epoch
            .load(Ordering::Relaxed)
            .saturating_sub(epoch);
        self.ticks += ticks.saturating_sub(1);
        ticks
    }

    /// What the code polling the guest uses to give the lane back whenever the guest waits.
    pub(crate) fn waits(&self) -> LaneWaits {
        LaneWaits(self.turn.clone())
    }

    /// Whether the tick that just fired was caused by time spent yielded rather than
    /// running: the guest resumed after its deadline and the epoch has not moved since.
    pub(crate) fn stale_tick(&self) -> bool {
        let resumed = self.turn.resumed_at.swap(NOT_RESUMED, Ordering::Relaxed);
        resumed != NOT_RESUMED && resumed == self.lanes.epoch.load(Ordering::Relaxed)
    }

    /// At an epoch tick: a short guest just yields; a long-running one gives back its lane
    /// and queues for one again before it goes on.
    pub(crate) fn on_tick(&mut self) -> UpdateDeadline {
        self.ticks += 1;
        let turn = self.turn.clone();
        let epoch = self.lanes.epoch.clone();
        let lanes = (self.ticks > self.lanes.after_ticks).then(|| {
            turn.release();
            self.lanes.lanes.clone()
        });
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                // Yield at every tick like any guest (an uncontended lane must not make a
                // busy guest run on without ever letting the executor check its timers).
                tokio::task::yield_now().await;
                if let Some(lanes) = lanes
                    && let Ok(permit) = lanes.acquire_owned().await
                {
                    *turn.permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
                    turn.holding.store(true, Ordering::Relaxed);
                }
                turn.resumed_at
                    .store(epoch.load(Ordering::Relaxed), Ordering::Relaxed);
            }),
        )
    }
}

impl Turn {
    fn release(&self) {
        if self.holding.swap(false, Ordering::Relaxed) {
            drop(self.permit.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
    }
}

/// Held by the code that polls a guest: whenever the guest has to wait, its lane is free
/// for others meanwhile.
#[derive(Debug)]
pub(crate) struct LaneWaits(Arc<Turn>);

impl LaneWaits {
    /// The guest's poll returned pending: it waits (for I/O, a timer, a worker or a lane).
    /// A lane it holds goes back to the queue; it queues again at its next tick.
    pub(crate) fn waiting(&self) {
        self.0.waits.fetch_add(1, Ordering::Relaxed);
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `turn` completes within a short while.
    async fn ends(turn: &mut std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> bool {
        tokio::time::timeout(Duration::from_millis(20), turn.as_mut())
            .await
            .is_ok()
    }

    fn queue(guest: &mut LaneUse) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        match guest.on_tick() {
            UpdateDeadline::YieldCustom(1, turn) => turn,
            _ => panic!("a guest yields at every tick"),
        }
    }

    #[tokio::test]
    async fn long_running_guests_take_turns_at_the_lanes() {
        let lanes = Lanes::new(1, Duration::from_millis(1), Arc::default());
        let (mut a, mut b) = (LaneUse::new(&lanes), LaneUse::new(&lanes));
        for _ in 0..Lanes::AFTER.as_millis() {
            assert!(ends(&mut queue(&mut a)).await, "short guests only yield");
            assert!(ends(&mut queue(&mut b)).await, "short guests only yield");
        }
        // Both are long-running now: a gets the one lane, b waits until a's next tick.
        assert!(ends(&mut queue(&mut a)).await, "the lane is free");
        let mut b_turn = queue(&mut b);
        assert!(!ends(&mut b_turn).await, "the lane is a's");
        // a waits for I/O: its lane goes to b.
        a.waits().waiting();
        assert!(ends(&mut b_turn).await, "b has the lane");
        let mut a_turn = queue(&mut a);
        assert!(!ends(&mut a_turn).await, "the lane is b's");
        drop((b, b_turn));
        assert!(
            ends(&mut a_turn).await,
            "a request that ends frees its lane"
        );
    }

    #[tokio::test]
    async fn an_uncontended_lane_still_yields_to_the_executor() {
        let lanes = Lanes::new(1, Duration::from_millis(1), Arc::default());
        let mut guest = LaneUse::new(&lanes);
        for _ in 0..=Lanes::AFTER.as_millis() {
            guest.on_tick();
        }
        let mut turn = queue(&mut guest);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(turn.as_mut().poll(&mut cx).is_pending(), "yields once");
        assert!(
            turn.as_mut().poll(&mut cx).is_ready(),
            "then takes the free lane"
        );
    }

    #[tokio::test]
    async fn time_spent_yielded_is_not_charged() {
        let epoch = Arc::new(AtomicU64::new(7));
        let lanes = Lanes::new(1, Duration::from_millis(1), epoch.clone());
        let mut guest = LaneUse::new(&lanes);
        assert!(!guest.stale_tick(), "a first tick is the guest's own");
        let mut turn = queue(&mut guest);
        // The guest waits for the executor while the epoch moves on, then resumes.
        epoch.store(9, Ordering::Relaxed);
        assert!(ends(&mut turn).await);
        assert!(
            guest.stale_tick(),
            "the deadline passed while yielded: not charged"
        );
        // The next tick comes after the guest ran across an epoch increment: charged.
        let mut turn = queue(&mut guest);
        assert!(ends(&mut turn).await);
        epoch.store(10, Ordering::Relaxed);
        assert!(!guest.stale_tick(), "ran across an increment: charged");
    }
}
