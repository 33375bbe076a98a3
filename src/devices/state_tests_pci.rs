//! Snapshot round trips of the PCI side and the virtio devices: the root's functions
//! and config ports, virtio-mmio with a disk, virtio-pci with a NIC (MSI-X), the std
//! VGA and the e1000. After the restore the fresh device must answer as the old one
//! and go on with the next request where the old one stopped.

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::state_tests::{Clock, Level};
use crate::backends::disk::DiskImage;
use crate::config::reader::PciAddr;
use crate::devices::pci::bridge::PciBridge;
use crate::devices::pci::root::PciSection;
use crate::devices::pci::{PciDevice, PciPorts, PciRoot, PlainFunction, SharedPciDevice};
use crate::devices::virtio::blk::{Blk, T_OUT};
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::net::Net;
use crate::devices::virtio::pci::VirtioPci;
use crate::devices::virtio::testutil::{memory, mmio_init, w32, Ring};
use crate::devices::virtio::F_VERSION_1;
use crate::devices::{BusDevice, IrqLine};
use crate::snapshot::state::{Section, Stateful};
use crate::testing::FakeNet;

pub(super) fn root() -> (Arc<PciRoot>, Arc<Mutex<PciPorts>>) {
    let root = Arc::new(PciRoot::new(Box::new(|_| {
        Arc::new(Level::default()) as Arc<dyn IrqLine>
    })));
    let host = Arc::new(Mutex::new(PlainFunction(
        crate::devices::pci::i440fx::i440fx(),
    )));
    root.add_function(0, PciAddr { slot: 0, func: 0 }, host as SharedPciDevice)
        .unwrap();
    root.add_bridge(
        0,
        PciAddr { slot: 3, func: 0 },
        PciBridge::conventional(),
        1,
    )
    .unwrap();
    let ports = Arc::new(Mutex::new(PciPorts::new(root.clone())));
    (root, ports)
}

