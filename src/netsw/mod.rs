//! The lab switch (`vmrun switch --config FILE`): one process that serves every link
//! and LAN of a lab.
pub mod capture;
pub mod client;
pub mod config;
pub mod control;
pub mod counters;
pub mod engine;
pub mod frame;
pub mod impair;
pub mod mac;
pub mod proto;
pub mod rng;
pub mod run;
pub mod status;
pub mod units;
pub mod wire;
