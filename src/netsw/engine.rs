//! The switching engine, free of sockets and clocks (time is a [`Duration`] since the
//! switch started, passed in), so that tests drive it with a fake clock and fake
//! wires.
//!
//! A frame received on a port ([`Engine::ingress`]) goes, on a link, to the other port;
//! on a LAN, to the port its destination MAC was learned on, or to every other port for
//! broadcast, multicast and unknown unicast. Towards each destination port it passes
//! that port's impairment ([`super::impair::Shaper`], if any), then is sent on the
//! port's wire straight away or, if the wire is full, waits in the port's egress queue
//! (`queue` frames) for [`Engine::drain`] (the wire polled writable).
//!
//! Nothing is dropped because a node is slow for a moment: while any port of a network
//! has a full egress queue, the switch stops reading the network's other ports
//! ([`Engine::readable`] is false), so their senders wait (back-pressure, like 802.3x
//! pause frames) instead of losing frames. A port whose queue stays full for the
//! `stall` time without sending anything (its node stopped reading) stops holding the
//! network back; frames to it are then dropped as `queue_full` until it moves again.
//! Every drop is counted on its port with its reason ([`super::counters`]). A full wire
//! is tried again every [`RETRY`] besides being polled writable, so progress is seen
//! at once (a socket polls writable only once its buffer is three quarters empty).
//!
//! The per-frame path allocates nothing: the frame is borrowed from the receive buffer
//! for a direct send and copied into a recycled [`Pool`] buffer only to be queued.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use super::capture::{Dir, Format, Sink, Tap, Target};
use super::config::{NetKind, Plan, PortPlan};
use super::counters::{PortCounters, Reason};
use super::frame::{Frame, Pool};
use super::impair::{Impair, Shaper};
use super::mac::{self, MacTable};
use crate::backends::dgram_sock::Sent;

/// How soon a full wire is tried again.
pub const RETRY: Duration = Duration::from_millis(1);

/// A port's connection to its node.
pub trait Wire {
    /// Sends one frame without blocking.
    fn send(&mut self, frame: &[u8], now: Duration) -> io::Result<Sent>;
    /// Whether a peer is there to send to.
    fn connected(&self) -> bool;
    /// The switch's end and the node's, for status.
    fn endpoints(&self) -> (String, String) {
        (String::new(), String::new())
    }
}

pub struct Port<W> {
    pub name: String,
    pub net: usize,
    pub wire: W,
    pub up: bool,
    pub counters: PortCounters,
    egress: VecDeque<Frame>,
    shaper: Option<Shaper>,
    own_impair: Option<Impair>,
    /// The egress queue has been full since then, without a frame sent.
    full_since: Option<Duration>,
    stalled: bool,
    /// Full and not stalled: the network's other ports are not read.
    blocking: bool,
    /// The wire was full: try it again then (POLLOUT alone would wait until the
    /// socket buffer is three quarters empty).
    retry_at: Option<Duration>,
    paused: bool,
    tapped: bool,
}

pub struct Net {
    pub name: String,
    pub kind: NetKind,
    pub ports: Vec<usize>,
    pub macs: Option<MacTable>,
    pub impair: Option<Impair>,
    tapped: bool,
    /// How many of its ports are blocking.
    blocking: usize,
}

pub struct Engine<W> {
    pub ports: Vec<Port<W>>,
    pub nets: Vec<Net>,
    pub pool: Pool,
    pub taps: Vec<Tap>,
    next_tap: u64,
    queue_cap: usize,
    stall: Duration,
    seed: u64,
    /// Wall-clock time (since the Unix epoch) at time zero, for capture timestamps.
    wall0: Duration,
}

/// A frame on its way out: borrowed from the receive buffer, or owned by a queue.
enum Out<'a> {
    Slice(&'a [u8]),
    Owned(Frame),
}

impl Out<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Out::Slice(s) => s,
            Out::Owned(f) => f.bytes(),
        }
    }

    fn done(self, pool: &mut Pool) {
        if let Out::Owned(f) = self {
            pool.give(f);
        }
    }

    fn into_frame(self, pool: &mut Pool) -> Frame {
        match self {
            Out::Slice(s) => pool.copy(s),
            Out::Owned(f) => f,
        }
    }
}

