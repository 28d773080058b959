//! The shared wasmtime [`Engine`]: pooling allocator, copy-on-write memory images, and the
//! epoch ticker that drives CPU-time limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::Error;

/// How the engine is sized. Part of [`RuntimeBuilder`](crate::RuntimeBuilder).
#[derive(Clone, Debug)]
pub(crate) struct EngineOptions {
    pub(crate) pooling: bool,
    pub(crate) max_instances: u32,
    pub(crate) max_memory: u64,
    pub(crate) epoch_tick: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 1000,
            max_memory: 4 << 30,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

/// Builds the engine every deployment of a runtime shares.
pub(crate) fn build_engine(options: &EngineOptions) -> Result<Engine, Error> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.wasm_component_model(true);
    // Guests run on fibers; keep the stack modest so the pool stays small.
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    if options.pooling {
        let mut pool = PoolingAllocationConfig::new();
        let components = options.max_instances;
        pool.total_component_instances(components)
            .total_core_instances(components.saturating_mul(4))
            .total_memories(components)
            .total_tables(components.saturating_mul(4))
            .total_stacks(components)
            .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX))
            // Keep the first pages of each slot resident and reset them with a pagemap scan
            // instead of madvise: most of a small handler's memory is reused, not refaulted.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))
}

/// Increments the engine's epoch at a fixed interval on a dedicated thread, so that a guest
/// running on a worker thread notices it has used up its time. Stops when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking; `epoch` mirrors the engine's epoch (wasmtime does not expose it).
    pub(crate) fn start(
        engine: &Engine,
        tick: Duration,
        epoch: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("virga-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => {
                            engine.increment_epoch();
                            epoch.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
