use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::backends::dgram_sock::Endpoint;
use crate::netsw::config::NetPlan;
use crate::netsw::impair::ImpairConfig;

const MS: Duration = Duration::from_millis(1);

#[derive(Default)]
struct WireState {
    got: Vec<(Duration, Vec<u8>)>,
    /// Frames the wire takes before it is full (None: no limit).
    room: Option<usize>,
    absent: bool,
}

#[derive(Clone, Default)]
struct Fake(Rc<RefCell<WireState>>);

impl Wire for Fake {
    fn send(&mut self, frame: &[u8], now: Duration) -> io::Result<Sent> {
        let mut s = self.0.borrow_mut();
        if s.absent {
            return Ok(Sent::NoPeer);
        }
        match &mut s.room {
            Some(0) => return Ok(Sent::Full),
            Some(r) => *r -= 1,
            None => {}
        }
        s.got.push((now, frame.to_vec()));
        Ok(Sent::Sent)
    }
    fn connected(&self) -> bool {
        !self.0.borrow().absent
    }
}

impl Fake {
    fn take(&self) -> Vec<Vec<u8>> {
        self.0.borrow_mut().got.drain(..).map(|(_, f)| f).collect()
    }
    fn room(&self, r: Option<usize>) {
        self.0.borrow_mut().room = r;
    }
}

fn port(name: &str) -> PortPlan {
    PortPlan {
        name: name.into(),
        local: Endpoint::Unix(format!("/sw/{name}").into()),
        remote: Endpoint::Unix(format!("/n/{name}").into()),
        impair: None,
        capture: None,
        up: true,
    }
}

fn plan(kind: NetKind, names: &[&str], impair: Option<Impair>) -> Plan {
    Plan {
        control: "/ctl".into(),
        seed: 42,
        queue: 8,
        stall: 100 * MS,
        nets: vec![NetPlan {
            name: "n".into(),
            kind,
            impair,
            capture: None,
            ageing: Duration::from_secs(300),
            ports: names.iter().map(|n| port(n)).collect(),
        }],
    }
}

fn engine(p: &Plan) -> (Engine<Fake>, Vec<Fake>) {
    let mut wires = Vec::new();
    let e = Engine::build(p, Duration::ZERO, |_| {
        let w = Fake::default();
        wires.push(w.clone());
        Ok::<_, ()>(w)
    })
    .unwrap();
    (e, wires)
}

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, n]
}

const BCAST: [u8; 6] = [0xff; 6];

fn frame(dst: [u8; 6], src: [u8; 6], tag: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&tag.to_le_bytes());
    f.resize(60, 0);
    f
}

#[test]
fn a_link_carries_frames_both_ways() {
    let (mut e, w) = engine(&plan(NetKind::Link, &["a", "b"], None));
    e.ingress(0, &frame(BCAST, mac(1), 1), Duration::ZERO);
    e.ingress(1, &frame(mac(1), mac(2), 2), Duration::ZERO);
    assert_eq!(w[1].take(), vec![frame(BCAST, mac(1), 1)]);
    assert_eq!(w[0].take(), vec![frame(mac(1), mac(2), 2)]);
    let c = &e.ports[0].counters;
    assert_eq!((c.rx_frames, c.tx_frames, c.rx_bytes), (1, 1, 60));
    e.ingress(0, &[0; 10], Duration::ZERO);
    assert_eq!(e.ports[0].counters.rx_dropped.runt, 1);
}

