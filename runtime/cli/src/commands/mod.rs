//! One module per command.

pub(crate) mod dev;
mod guest;