fn cfg_dword(root: &PciRoot, bus: u8, devfn: u8, reg: u16) -> u32 {
    let mut b = [0u8; 4];
    root.config_read(bus, devfn, reg, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn pci_root_round_trip() {
    let (a, pa) = root();
    // Number the bridge, open its windows, program the host's PAM, latch CF8.
    a.config_write(0, 3 << 3, 0x18, &[0, 1, 1, 0]);
    a.config_write(0, 3 << 3, 0x20, &0xfe10_fe00u32.to_le_bytes());
    a.config_write(0, 3 << 3, 0x04, &[0x07, 0]);
    a.config_write(0, 0, 0x59, &[0x30]);
    pa.lock()
        .unwrap()
        .write(0, 0, &0x8000_1810u32.to_le_bytes());
    pa.lock().unwrap().write(0, 1, &[0x02]);
    let saved = PciSection::new(a.clone(), Some(pa.clone())).save().unwrap();
    let (b, pb) = root();
    PciSection::new(b.clone(), Some(pb.clone()))
        .restore(&saved)
        .unwrap();
    for (devfn, reg) in [
        (0, 0x58),
        (0, 0x04),
        (3 << 3, 0x18),
        (3 << 3, 0x20),
        (3 << 3, 4),
    ] {
        assert_eq!(cfg_dword(&a, 0, devfn, reg), cfg_dword(&b, 0, devfn, reg));
    }
    let mut x = [0u8; 4];
    let mut y = [0u8; 4];
    pa.lock().unwrap().read(0, 0, &mut x);
    pb.lock().unwrap().read(0, 0, &mut y);
    assert_eq!(x, y);
    let (mut x, mut y) = ([0u8], [0u8]);
    pa.lock().unwrap().read(0, 1, &mut x);
    pb.lock().unwrap().read(0, 1, &mut y);
    assert_eq!((x, y), ([2], [2]));
    // A section for another machine (no bridge) is refused.
    let other = Arc::new(PciRoot::new(Box::new(|_| {
        Arc::new(Level::default()) as Arc<dyn IrqLine>
    })));
    assert!(PciSection::new(other, None).restore(&saved).is_err());
}

pub(super) fn disk(name: &str) -> Arc<DiskImage> {
    let p = std::env::temp_dir().join(format!("vmrun-state-{}-{name}", std::process::id()));
    std::fs::write(&p, vec![0u8; 16 * 512]).unwrap();
    let d = DiskImage::open(&p, false, "raw").unwrap();
    let _ = std::fs::remove_file(&p);
    Arc::new(d)
}

/// Queues a one-sector write of `fill` at `sector`; returns where its status goes.
fn write_request(mem: &GuestMemoryMmap, ring: &mut Ring, n: u64, sector: u64, fill: u8) -> u64 {
    let base = 0x20000 + n * 0x1000;
    mem.write_obj(T_OUT, GuestAddress(base)).unwrap();
    mem.write_obj(sector, GuestAddress(base + 8)).unwrap();
    mem.write_slice(&[fill; 512], GuestAddress(base + 0x100))
        .unwrap();
    mem.write_obj(0xffu8, GuestAddress(base + 0x400)).unwrap();
    ring.push(
        mem,
        &[
            (base, 16, false),
            (base + 0x100, 512, false),
            (base + 0x400, 1, true),
        ],
    );
    base + 0x400
}

#[test]
fn virtio_mmio_blk_continues_after_restore() {
    let mem = memory(1 << 20);
    let mut a = MmioTransport::new(
        Box::new(Blk::new(disk("a"), "d")),
        mem.clone(),
        Arc::new(Level::default()),
    );
    let mut ring = Ring::new(16, 0x1000);
    let features = F_VERSION_1 | crate::devices::virtio::F_EVENT_IDX;
    assert_eq!(mmio_init(&mut a, features, &[Ring::new(16, 0x1000)]), 0xf);
    let s1 = write_request(&mem, &mut ring, 0, 1, 0x11);
    w32(&mut a, reg::QUEUE_NOTIFY, 0);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(s1)).unwrap(), 0);
    assert_eq!(ring.take_used(&mem).len(), 1);
    w32(&mut a, reg::QUEUE_SEL, 0);
    let saved = a.save_state().unwrap();

    let disk_b = disk("b");
    let mut b = MmioTransport::new(
        Box::new(Blk::new(disk_b, "d")),
        mem.clone(),
        Arc::new(Level::default()),
    );
    b.restore_state(&saved).unwrap();
    for off in (0..0x100).step_by(4) {
        assert_eq!(
            crate::devices::virtio::testutil::r32(&mut a, off),
            crate::devices::virtio::testutil::r32(&mut b, off),
            "register {off:#x}"
        );
    }
    // The next request goes to the next ring slot, as if nothing happened.
    let s2 = write_request(&mem, &mut ring, 1, 2, 0x22);
    w32(&mut b, reg::QUEUE_NOTIFY, 0);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(s2)).unwrap(), 0);
    let used = ring.take_used(&mem);
    assert_eq!(used.len(), 1, "one new used entry, in slot 1");
    assert_eq!(used[0].1, 1);
    // A truncated section is refused.
    let mut bad = saved.clone();
    let n = bad.len();
    bad.truncate(n - 2);
    assert!(b.restore_state(&bad).is_err());
}

fn bw(d: &mut VirtioPci, off: u64, v: u64, n: usize) {
    d.bar_write(0, off, &v.to_le_bytes()[..n]);
}

/// virtio-pci init through the common configuration: both queues with MSI-X vectors
/// 1 and 2, configuration vector 0, MSI-X enabled.
pub(super) fn pci_net_init(d: &mut VirtioPci, rings: &[Ring]) {
    d.config_write(0x04, &[0x06, 0]);
    let cap = d.config().find_capability(0x11).unwrap();
    d.config_write(cap + 2, &[0, 0x80]);
    for v in 0..3u64 {
        bw(d, 0x4000 + 16 * v, 0xfee0_0000, 8);
        bw(d, 0x4008 + 16 * v, 0x40 + v, 4);
        bw(d, 0x400c + 16 * v, 0, 4);
    }
    bw(d, 0x14, 0, 1);
    bw(d, 0x14, 3, 1);
    bw(d, 0x08, 1, 4);
    bw(d, 0x0c, 1, 4);
    bw(d, 0x14, 0xb, 1);
    bw(d, 0x10, 0, 2);
    for (q, r) in rings.iter().enumerate() {
        bw(d, 0x16, q as u64, 2);
        bw(d, 0x18, r.size as u64, 2);
        bw(d, 0x1a, q as u64 + 1, 2);
        bw(d, 0x20, r.desc, 8);
        bw(d, 0x28, r.avail, 8);
        bw(d, 0x30, r.used, 8);
        bw(d, 0x1c, 1, 2);
    }
    bw(d, 0x14, 0xf, 1);
}

