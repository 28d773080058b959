//! The one `bindgen!` of the host: binds the `virga:edge/handler` world of `wit/`.
//!
//! Every standard WASI interface maps onto the implementations in `wasmtime-wasi` and
//! `wasmtime-wasi-http`, so only Virga's own interfaces are generated here. The generated
//! [`HandlerPre`] is what a deployment keeps: a component whose imports are already resolved,
//! ready for a fresh instance per request.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "virga:edge/handler",
    imports: { default: async | trappable },
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "virga:edge/crypto.key": crate::host::crypto::KeyHandle,
        "virga:edge/cache.entry": crate::host::cache::CacheEntry,
        "virga:edge/cache.writer": crate::host::cache::CacheWriter,
        "virga:edge/cache.fill-token": crate::host::cache::FillToken,
    },
});
