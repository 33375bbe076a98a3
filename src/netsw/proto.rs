//! The control protocol's messages: one JSON object per line each way.
//!
//! Requests (`"cmd"` picks one):
//! - `{"cmd":"status"}` → `{"ok":true,"status":{...}}` ([`Status`]: every network, its
//!   ports with their counters, queues, impairment and link state, its MAC table, and
//!   the running captures).
//! - `{"cmd":"impair","network":"r1-r2","impair":{"delay":"20ms","loss":"1%"}}` sets a
//!   network's impairment (both directions of a link); with `"to":"r2:net0"` only the
//!   frames delivered to that port. `"impair":null` (or leaving it out) clears it.
//! - `{"cmd":"link","target":"r1:net0","up":false}`: pull (or plug back) the cable of
//!   a port, or of every port of a network when `target` names one.
//! - `{"cmd":"capture","target":"lan","path":"/abs/lan.pcap","format":"pcapng"}` →
//!   `{"ok":true,"id":3}` starts writing a capture file (`format` defaults from the
//!   extension); `{"cmd":"capture_stop","id":3}` ends it.
//! - `{"cmd":"capture_stream","target":"r1:net0","format":"pcap"}` → `{"ok":true,"id":4}`,
//!   after which the connection carries the capture's bytes (pcap header first) until
//!   the client closes it: `vmrun lab capture ... -w - | tcpdump -r -`.
//! - `{"cmd":"shutdown"}` → `{"ok":true}`, then the switch exits.
//!
//! A request that cannot be done answers `{"ok":false,"error":"..."}`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::capture::Format;
use super::config::NetKind;
use super::counters::PortCounters;
use super::impair::ImpairConfig;

// One request per control round trip: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Impair {
        network: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default)]
        impair: Option<ImpairConfig>,
    },
    Link {
        target: String,
        up: bool,
    },
    Capture {
        target: String,
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<Format>,
    },
    CaptureStop {
        id: u64,
    },
    CaptureStream {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<Format>,
    },
    Shutdown,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Response {
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    pub fn err(e: impl std::fmt::Display) -> Self {
        Self {
            error: Some(e.to_string()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub uptime_ms: u64,
    pub networks: Vec<NetStatus>,
    pub captures: Vec<CaptureStatus>,
    /// Frame buffers the switch ever allocated (stays flat once warmed up).
    pub buffers_allocated: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetStatus {
    pub name: String,
    pub kind: NetKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<ImpairConfig>,
    pub ports: Vec<PortStatus>,
    #[serde(default)]
    pub macs: Vec<MacEntry>,
    /// LAN: addresses not learned because the table was full.
    #[serde(default)]
    pub mac_overflow: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortStatus {
    pub name: String,
    pub local: String,
    pub remote: String,
    pub up: bool,
    /// A peer socket is there (unix) or configured (UDP).
    pub connected: bool,
    /// This port's own impairment (frames delivered to it), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<ImpairConfig>,
    pub queue: QueueStatus,
    pub counters: PortCounters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Frames waiting in the egress queue now, and its size.
    pub depth: usize,
    pub capacity: usize,
    /// Frames held by this port's impairment (delay line and shaper).
    pub impaired: usize,
    /// The node has not read for the stall time: frames to it are dropped, it no
    /// longer holds its network back.
    pub stalled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MacEntry {
    pub mac: String,
    pub port: String,
    pub age_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureStatus {
    pub id: u64,
    pub target: String,
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    pub frames: u64,
    pub dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Status {
    pub fn network(&self, name: &str) -> Option<&NetStatus> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn port(&self, name: &str) -> Option<&PortStatus> {
        self.networks
            .iter()
            .flat_map(|n| &n.ports)
            .find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let r: Request = serde_json::from_str(
            r#"{"cmd":"impair","network":"l","to":"a","impair":{"delay":"20ms"}}"#,
        )
        .unwrap();
        assert!(matches!(
            r,
            Request::Impair {
                to: Some(_),
                impair: Some(_),
                ..
            }
        ));
        let r: Request = serde_json::from_str(r#"{"cmd":"impair","network":"l"}"#).unwrap();
        assert!(matches!(r, Request::Impair { impair: None, .. }));
        let r: Request =
            serde_json::from_str(r#"{"cmd":"capture_stream","target":"x","format":"pcapng"}"#)
                .unwrap();
        assert_eq!(
            r,
            Request::CaptureStream {
                target: "x".into(),
                format: Some(Format::Pcapng)
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"nope"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
    }
}