#[derive(Default)]
struct Msis(Mutex<Vec<(u64, u32)>>);
impl crate::devices::pci::MsiSender for Msis {
    fn send_msi(&self, address: u64, data: u32) -> bool {
        self.0.lock().unwrap().push((address, data));
        true
    }
}

fn pci_net(
    mem: &GuestMemoryMmap,
) -> (
    VirtioPci,
    crate::devices::virtio::net::NetRx,
    FakeNet,
    Arc<Msis>,
) {
    let wire = FakeNet::new();
    let (net, rx) = Net::new([2, 0, 0, 0, 0, 1], Some(Box::new(wire.clone())));
    let msis = Arc::new(Msis::default());
    let d = VirtioPci::new(Box::new(net), mem.clone(), 0x020000, msis.clone());
    (d, rx, wire, msis)
}

#[test]
fn virtio_pci_net_continues_after_restore() {
    let mem = memory(1 << 20);
    let (mut a, _rxa, wire_a, _) = pci_net(&mem);
    let mut rxr = Ring::new(8, 0x1000);
    let mut txr = Ring::new(8, 0x3000);
    pci_net_init(&mut a, &[Ring::new(8, 0x1000), Ring::new(8, 0x3000)]);
    assert_eq!(a.status(), 0xf);
    mem.write_slice(&[0u8; 12], GuestAddress(0x8000)).unwrap();
    mem.write_slice(&[0xab; 60], GuestAddress(0x800c)).unwrap();
    txr.push(&mem, &[(0x8000, 72, false)]);
    a.bar_write(0, 0x3004, &[1, 0]);
    assert_eq!(wire_a.sent().len(), 1);
    assert_eq!(txr.take_used(&mem).len(), 1);
    rxr.push(&mem, &[(0x9000, 2048, true)]);
    let saved = a.save_state().unwrap();

    let (mut b, rxb, wire_b, msis_b) = pci_net(&mem);
    b.restore_state(&saved).unwrap();
    let mut x = [0u8; 64];
    let mut y = [0u8; 64];
    a.config_read(0, &mut x);
    b.config_read(0, &mut y);
    assert_eq!(x, y, "config space header");
    for q in 0..2u64 {
        bw(&mut a, 0x16, q, 2);
        bw(&mut b, 0x16, q, 2);
        for off in (0..0x38).step_by(2) {
            let (mut p, mut r) = ([0u8; 2], [0u8; 2]);
            a.bar_read(0, off, &mut p);
            b.bar_read(0, off, &mut r);
            assert_eq!(p, r, "queue {q} common config {off:#x}");
        }
    }
    // Transmit and receive on the restored device: next slots, MSI-X vectors kept.
    txr.push(&mem, &[(0x8000, 72, false)]);
    b.bar_write(0, 0x3004, &[1, 0]);
    assert_eq!(wire_b.sent().len(), 1);
    assert_eq!(txr.take_used(&mem).len(), 1);
    wire_b.give(&[0xcd; 64]);
    rxb.pump();
    assert_eq!(rxr.take_used(&mem), vec![(0, 12 + 64)]);
    let sent = msis_b.0.lock().unwrap().clone();
    assert_eq!(sent, vec![(0xfee0_0000, 0x42), (0xfee0_0000, 0x41)]);
}

struct Lfb(Arc<Mutex<Vec<Option<u64>>>>);
impl crate::devices::vga::LfbMapper for Lfb {
    fn map(&mut self, gpa: Option<u64>) {
        self.0.lock().unwrap().push(gpa);
    }
}

