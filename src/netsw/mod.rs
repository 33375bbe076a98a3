//! The lab switch: one process (`vmrun switch --config FILE`, started by the lab
//! supervisor) serves every cable and LAN of a lab.
//!
//! ```text
//!  node r1 (vmrun, dgram NIC)        vmrun switch                   node r2 (QEMU)
//!  binds r1-net0.sock  ──frames──▶  port r1:net0 ─┐ link  ┌─ port r2:net0 ◀── binds r2-net0.sock
//!  sends to sw/r1-net0 ◀──frames──  (sw/r1-net0)   └──────┘ (sw/r2-net0)     sends to sw/r2-net0
//!                                   port h1:net0 ── lan ── port x:uplink ◀─ udp:// ─▶ a switch on another host
//! ```
//!
//! - A **port** ([`wire`]) is a datagram socket the switch binds (`local`) and the
//!   node's socket it sends to (`remote`), one raw Ethernet frame per datagram: unix
//!   sockets as QEMU's `-netdev dgram` (so a stock QEMU joins by binding `remote` and
//!   sending to `local`), or UDP (`udp://HOST:PORT`, as QEMU dgram/inet and libvirt UDP
//!   tunnels) for cables between hosts. The port keeps its peer's address, so a node
//!   that restarts is plugged in again without touching the switch
//!   ([`crate::backends::dgram_sock`]).
//! - A **network** ([`engine`]) is a `link` (two ports) or a `lan` (a learning switch:
//!   MAC table with ageing, flooding of broadcast, multicast and unknown unicast).
//! - **No silent loss**: ports are connected sockets with large buffers (no 10-datagram
//!   queue limit), the switch queues a bounded number of frames per port and stops
//!   reading senders while a receiver's queue is full (back-pressure); a receiver that
//!   stops reading for the stall time is cut off and its frames dropped. Every drop is
//!   counted per port with its reason ([`counters`]).
//! - **Impairment** ([`impair`]): delay, jitter, loss, duplicate, reorder, corrupt and a
//!   token-bucket rate, per network or per direction, seeded for repeatable tests.
//! - **Capture** ([`capture`]): pcap or pcapng of a network or a port, to a file or
//!   streamed over the control socket; free when nobody captures.
//! - **Cable pulls**: a port set down drops frames both ways (counted).
//! - **Control** ([`control`], protocol in [`proto`], Rust client in [`client`]): JSON
//!   lines over a 0600 unix socket: status, impair, link up/down, capture.
//! - **Config** ([`config`]): JSON (or TOML) written by the supervisor.
//! - **Security**: socket directories are created 0700 and refused if another user
//!   owns them or may write to them; sockets are 0600, and connected, so that only the
//!   configured peer's socket can send to a port
//!   ([`crate::backends::private_dir`]).
//! - [`run`]: one thread, one `ppoll` loop with nanosecond timeouts from the engine's
//!   deadlines; the frame path allocates nothing (frames are borrowed from the receive
//!   buffer or queued in recycled buffers, [`frame`]).
//!
//! What the lab supervisor does with it: build a [`config::Config`], `write` it to the
//! lab's state directory, start `vmrun switch --config FILE`, then
//! [`client::Client::connect_wait`] on its control socket (it exists once every port
//! is bound), and give each node NIC `backend = "dgram"` with `local` = the port's
//! `remote` and `remote` = the port's `local`.

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
