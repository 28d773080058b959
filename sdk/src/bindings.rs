//! The SDK's one `generate!`: Virga's own interfaces (`virga:edge/sdk` in `wit/`). Their
//! `wasi:io` streams are the `wasip2` crate's, so they splice with request and response bodies.

#![allow(missing_docs, unreachable_pub, clippy::all)]

wit_bindgen::generate!({
    path: "../wit",
    world: "virga:edge/sdk",
    with: {
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
    },
});
