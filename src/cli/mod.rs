//! Subcommands of the `vmrun` binary that have grown beyond a few lines.

pub mod ctl;
pub mod lab;
pub mod restore;
