//! A port's counters, like a switch's: frames and bytes each way and every drop with
//! its reason. "rx" is what the switch received from the port's node, "tx" what it
//! delivered to it.

use serde::{Deserialize, Serialize};

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The port is down (a pulled cable), either way.
    LinkDown,
    /// Nobody is bound at the port's remote end (node not started, or gone).
    NoPeer,
    /// The port's egress queue was full while its node did not read for the stall time.
    QueueFull,
    /// Impairment: `loss`.
    ImpairLoss,
    /// Impairment: more frames delayed than its `limit`.
    ImpairLimit,
    /// Shorter than an Ethernet header (14 bytes).
    Runt,
    /// The socket refused the frame for another reason (too long, ...).
    SendError,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drops {
    pub link_down: u64,
    pub no_peer: u64,
    pub queue_full: u64,
    pub impair_loss: u64,
    pub impair_limit: u64,
    pub runt: u64,
    pub send_error: u64,
}

impl Drops {
    pub fn add(&mut self, r: Reason, n: u64) {
        let c = match r {
            Reason::LinkDown => &mut self.link_down,
            Reason::NoPeer => &mut self.no_peer,
            Reason::QueueFull => &mut self.queue_full,
            Reason::ImpairLoss => &mut self.impair_loss,
            Reason::ImpairLimit => &mut self.impair_limit,
            Reason::Runt => &mut self.runt,
            Reason::SendError => &mut self.send_error,
        };
        *c += n;
    }

    pub fn total(&self) -> u64 {
        self.link_down
            + self.no_peer
            + self.queue_full
            + self.impair_loss
            + self.impair_limit
            + self.runt
            + self.send_error
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_dropped: Drops,
    pub tx_dropped: Drops,
    /// Impairment events on frames towards this port (not drops).
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    /// LAN: unicast frames for a MAC learned on the port they came from (not sent).
    pub filtered: u64,
    /// Times the switch stopped reading this port because a port it feeds was full
    /// (back-pressure instead of loss).
    pub paused: u64,
    /// Most frames ever waiting in this port's egress queue.
    pub queue_max: u64,
}
