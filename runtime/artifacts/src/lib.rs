//! Paths of the guest components, built for wasm32-wasip2 by this crate's build script.
//!
//! One constant per guest, named after its crate (`HELLO`, `LOOPING`, `MEMORY_BOMB`, ...),
//! and [`ALL`] listing them.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