pub(super) fn vga() -> (
    crate::devices::vga::pci::StdVga,
    Arc<Mutex<Vec<Option<u64>>>>,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut v = crate::devices::vga::Vga::new(1 << 20).unwrap();
    v.set_lfb_mapper(Box::new(Lfb(log.clone())));
    (crate::devices::vga::pci::StdVga::new(v, None), log)
}

#[test]
fn vga_round_trip_maps_the_framebuffer() {
    let (mut a, _) = vga();
    a.config_write(0x10, &0xfd00_0000u32.to_le_bytes());
    a.config_write(0x04, &[0x02, 0]);
    // DAC entry 7, a CRTC register, the attribute flip-flop left at "data", text in
    // the window, a DISPI mode and a byte far into VRAM.
    for (off, v) in [
        (0x18, 7u8),
        (0x19, 1),
        (0x19, 2),
        (0x24, 0x0c),
        (0x25, 0x12),
        (0x10, 0x01),
    ] {
        a.write(0, off, &[v]);
    }
    a.write(2, 0x18000, b"Hi");
    a.write(1, 0, &1u16.to_le_bytes());
    a.write(1, 1, &800u16.to_le_bytes());
    a.bar_write(0, 0xf_0000, &[0x5a]);
    let saved = a.save_state().unwrap();
    assert!(
        saved.len() < 3 * 4096,
        "only the non-zero pages: {}",
        saved.len()
    );
    let (mut b, log) = vga();
    b.restore_state(&saved).unwrap();
    assert_eq!(*log.lock().unwrap(), vec![Some(0xfd00_0000)]);
    assert_eq!(b.vga().lfb_address(), Some(0xfd00_0000));
    let mut reads: Vec<(usize, u64)> = (0..0x30).map(|o| (0, o)).collect();
    reads.extend([(1, 0), (1, 1), (2, 0x18000), (2, 0x18001)]);
    for (region, off) in reads {
        let (mut x, mut y) = ([0u8], [0u8]);
        a.read(region, off, &mut x);
        b.read(region, off, &mut y);
        assert_eq!(x, y, "region {region} offset {off:#x}");
    }
    assert_eq!(b.vga().vram().byte(0xf_0000), 0x5a);
    assert_eq!(a.vga().render().rgb, b.vga().render().rgb);
}

#[test]
fn e1000_round_trip() {
    use crate::devices::e1000::regs::*;
    use crate::devices::e1000::E1000;
    let mem = memory(1 << 20);
    let clock = Clock::at(1_000_000_000);
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let mut a = E1000::new(mac, None, mem.clone(), Box::new(clock.clone()));
    let line = Arc::new(Level::default());
    a.set_intx_line(line.clone());
    a.config_write(0x04, &[0x06, 0]);
    let w = |d: &mut E1000, off: u32, v: u32| d.bar_write(0, off.into(), &v.to_le_bytes());
    for (off, v) in [
        (RDBAL, 0x4000),
        (RDLEN, 0x100),
        (RDT, 3),
        (TDBAL, 0x8000),
        (TDLEN, 0x80),
    ] {
        w(&mut a, off, v);
    }
    w(&mut a, RA + 8, 0x1122_3344);
    w(&mut a, IMS, INT_TXDW | INT_LSC);
    w(&mut a, ICS, INT_TXDW);
    w(&mut a, EERD, 1 | (2 << 8));
    assert!(line.high());
    let saved = a.save_state().unwrap();
    let clock2 = Clock::at(5_000);
    let mut b = E1000::new(mac, None, mem, Box::new(clock2));
    let line2 = Arc::new(Level::default());
    b.set_intx_line(line2.clone());
    b.restore_state(&saved).unwrap();
    assert!(line2.high(), "INTA# is driven again");
    for off in [
        CTRL,
        STATUS,
        RDBAL,
        RDLEN,
        RDH,
        RDT,
        TDBAL,
        TDLEN,
        EERD,
        RA,
        RA + 4,
        RA + 8,
        IMS,
        ICR,
        ICR,
    ] {
        let (mut x, mut y) = ([0u8; 4], [0u8; 4]);
        a.bar_read(0, off.into(), &mut x);
        b.bar_read(0, off.into(), &mut y);
        assert_eq!(x, y, "register {off:#x}");
    }
    assert!(!line2.high(), "reading ICR lowered it");
}
