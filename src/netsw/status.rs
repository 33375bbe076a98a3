//! The switch's state as the control protocol's [`Status`].

use std::time::Duration;

use super::capture::Target;
use super::engine::{Engine, Wire};
use super::mac;
use super::proto::{CaptureStatus, MacEntry, NetStatus, PortStatus, QueueStatus, Status};

impl<W: Wire> Engine<W> {
    pub fn status(&self, now: Duration) -> Status {
        let networks = self
            .nets
            .iter()
            .map(|n| NetStatus {
                name: n.name.clone(),
                kind: n.kind,
                impair: n.impair.as_ref().map(|i| i.to_config()),
                ports: n.ports.iter().map(|&q| self.port_status(q)).collect(),
                macs: n.macs.as_ref().map_or_else(Vec::new, |m| {
                    m.entries(now)
                        .into_iter()
                        .map(|(k, q, age)| MacEntry {
                            mac: mac::text(k),
                            port: self.ports[q].name.clone(),
                            age_ms: age.as_millis() as u64,
                        })
                        .collect()
                }),
                mac_overflow: n.macs.as_ref().map_or(0, |m| m.overflow),
            })
            .collect();
        let captures = self
            .taps
            .iter()
            .map(|t| CaptureStatus {
                id: t.id,
                target: match t.target {
                    Target::Net(n) => self.nets[n].name.clone(),
                    Target::Port(p) => self.ports[p].name.clone(),
                },
                format: t.format,
                path: t.path().map(Into::into),
                frames: t.frames,
                dropped: t.dropped,
                error: t.error.clone(),
            })
            .collect();
        Status {
            uptime_ms: now.as_millis() as u64,
            networks,
            captures,
            buffers_allocated: self.pool.allocated,
        }
    }

    fn port_status(&self, q: usize) -> PortStatus {
        let p = &self.ports[q];
        let (local, remote) = p.wire.endpoints();
        let (depth, impaired, stalled) = self.queue_state(q);
        PortStatus {
            name: p.name.clone(),
            local,
            remote,
            up: p.up,
            connected: p.wire.connected(),
            impair: self.own_impair(q).map(|i| i.to_config()),
            queue: QueueStatus {
                depth,
                capacity: self.queue_cap(),
                impaired,
                stalled,
            },
            counters: p.counters.clone(),
        }
    }
}