#[test]
fn a_lan_learns_floods_filters_and_ages() {
    let mut p = plan(NetKind::Lan, &["a", "b", "c"], None);
    p.nets[0].ageing = Duration::from_secs(10);
    let (mut e, w) = engine(&p);
    let t = Duration::ZERO;
    // Broadcast from A: B and C.
    e.ingress(0, &frame(BCAST, mac(1), 1), t);
    assert_eq!(
        (w[0].take().len(), w[1].take().len(), w[2].take().len()),
        (0, 1, 1)
    );
    // B answers A: A was learned, only A gets it.
    e.ingress(1, &frame(mac(1), mac(2), 2), t);
    assert_eq!(
        (w[0].take().len(), w[1].take().len(), w[2].take().len()),
        (1, 0, 0)
    );
    // Unknown unicast: flooded. Multicast: flooded.
    e.ingress(1, &frame(mac(9), mac(2), 3), t);
    e.ingress(1, &frame([1, 0, 0x5e, 0, 0, 1], mac(2), 4), t);
    assert_eq!((w[0].take().len(), w[2].take().len()), (2, 2));
    // To a MAC behind the port it came from: filtered.
    e.ingress(0, &frame(mac(1), mac(7), 5), t);
    assert_eq!(e.ports[0].counters.filtered, 1);
    assert!(w.iter().all(|w| w.take().is_empty()));
    // After the ageing time A is unknown again: flooded.
    e.ingress(1, &frame(mac(1), mac(2), 6), Duration::from_secs(11));
    assert_eq!((w[0].take().len(), w[2].take().len()), (1, 1));
    // A station that moves is learned on its new port.
    e.ingress(2, &frame(BCAST, mac(1), 7), Duration::from_secs(12));
    w.iter().for_each(|w| drop(w.take()));
    e.ingress(1, &frame(mac(1), mac(2), 8), Duration::from_secs(12));
    assert_eq!((w[0].take().len(), w[2].take().len()), (0, 1));
}

#[test]
fn a_pulled_cable_stops_both_ways() {
    let (mut e, w) = engine(&plan(NetKind::Link, &["a", "b"], None));
    let t = Duration::ZERO;
    w[0].room(Some(0));
    e.ingress(1, &frame(BCAST, mac(2), 0), t); // queued for A
    e.set_up(0, false, t);
    e.ingress(0, &frame(BCAST, mac(1), 1), t);
    e.ingress(1, &frame(BCAST, mac(2), 2), t);
    w[0].room(None);
    e.drain(0, t);
    assert!(w[0].take().is_empty() && w[1].take().is_empty());
    let c = &e.ports[0].counters;
    assert_eq!((c.rx_dropped.link_down, c.tx_dropped.link_down), (1, 2));
    e.set_up(0, true, t);
    e.ingress(0, &frame(BCAST, mac(1), 3), t);
    e.ingress(1, &frame(BCAST, mac(2), 4), t);
    assert_eq!((w[0].take().len(), w[1].take().len()), (1, 1));
}

#[test]
fn a_slow_port_holds_senders_back_instead_of_dropping() {
    let (mut e, w) = engine(&plan(NetKind::Lan, &["a", "b", "c"], None));
    let t = Duration::ZERO;
    w[1].room(Some(2));
    let mut sent = 0;
    // A floods as long as the switch reads it: B takes 2, queues 8, then A pauses.
    while e.readable(0) && sent < 100 {
        e.ingress(0, &frame(BCAST, mac(1), sent), t);
        sent += 1;
    }
    assert_eq!(sent, 10);
    assert!(!e.readable(2), "C is held back too");
    assert!(e.readable(1), "B itself is not");
    assert_eq!(e.queue_state(1), (8, 0, false));
    // B reads again: the queue drains and A is read again, nothing was lost.
    w[1].room(None);
    e.drain(1, MS);
    assert!(e.readable(0) && e.readable(2));
    assert_eq!(w[1].take().len(), 10);
    assert_eq!(w[2].take().len(), 10);
    let b = &e.ports[1].counters;
    assert_eq!((b.tx_frames, b.tx_dropped.total(), b.queue_max), (10, 0, 8));
    assert_eq!(e.ports[0].counters.paused, 1);
}

#[test]
fn a_port_that_stops_reading_stops_holding_the_network_after_stall() {
    let (mut e, w) = engine(&plan(NetKind::Link, &["a", "b"], None));
    w[1].room(Some(0));
    for k in 0..8 {
        e.ingress(0, &frame(BCAST, mac(1), k), Duration::ZERO);
    }
    assert!(!e.readable(0));
    // The full wire is tried again every RETRY; the stall rule comes at 100 ms.
    assert_eq!(e.next_deadline(), Some(RETRY));
    e.tick(RETRY);
    assert_eq!(e.next_deadline(), Some(2 * RETRY));
    e.tick(99 * MS);
    assert!(!e.readable(0));
    e.tick(100 * MS);
    assert!(e.readable(0));
    assert!(e.queue_state(1).2);
    // Frames to the stalled port are dropped now (counted), not queued.
    e.ingress(0, &frame(BCAST, mac(1), 8), 101 * MS);
    assert_eq!(e.ports[1].counters.tx_dropped.queue_full, 1);
    // It reads again: the queue moves, it may hold the network back again.
    w[1].room(None);
    e.drain(1, 102 * MS);
    assert!(!e.queue_state(1).2);
    assert_eq!(w[1].take().len(), 8);
}

