//! One module per command.

mod client;
pub(crate) mod delete;
pub(crate) mod deploy;
pub(crate) mod dev;
mod guest;
pub(crate) mod list;
pub(crate) mod rollback;
pub(crate) mod serve;