impl<W: Wire> Engine<W> {
    /// The networks and ports of `plan`, each port's wire made by `open`.
    pub fn build<E>(
        plan: &Plan,
        wall0: Duration,
        mut open: impl FnMut(&PortPlan) -> Result<W, E>,
    ) -> Result<Self, E> {
        let mut e = Self {
            ports: Vec::new(),
            nets: Vec::new(),
            pool: Pool::default(),
            taps: Vec::new(),
            next_tap: 1,
            queue_cap: plan.queue,
            stall: plan.stall,
            seed: plan.seed,
            wall0,
        };
        for (n, np) in plan.nets.iter().enumerate() {
            let mut ports = Vec::new();
            for pp in &np.ports {
                ports.push(e.ports.len());
                e.ports.push(Port {
                    name: pp.name.clone(),
                    net: n,
                    wire: open(pp)?,
                    up: pp.up,
                    counters: PortCounters::default(),
                    egress: VecDeque::with_capacity(plan.queue),
                    shaper: None,
                    own_impair: pp.impair,
                    full_since: None,
                    stalled: false,
                    blocking: false,
                    retry_at: None,
                    paused: false,
                    tapped: false,
                });
            }
            e.nets.push(Net {
                name: np.name.clone(),
                kind: np.kind,
                macs: (np.kind == NetKind::Lan).then(|| MacTable::new(np.ageing)),
                impair: np.impair,
                ports,
                tapped: false,
                blocking: 0,
            });
        }
        for q in 0..e.ports.len() {
            e.apply_impair(q);
        }
        Ok(e)
    }

    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    pub fn net_index(&self, name: &str) -> Option<usize> {
        self.nets.iter().position(|n| n.name == name)
    }

    pub fn queue_cap(&self) -> usize {
        self.queue_cap
    }

    /// A frame the node of port `p` sent.
    pub fn ingress(&mut self, p: usize, data: &[u8], now: Duration) {
        let port = &mut self.ports[p];
        port.counters.rx_frames += 1;
        port.counters.rx_bytes += data.len() as u64;
        if data.len() < 14 {
            port.counters.rx_dropped.add(Reason::Runt, 1);
            return;
        }
        if !port.up {
            port.counters.rx_dropped.add(Reason::LinkDown, 1);
            return;
        }
        let n = port.net;
        if port.tapped || self.nets[n].tapped {
            self.record(p, Some(n), Dir::FromNode, data, now);
        }
        // LAN: learn the source, look the destination up (None: flood).
        let known = match &mut self.nets[n].macs {
            None => None,
            Some(macs) => {
                if data[6] & 1 == 0 {
                    macs.learn(mac::key(&data[6..12]), p, now);
                }
                (data[0] & 1 == 0)
                    .then(|| macs.lookup(mac::key(&data[..6]), now))
                    .flatten()
            }
        };
        match known {
            Some(q) if q == p => self.ports[p].counters.filtered += 1,
            Some(q) => self.deliver(q, data, now),
            None => {
                for i in 0..self.nets[n].ports.len() {
                    let q = self.nets[n].ports[i];
                    if q != p {
                        self.deliver(q, data, now);
                    }
                }
            }
        }
    }

    /// Towards port `q`: through its impairment, or out.
    fn deliver(&mut self, q: usize, data: &[u8], now: Duration) {
        let port = &mut self.ports[q];
        if !port.up {
            port.counters.tx_dropped.add(Reason::LinkDown, 1);
            return;
        }
        if let Some(sh) = &mut port.shaper {
            sh.push(data, now, &mut self.pool, &mut port.counters);
            return;
        }
        self.output(q, Out::Slice(data), now);
    }

    /// Sends on `q`'s wire if nothing waits before it, else queues.
    fn output(&mut self, q: usize, out: Out<'_>, now: Duration) {
        let port = &mut self.ports[q];
        if port.egress.is_empty() {
            match port.wire.send(out.bytes(), now) {
                Ok(Sent::Sent) => {
                    self.sent(q, out.bytes(), now);
                    out.done(&mut self.pool);
                    return;
                }
                Ok(Sent::Full) => port.retry_at = Some(now + RETRY),
                Ok(Sent::NoPeer) => {
                    port.counters.tx_dropped.add(Reason::NoPeer, 1);
                    out.done(&mut self.pool);
                    return;
                }
                Err(_) => {
                    port.counters.tx_dropped.add(Reason::SendError, 1);
                    out.done(&mut self.pool);
                    return;
                }
            }
        }
        if port.egress.len() >= self.queue_cap {
            port.counters.tx_dropped.add(Reason::QueueFull, 1);
            out.done(&mut self.pool);
            return;
        }
        port.egress.push_back(out.into_frame(&mut self.pool));
        port.counters.queue_max = port.counters.queue_max.max(port.egress.len() as u64);
        self.refresh(q, now);
    }