#[test]
fn absent_peers_count_no_peer() {
    let (mut e, w) = engine(&plan(NetKind::Link, &["a", "b"], None));
    w[1].0.borrow_mut().absent = true;
    e.ingress(0, &frame(BCAST, mac(1), 0), Duration::ZERO);
    assert_eq!(e.ports[1].counters.tx_dropped.no_peer, 1);
}

#[test]
fn delay_keeps_order_and_time_through_the_engine() {
    let i = ImpairConfig {
        delay: Some("10ms".into()),
        jitter: Some("3ms".into()),
        ..Default::default()
    };
    let (mut e, w) = engine(&plan(NetKind::Link, &["a", "b"], Some(i.parse().unwrap())));
    let mut now = Duration::ZERO;
    for k in 0..200u16 {
        e.ingress(0, &frame(BCAST, mac(1), k), now);
        e.tick(now);
        now += MS / 4;
    }
    while let Some(t) = e.next_deadline() {
        e.tick(t);
        now = t;
    }
    let got = w[1].0.borrow().got.clone();
    assert_eq!(got.len(), 200);
    for (k, (t, f)) in got.iter().enumerate() {
        assert_eq!(u16::from_le_bytes([f[14], f[15]]), k as u16, "order");
        let sent = MS / 4 * k as u32;
        assert!(
            *t >= sent + 7 * MS && *t <= sent + 13 * MS + 50 * MS,
            "{t:?}"
        );
    }
    // Cleared: new frames go straight out; the shaper leaves once empty.
    e.set_impair(0, None, None);
    e.ingress(0, &frame(BCAST, mac(1), 999), now);
    e.tick(now);
    assert_eq!(w[1].0.borrow().got.last().unwrap().0, now);
    assert_eq!(e.queue_state(1).1, 0);
}

#[test]
fn one_direction_of_a_link_impaired() {
    let (mut e, w) = engine(&plan(NetKind::Link, &["a", "b"], None));
    let loss = ImpairConfig {
        loss: Some("100%".into()),
        ..Default::default()
    };
    e.set_impair(0, Some(1), Some(loss.parse().unwrap()));
    e.ingress(0, &frame(BCAST, mac(1), 0), Duration::ZERO);
    e.ingress(1, &frame(BCAST, mac(2), 0), Duration::ZERO);
    assert_eq!((w[0].take().len(), w[1].take().len()), (1, 0));
    assert_eq!(e.ports[1].counters.tx_dropped.impair_loss, 1);
}

#[test]
fn taps_see_both_directions_and_cost_nothing_when_off() {
    let (mut e, _w) = engine(&plan(NetKind::Link, &["a", "b"], None));
    let id = e
        .add_tap(Target::Port(0), Format::Pcap, Tap::stream_sink())
        .unwrap();
    let net = e
        .add_tap(Target::Net(0), Format::Pcapng, Tap::stream_sink())
        .unwrap();
    e.ingress(0, &frame(BCAST, mac(1), 0), Duration::ZERO);
    e.ingress(1, &frame(BCAST, mac(2), 0), Duration::ZERO);
    assert_eq!(e.taps[0].frames, 2); // A sent one, got one
    assert_eq!(e.taps[1].frames, 2); // one per frame sent into the network
    assert_eq!(e.remove_tap(id).map(|t| t.frames), Some(2));
    assert!(e.remove_tap(id).is_none());
    e.remove_tap(net);
    assert!(!e.ports[0].tapped && !e.nets[0].tapped);
}

#[test]
fn queueing_allocates_nothing_once_warm() {
    let (mut e, w) = engine(&plan(NetKind::Link, &["a", "b"], None));
    for round in 0..100u16 {
        w[1].room(Some(0));
        for k in 0..8 {
            e.ingress(0, &frame(BCAST, mac(1), round * 8 + k), Duration::ZERO);
        }
        w[1].room(None);
        e.drain(1, Duration::ZERO);
        w[1].take();
        if round == 0 {
            assert_eq!(e.pool.allocated, 8);
        }
    }
    assert_eq!(e.pool.allocated, 8);
}
