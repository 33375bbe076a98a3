//! The switch's hot path (frame in from one port's socket → engine → out of another's)
//! allocates nothing once warm: counted by a global allocator that counts this
//! thread's allocations, over real port sockets, plain, with a capture running, and
//! with frames queueing behind a full node. Also prints the time per frame (a figure,
//! not asserted; benches/netsw.py measures throughput).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use vmrun::backends::dgram_sock::Endpoint;
use vmrun::netsw::capture::{Format, Tap, Target};
use vmrun::netsw::config::{NetKind, NetPlan, Plan, PortPlan};
use vmrun::netsw::engine::Engine;
use vmrun::netsw::wire::SockWire;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; counting touches only a thread-local Cell
// that needs no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout goes to the system allocator unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: as for `alloc`/`dealloc`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

mod netlab;

fn port(dir: &Path, name: &str) -> PortPlan {
    PortPlan {
        name: name.into(),
        local: Endpoint::Unix(dir.join("sw").join(name)),
        remote: Endpoint::Unix(dir.join(name)),
        impair: None,
        capture: None,
        up: true,
    }
}

struct Rig {
    engine: Engine<SockWire>,
    a: UnixDatagram,
    b: UnixDatagram,
    start: Instant,
    buf: Vec<u8>,
    frame: Vec<u8>,
}

impl Rig {
    fn new(dir: &Path, kind: NetKind) -> Self {
        vmrun::backends::private_dir::ensure_private_dir(&dir.join("sw")).unwrap();
        let plan = Plan {
            control: dir.join("ctl"),
            seed: 1,
            queue: 256,
            stall: Duration::from_millis(200),
            nets: vec![NetPlan {
                name: "n".into(),
                kind,
                impair: None,
                capture: None,
                ageing: Duration::from_secs(300),
                ports: vec![port(dir, "a"), port(dir, "b")],
            }],
        };
        let start = Instant::now();
        let engine = Engine::build(&plan, Duration::ZERO, |p| {
            SockWire::open(&p.local, &p.remote, start)
        })
        .unwrap();
        let a = netlab::host_node(dir, "a");
        let b = netlab::host_node(dir, "b");
        b.set_nonblocking(true).unwrap();
        let mut rig = Rig {
            engine,
            a,
            b,
            start,
            buf: vec![0; 65536],
            frame: {
                let mut f = netlab::frame([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], 0);
                f.resize(1514, 0);
                f
            },
        };
        // Let the switch's ports find their nodes.
        std::thread::sleep(Duration::from_millis(150));
        let now = rig.start.elapsed();
        for p in &mut rig.engine.ports {
            p.wire.maintain(now);
        }
        rig
    }

    /// B reads everything, the switch sends what waits for B, B reads again.
    fn b_reads(&mut self, now: Duration) {
        let mut sink = [0u8; 2048];
        while self.b.recv(&mut sink).is_ok() {}
        self.engine.drain(1, now);
        while self.b.recv(&mut sink).is_ok() {}
    }

    /// `n` frames A → switch → B; B reads them only every `batch` frames (or when the
    /// switch holds A back, as the poll loop would).
    fn run(&mut self, n: usize, batch: usize) -> Duration {
        let t = Instant::now();
        for k in 0..n {
            self.a.send(&self.frame).unwrap();
            let now = self.start.elapsed();
            if !self.engine.readable(0) {
                self.b_reads(now);
            }
            let got = self.engine.ports[0]
                .wire
                .recv(&mut self.buf)
                .unwrap()
                .unwrap();
            self.engine.ingress(0, &self.buf[..got], now);
            if (k + 1) % batch == 0 {
                self.b_reads(now);
            }
        }
        t.elapsed()
    }
}

#[test]
fn the_hot_path_allocates_nothing() {
    let dir = netlab::lab_dir("netsw-alloc", "hot");
    for kind in [NetKind::Link, NetKind::Lan] {
        let mut rig = Rig::new(&dir, kind);
        rig.run(2000, 1); // warm up
        let before = allocs();
        let took = rig.run(20_000, 1);
        assert_eq!(
            allocs() - before,
            0,
            "{kind:?}: allocations on the plain path"
        );
        eprintln!(
            "figure: {kind:?}: {:.2} us per frame (A's send, switch recv + ingress + send, B's recv)",
            took.as_secs_f64() * 1e6 / 20_000.0
        );
        // With a capture running (into its stream buffer, drained as a client would).
        let id = rig
            .engine
            .add_tap(Target::Net(0), Format::Pcap, Tap::stream_sink())
            .unwrap();
        rig.run(2000, 1);
        let before = allocs();
        for _ in 0..10 {
            rig.run(1000, 1);
            let tap = rig.engine.taps.iter_mut().find(|t| t.id == id).unwrap();
            let n = tap.stream_bytes().len();
            tap.consumed(n);
        }
        assert_eq!(
            allocs() - before,
            0,
            "{kind:?}: allocations while capturing"
        );
        rig.engine.remove_tap(id);
        // Queueing: B's socket buffer fills, frames wait in the switch's queue (pooled).
        rig.run(4000, 2000);
        let before = allocs();
        rig.run(20_000, 2000);
        assert_eq!(allocs() - before, 0, "{kind:?}: allocations while queueing");
        let c = &rig.engine.ports[1].counters;
        assert_eq!(c.tx_dropped.total(), 0, "{c:?}");
        assert!(c.queue_max > 0, "nothing queued: {c:?}");
        drop(rig);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
