//! What a request's [`Store`](wasmtime::Store) holds: WASI contexts, the resource table, the
//! outbound policy hooks, and the bookkeeping that enforces [`Limits`].

use wasmtime::component::ResourceTable;
use wasmtime::{CallHook, ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::host::cache::CacheCtx;
use crate::host::crypto::CryptoCtx;
use crate::host::fetch::OutboundHooks;
use crate::lanes::{LaneUse, LaneWaits, Lanes};
use crate::limits::{Limit, Limits};
use crate::telemetry::RequestTelemetry;

/// The data of one request's store. Created fresh for every request and dropped with it,
/// so nothing a guest does survives into the next request.
pub(crate) struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    pub(crate) crypto: CryptoCtx,
    pub(crate) cache: CacheCtx,
    memory: MemoryLimiter,
    cpu_ticks_left: u64,
    lanes: LaneUse,
    /// One epoch tick, and host work done for the guest not yet charged as ticks.
    tick_ns: u64,
    host_ns: u64,
    /// Whether the current host call charged its work itself (by the clock, not in ticks).
    host_charged: bool,
    /// Key material held by the request's crypto handles, bytes (bounded).
    pub(crate) key_bytes: usize,
    /// The limit that stopped the guest, if any: set before the trap it causes.
    pub(crate) tripped: Option<Limit>,
    /// Where host calls record spans and metrics.
    pub(crate) telemetry: RequestTelemetry,
}

/// What the host interfaces of one request work with.
pub(crate) struct HostContexts {
    pub(crate) hooks: OutboundHooks,
    pub(crate) crypto: CryptoCtx,
    pub(crate) cache: CacheCtx,
    pub(crate) telemetry: RequestTelemetry,
}

impl RequestState {
    pub(crate) fn new(
        wasi: WasiCtx,
        limits: &Limits,
        tick: std::time::Duration,
        hosts: HostContexts,
        lanes: &Lanes,
    ) -> Self {
        let HostContexts {
            hooks,
            crypto,
            cache,
            telemetry,
        } = hosts;
        let tick_ns = tick.as_nanos().max(1);
        let cpu_ticks = limits.cpu_time.as_nanos().div_ceil(tick_ns);
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            crypto,
            cache,
            memory: MemoryLimiter {
                limit: usize::try_from(limits.memory).unwrap_or(usize::MAX),
                exceeded: false,
                total: 0,
            },
            cpu_ticks_left: u64::try_from(cpu_ticks).unwrap_or(u64::MAX),
            lanes: LaneUse::new(lanes),
            tick_ns: u64::try_from(tick_ns).unwrap_or(u64::MAX),
            host_ns: 0,
            host_charged: false,
            key_bytes: 0,
            tripped: None,
            telemetry,
        }
    }

    /// For the code polling the guest: gives its long-running lane back whenever it waits.
    pub(crate) fn lane_waits(&self) -> LaneWaits {
        self.lanes.waits()
    }

    /// Bytes of linear memory the guest's instance has grown to (all memories).
    pub(crate) fn peak_memory(&self) -> u64 {
        self.memory.total as u64
    }

    pub(crate) fn table_ref(&self) -> &ResourceTable {
        &self.table
    }

    pub(crate) fn table_mut(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.memory
    }

    /// Whether the guest's last failure came from hitting its memory limit.
    pub(crate) fn memory_exceeded(&self) -> bool {
        self.memory.exceeded
    }

    /// The epoch callback: each tick observed while guest code runs is a tick of CPU time.
    /// The guest yields to the executor at every tick so that a busy guest cannot starve the
    /// other requests on its worker thread, and past a few milliseconds it runs only in a
    /// long-running lane (see [`crate::lanes`]); when its budget is spent it is interrupted.
    pub(crate) fn on_epoch_tick(
        mut store: StoreContextMut<'_, Self>,
    ) -> wasmtime::Result<UpdateDeadline> {
        let state = store.data_mut();
        if state.lanes.stale_tick() {
            return Ok(UpdateDeadline::Continue(1));
        }
        if state.cpu_ticks_left == 0 {
            state.tripped = Some(Limit::CpuTime);
            return Ok(UpdateDeadline::Interrupt);
        }
        state.cpu_ticks_left -= 1;
        Ok(state.lanes.on_tick())
    }
}

impl RequestState {
    /// Charges CPU work the host did for the guest, measured by the clock (crypto), to the
    /// guest's CPU time: a guest cannot get unmetered CPU by calling the host. (Other host
    /// calls are charged in whole epoch ticks by the call hook; a call that charged itself
    /// here is not charged again.) Traps with the CPU-time limit when the budget is spent.
    pub(crate) fn charge_host_work(
        &mut self,
        elapsed: std::time::Duration,
    ) -> wasmtime::Result<()> {
        self.host_charged = true;
        self.host_ns = self
            .host_ns
            .saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        let ticks = self.host_ns / self.tick_ns.max(1);
        self.host_ns %= self.tick_ns.max(1);
        self.charge_ticks(ticks)
    }

    /// Charges `ticks` of host work to the guest's CPU time; traps with the CPU-time limit
    /// when the budget is spent.
    fn charge_ticks(&mut self, ticks: u64) -> wasmtime::Result<()> {
        if ticks >= self.cpu_ticks_left && ticks > 0 {
            self.cpu_ticks_left = 0;
            self.tripped = Some(Limit::CpuTime);
            return Err(wasmtime::Error::msg(
                "the CPU-time limit was spent in host calls",
            ));
        }
        self.cpu_ticks_left -= ticks;
        Ok(())
    }
}

impl RequestState {
    /// Time spent in host calls (waiting for I/O above all) is not the guest's CPU time:
    /// restart the current tick when the guest resumes, so that only ticks that pass while
    /// guest code runs are counted. (A long-running lane is given back when the guest waits,
    /// by the code polling it: see [`crate::lanes::LaneWaits`].)
    pub(crate) fn on_call_hook(
        mut store: StoreContextMut<'_, Self>,
        hook: CallHook,
    ) -> wasmtime::Result<()> {
        match hook {
            CallHook::CallingHost => store.data_mut().lanes.on_calling_host(),
            CallHook::ReturningFromHost => {
                let state = store.data_mut();
                let ticks = state.lanes.on_returning_from_host();
                if ticks == 0 || std::mem::take(&mut state.host_charged) {
                    store.set_epoch_deadline(1);
                } else {
                    // Host work done for the guest without waiting is its CPU time: the
                    // ticks it took are charged, the last one by the epoch callback, which
                    // runs at once (deadline 0) and yields, or queues for a lane, as at any
                    // tick. Otherwise a guest calling the host in a loop (polling a
                    // thousand pollables over and over, say) would run unmetered.
                    state.charge_ticks(ticks - 1)?;
                    store.set_epoch_deadline(0);
                }
            }
            // The host calls into the guest mid-call too: `cabi_realloc`, to place a result
            // (the bytes of a read) in guest memory. The deadline set before the host call
            // may have passed while the host waited for I/O: without a fresh one, that
            // wait would be charged as a tick of CPU time.
            CallHook::CallingWasm => store.set_epoch_deadline(1),
            _ => {}
        }
        Ok(())
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Bounds linear memory and remembers whether the bound was hit, so that the resulting trap
/// can be reported as a memory-limit error rather than a generic crash.
struct MemoryLimiter {
    limit: usize,
    exceeded: bool,
    /// Bytes of all memories together (memories never shrink: this is also the peak).
    total: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.total = self.total.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