    fn sent(&mut self, q: usize, data: &[u8], now: Duration) {
        let port = &mut self.ports[q];
        port.counters.tx_frames += 1;
        port.counters.tx_bytes += data.len() as u64;
        if port.tapped {
            self.record(q, None, Dir::ToNode, data, now);
        }
    }

    /// Port `q`'s wire polled writable: sends what waits.
    pub fn drain(&mut self, q: usize, now: Duration) {
        while let Some(f) = self.ports[q].egress.pop_front() {
            let port = &mut self.ports[q];
            match port.wire.send(f.bytes(), now) {
                Ok(Sent::Sent) => {
                    port.stalled = false;
                    port.full_since = None;
                    self.sent(q, f.bytes(), now);
                    self.pool.give(f);
                }
                Ok(Sent::Full) => {
                    port.egress.push_front(f);
                    port.retry_at = Some(now + RETRY);
                    break;
                }
                Ok(Sent::NoPeer) => {
                    let n = port.egress.len() as u64 + 1;
                    port.counters.tx_dropped.add(Reason::NoPeer, n);
                    self.pool.give(f);
                    self.flush_egress(q);
                }
                Err(_) => {
                    port.counters.tx_dropped.add(Reason::SendError, 1);
                    self.pool.give(f);
                }
            }
        }
        self.refresh(q, now);
    }

    fn flush_egress(&mut self, q: usize) -> u64 {
        let mut n = 0;
        while let Some(f) = self.ports[q].egress.pop_front() {
            self.pool.give(f);
            n += 1;
        }
        n
    }

    /// Recomputes whether `q` holds its network back.
    fn refresh(&mut self, q: usize, now: Duration) {
        let port = &mut self.ports[q];
        let full = port.egress.len() >= self.queue_cap;
        if !full {
            port.full_since = None;
            port.stalled = false;
        } else if port.full_since.is_none() {
            port.full_since = Some(now);
        }
        let blocking = full && !port.stalled && port.up;
        if blocking != port.blocking {
            port.blocking = blocking;
            let net = &mut self.nets[port.net];
            if blocking {
                net.blocking += 1;
            } else {
                net.blocking -= 1;
            }
        }
    }

    /// Whether to read port `p` now: no other port of its network is full.
    pub fn readable(&mut self, p: usize) -> bool {
        let port = &mut self.ports[p];
        let others = self.nets[port.net].blocking - usize::from(port.blocking);
        let paused = others > 0;
        if paused && !port.paused {
            port.counters.paused += 1;
        }
        port.paused = paused;
        !paused
    }

    /// Whether port `q` has frames waiting for its wire to be writable.
    pub fn wants_write(&self, q: usize) -> bool {
        !self.ports[q].egress.is_empty()
    }

    /// Releases impaired frames that are due and applies the stall rule.
    pub fn tick(&mut self, now: Duration) {
        for q in 0..self.ports.len() {
            let port = &mut self.ports[q];
            if !port.egress.is_empty() && port.retry_at.is_some_and(|t| t <= now) {
                port.retry_at = None;
                self.drain(q, now);
            }
            loop {
                let port = &mut self.ports[q];
                let room = port.egress.len() < self.queue_cap;
                let f = match &mut port.shaper {
                    Some(sh) if room => sh.due(now).then(|| sh.pop()).flatten(),
                    _ => None,
                };
                let Some(f) = f else { break };
                self.output(q, Out::Owned(f), now);
            }
            let port = &mut self.ports[q];
            if port
                .shaper
                .as_ref()
                .is_some_and(|s| s.is_empty() && s.spec().is_none())
            {
                port.shaper = None;
            }
            if port.blocking && port.full_since.is_some_and(|t| now >= t + self.stall) {
                port.stalled = true;
                self.refresh(q, now);
            }
        }
    }

