//! The host side of the interfaces guests import beyond plain WASI: one file per interface,
//! each over a backend trait that embedders can swap.

pub(crate) mod cache;
pub(crate) mod crypto;
pub(crate) mod fetch;