    /// When [`Engine::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut at = |t: Duration| next = Some(next.map_or(t, |n| n.min(t)));
        for p in &self.ports {
            if p.egress.len() < self.queue_cap {
                if let Some(t) = p.shaper.as_ref().and_then(Shaper::next_due) {
                    at(t);
                }
            }
            if p.blocking {
                if let Some(t) = p.full_since {
                    at(t + self.stall);
                }
            }
            if let (false, Some(t)) = (p.egress.is_empty(), p.retry_at) {
                at(t);
            }
        }
        next
    }

    /// Pulls or plugs port `q`'s cable. Down drops what waits for it and forgets the
    /// addresses learned on it.
    pub fn set_up(&mut self, q: usize, up: bool, now: Duration) {
        if !up {
            let mut n = self.flush_egress(q);
            if let Some(sh) = &mut self.ports[q].shaper {
                n += sh.flush(&mut self.pool);
            }
            let port = &mut self.ports[q];
            port.counters.tx_dropped.add(Reason::LinkDown, n);
            if let Some(m) = &mut self.nets[port.net].macs {
                m.flush_port(q);
            }
        }
        self.ports[q].up = up;
        self.refresh(q, now);
    }

    /// Sets (or with `None` clears) the impairment of network `n`, or of the frames
    /// delivered to its port `to`.
    pub fn set_impair(&mut self, n: usize, to: Option<usize>, impair: Option<Impair>) {
        let impair = impair.filter(|i| !i.is_none());
        match to {
            Some(q) => {
                self.ports[q].own_impair = impair;
                self.apply_impair(q);
            }
            None => {
                self.nets[n].impair = impair;
                for i in 0..self.nets[n].ports.len() {
                    let q = self.nets[n].ports[i];
                    self.apply_impair(q);
                }
            }
        }
    }

    fn apply_impair(&mut self, q: usize) {
        let port = &mut self.ports[q];
        let eff = port.own_impair.or(self.nets[port.net].impair);
        match (eff, &mut port.shaper) {
            (Some(i), Some(sh)) => sh.set(i),
            (Some(i), None) => {
                port.shaper = Some(Shaper::new(i, super::rng::derive(self.seed, q as u64)))
            }
            // Frames already delayed still leave on time; the shaper goes once empty.
            (None, Some(sh)) => sh.set(Impair::default()),
            (None, None) => {}
        }
    }

    pub fn own_impair(&self, q: usize) -> Option<&Impair> {
        self.ports[q].own_impair.as_ref()
    }

    /// (egress depth, frames held by impairment, stalled) of port `q`.
    pub fn queue_state(&self, q: usize) -> (usize, usize, bool) {
        let p = &self.ports[q];
        (
            p.egress.len(),
            p.shaper.as_ref().map_or(0, Shaper::len),
            p.stalled,
        )
    }

    /// Starts a capture of `target` into `sink`; returns its id.
    pub fn add_tap(&mut self, target: Target, format: Format, sink: Sink) -> io::Result<u64> {
        let ifaces = match target {
            Target::Net(n) => self.nets[n].ports.clone(),
            Target::Port(p) => vec![p],
        };
        let names: Vec<&str> = ifaces
            .iter()
            .map(|&p| self.ports[p].name.as_str())
            .collect();
        let id = self.next_tap;
        let tap = Tap::new(id, target, format, ifaces, &names, sink)?;
        self.next_tap += 1;
        self.taps.push(tap);
        self.retap();
        Ok(id)
    }

    /// Ends capture `id` (flushed); `None` if there is none.
    pub fn remove_tap(&mut self, id: u64) -> Option<Tap> {
        let i = self.taps.iter().position(|t| t.id == id)?;
        let mut t = self.taps.remove(i);
        t.flush();
        self.retap();
        Some(t)
    }

    fn retap(&mut self) {
        for p in &mut self.ports {
            p.tapped = false;
        }
        for n in &mut self.nets {
            n.tapped = false;
        }
        for t in &self.taps {
            match t.target {
                Target::Net(n) => self.nets[n].tapped = true,
                Target::Port(p) => self.ports[p].tapped = true,
            }
        }
    }

    fn record(&mut self, p: usize, net: Option<usize>, dir: Dir, data: &[u8], now: Duration) {
        let ts = self.wall0 + now;
        for t in &mut self.taps {
            let hit = match t.target {
                Target::Port(q) => q == p,
                Target::Net(n) => Some(n) == net,
            };
            if hit {
                t.record(p, dir, data, ts);
            }
        }
    }

    /// Once in a while: forget aged MAC addresses, flush capture files.
    pub fn housekeeping(&mut self, now: Duration) {
        for n in &mut self.nets {
            if let Some(m) = &mut n.macs {
                m.sweep(now);
            }
        }
        for t in &mut self.taps {
            t.flush();
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
