use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::devices::pci::regs::*;
use crate::devices::pci::{BarDef, PciConfig, PciIds};
use crate::devices::pci::{Ecam, PciPorts};
use crate::devices::{BusDevice, VmEvent};

/// A device with an I/O BAR 0 (32 bytes) and a 64-bit memory BAR 2 (16 KiB) whose
/// reads return the BAR index and offset.
struct Dev {
    cfg: PciConfig,
    writes: Vec<(u8, u64, u8)>,
}

impl Dev {
    fn new() -> Self {
        let mut cfg = PciConfig::new(PciIds {
            vendor: 0x1af4,
            device: 0x1041,
            class: 0x020000,
            ..Default::default()
        });
        cfg.add_bar(0, BarDef::io(0x20)).unwrap();
        cfg.add_bar(2, BarDef::mem64(0x4000)).unwrap();
        cfg.set_interrupt_pin(1);
        Self {
            cfg,
            writes: Vec::new(),
        }
    }
}

impl PciDevice for Dev {
    fn config(&self) -> &PciConfig {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.cfg
    }
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(bar << 4 | offset as u8 & 0xf);
    }
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        self.writes.push((bar, offset, data[0]));
    }
}

#[derive(Default)]
struct Line(AtomicBool);
impl IrqLine for Line {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::SeqCst);
    }
}

fn place(bus: u8, slot: u8, gsi: u32) -> PciPlacement {
    PciPlacement {
        bus_number: bus,
        addr: PciAddr { slot, func: 0 },
        pin: 1,
        gsi: Some(gsi),
    }
}

/// Root bus: host-like function at 00.0, a device at 03.0, a bridge at 04.0 (spec
/// bus 1) with a device at 01:02.0 and a root port at 01:05.0 (spec bus 2).
type Tree = (Arc<PciRoot>, Arc<Line>, Arc<Mutex<Dev>>, Arc<Mutex<Dev>>);

fn tree() -> Tree {
    let line = Arc::new(Line::default());
    let l2 = line.clone();
    let root = PciRoot::new(Box::new(move |_| l2.clone() as Arc<dyn IrqLine>));
    let host = PlainFunction(crate::devices::pci::i440fx::i440fx());
    root.add_function(0, PciAddr { slot: 0, func: 0 }, Arc::new(Mutex::new(host)))
        .unwrap();
    let a = Arc::new(Mutex::new(Dev::new()));
    let b = Arc::new(Mutex::new(Dev::new()));
    root.add_device(&place(0, 3, 11), a.clone()).unwrap();
    root.add_bridge(
        0,
        PciAddr { slot: 4, func: 0 },
        PciBridge::conventional(),
        1,
    )
    .unwrap();
    root.add_device(&place(1, 2, 11), b.clone()).unwrap();
    root.add_bridge(
        1,
        PciAddr { slot: 5, func: 0 },
        PciBridge::pcie_root_port(0),
        2,
    )
    .unwrap();
    (Arc::new(root), line, a, b)
}

fn cf8(p: &mut PciPorts, bus: u8, dev: u8, func: u8, reg: u8) {
    let a = 0x8000_0000 | u32::from(bus) << 16 | u32::from(dev) << 11 | u32::from(func) << 8;
    p.write(0, 0, &(a | u32::from(reg)).to_le_bytes());
}

fn rd32(p: &mut PciPorts, bus: u8, dev: u8, reg: u8) -> u32 {
    cf8(p, bus, dev, 0, reg & !3);
    let mut d = [0; 4];
    p.read(0, 4, &mut d);
    u32::from_le_bytes(d)
}

fn wr32(p: &mut PciPorts, bus: u8, dev: u8, reg: u8, v: u32) {
    cf8(p, bus, dev, 0, reg & !3);
    p.write(0, 4, &v.to_le_bytes());
}

#[test]
fn mechanism_1() {
    let (root, ..) = tree();
    let mut p = PciPorts::new(root);
    let mut d = [0; 4];
    p.write(0, 0, &0x8000_0000u32.to_le_bytes());
    p.read(0, 0, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x8000_0000);
    assert_eq!(rd32(&mut p, 0, 0, 0), 0x1237_8086);
    assert_eq!(rd32(&mut p, 0, 3, 0), 0x1041_1af4);
    assert_eq!(rd32(&mut p, 0, 4, 0), 0x0001_1b36);
    assert_eq!(rd32(&mut p, 0, 7, 0), 0xffff_ffff);
    // Byte and word reads at offsets of the data port.
    cf8(&mut p, 0, 0, 0, 0);
    let mut w = [0; 2];
    p.read(0, 6, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0x1237);
    let mut b = [0; 1];
    p.read(0, 5, &mut b);
    assert_eq!(b, [0x80]);
    // Disabled: all ones.
    p.write(0, 0, &0x0000_0000u32.to_le_bytes());
    p.read(0, 4, &mut d);
    assert_eq!(d, [0xff; 4]);
    // 0xCF9 is the reset register: RST_CPU resets.
    assert_eq!(p.write(0, 1, &[0x02]), None);
    assert_eq!(p.write(0, 1, &[0x06]), Some(VmEvent::Reset));
}

#[test]
fn bus_numbers_follow_the_guest() {
    let (root, ..) = tree();
    let mut p = PciPorts::new(root.clone());
    // Unnumbered bridge: bus 1 is not reachable.
    assert_eq!(rd32(&mut p, 1, 2, 0), 0xffff_ffff);
    // The guest numbers the bridge 5..6 and the root port behind it 6..6.
    wr32(&mut p, 0, 4, 0x18, 0x00_06_05_00);
    assert_eq!(rd32(&mut p, 5, 2, 0), 0x1041_1af4);
    assert_eq!(rd32(&mut p, 5, 5, 0), 0x000c_1b36);
    assert_eq!(rd32(&mut p, 6, 0, 0), 0xffff_ffff);
    wr32(&mut p, 5, 5, 0x18, 0x00_06_06_05);
    assert_eq!(rd32(&mut p, 6, 0, 0), 0xffff_ffff);
    assert_eq!(rd32(&mut p, 1, 2, 0), 0xffff_ffff);
    // ECAM sees the same tree.
    let mut e = Ecam::new(root);
    let mut d = [0; 4];
    e.read(0, 5 << 20 | (2 << 3) << 12, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x1041_1af4);
    e.read(0, 5 << 20 | (2 << 3) << 12 | 0x100, &mut d);
    assert_eq!(d, [0xff; 4]);
}

#[test]
fn bar_decoding_needs_command_and_windows() {
    let (root, _, a, b) = tree();
    let mut p = PciPorts::new(root.clone());
    // Device on the root bus.
    wr32(&mut p, 0, 3, 0x10, 0xc000);
    wr32(&mut p, 0, 3, 0x18, 0xfe00_0000);
    wr32(&mut p, 0, 3, 0x1c, 0);
    let mut d = [0; 2];
    assert!(!root.io_read(0xc004, &mut d));
    wr32(&mut p, 0, 3, 0x04, u32::from(CMD_IO | CMD_MEMORY));
    assert!(root.io_read(0xc004, &mut d));
    assert_eq!(d, [0x04; 2]);
    assert!(root.mmio_write(0xfe00_1003, &[7]));
    assert_eq!(lock(&a).writes, vec![(2, 0x1003, 7)]);
    assert!(!root.mmio_read(0xfe00_4000, &mut d));
    // Sizing in progress (all ones) moves it away.
    wr32(&mut p, 0, 3, 0x10, 0xffff_ffff);
    assert!(!root.io_read(0xc004, &mut d));
    // Behind the bridge: enabled in its own command register but outside the
    // bridge's (closed) windows → no decode.
    wr32(&mut p, 0, 4, 0x18, 0x00_02_01_00);
    wr32(&mut p, 1, 2, 0x10, 0xd000);
    wr32(&mut p, 1, 2, 0x18, 0xfd00_0000);
    wr32(&mut p, 1, 2, 0x04, u32::from(CMD_IO | CMD_MEMORY));
    assert!(!root.io_read(0xd000, &mut d));
    assert!(!root.mmio_read(0xfd00_0000, &mut d));
    // Open the windows: I/O 0xd000-0xdfff, memory 0xfd000000-0xfd0fffff.
    wr32(&mut p, 0, 4, 0x1c, 0x0000_d0d0);
    wr32(&mut p, 0, 4, 0x20, 0xfd00_fd00);
    wr32(&mut p, 0, 4, 0x04, u32::from(CMD_IO | CMD_MEMORY));
    assert!(root.io_read(0xd000, &mut d));
    assert!(root.mmio_read(0xfd00_0010, &mut d));
    assert_eq!(d, [0x20; 2]);
    // Outside the window: no decode.
    wr32(&mut p, 1, 2, 0x18, 0xfd10_0000);
    assert!(!root.mmio_read(0xfd10_0000, &mut d));
    assert!(lock(&b).writes.is_empty());
    // Closing the bridge's memory space stops the decode below it.
    wr32(&mut p, 0, 4, 0x04, u32::from(CMD_IO));
    assert!(!root.mmio_read(0xfd00_0010, &mut d));
    assert!(root.io_read(0xd000, &mut d));
}

#[test]
fn intx_lines_are_ored_per_gsi() {
    let (_root, line, a, b) = tree();
    lock(&a).cfg.set_intx(true);
    assert!(line.0.load(Ordering::SeqCst));
    lock(&b).cfg.set_intx(true);
    lock(&a).cfg.set_intx(false);
    assert!(line.0.load(Ordering::SeqCst));
    lock(&b).cfg.set_intx(false);
    assert!(!line.0.load(Ordering::SeqCst));
    // INTx Disable masks the device's contribution.
    lock(&a).cfg.set_intx(true);
    lock(&a).config_write(COMMAND, &CMD_INTX_DISABLE.to_le_bytes());
    assert!(!line.0.load(Ordering::SeqCst));
}

#[test]
fn placement_errors() {
    let (root, ..) = tree();
    let d = || Arc::new(Mutex::new(Dev::new())) as SharedPciDevice;
    assert_eq!(
        root.add_device(&place(0, 3, 11), d()),
        Err(PciError::Taken {
            bus: 0,
            slot: 3,
            func: 0
        })
    );
    assert_eq!(
        root.add_device(&place(9, 3, 11), d()),
        Err(PciError::NoBus(9))
    );
    assert_eq!(
        root.add_device(&place(0, 32, 11), d()),
        Err(PciError::BadAddr { slot: 32, func: 0 })
    );
}

use crate::testing::Rng;

#[test]
fn fuzz_config_and_bar_accesses() {
    let (root, ..) = tree();
    let mut p = PciPorts::new(root.clone());
    let mut e = Ecam::new(root.clone());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sizes = [1usize, 2, 4, 8, 3];
    for _ in 0..100_000 {
        let r = rng.next();
        let len = sizes[(r >> 8) as usize % sizes.len()];
        let mut buf = [0u8; 8];
        let data = &mut buf[..len];
        data.iter_mut().for_each(|b| *b = rng.next() as u8);
        // Bias towards the interesting buses/devices so the tree gets programmed.
        let bus = (rng.next() % 8) as u32;
        let devfn = [
            0u32,
            3 << 3,
            4 << 3,
            2 << 3,
            5 << 3,
            0,
            (rng.next() % 256) as u32,
        ];
        let devfn = devfn[(rng.next() % devfn.len() as u64) as usize];
        let reg = (rng.next() % 0x1000) as u32;
        match r % 8 {
            0 => {
                let a = 0x8000_0000 | bus << 16 | devfn << 8 | reg & 0xff;
                let _ = p.write(0, 0, &a.to_le_bytes());
            }
            1 => p.read(0, rng.next() % 8, data),
            2 => {
                let _ = p.write(0, 4 + rng.next() % 4, data);
            }
            3 => e.read(0, u64::from(bus << 20 | devfn << 12 | reg), data),
            4 => {
                let _ = e.write(0, u64::from(bus << 20 | devfn << 12 | reg), data);
            }
            5 => {
                let _ = root.io_read(rng.next() % 0x1_0000, data);
                let _ = root.io_write(rng.next() % 0x1_0000, data);
            }
            6 => {
                let a = rng.next();
                let _ = root.mmio_read(a, data);
                let _ = root.mmio_write(a >> (rng.next() % 40), data);
            }
            _ => {
                // Offsets anywhere in the ECAM window, including unaligned ones.
                let _ = e.write(0, rng.next() % ECAM_SIZE, data);
            }
        }
    }
    // The decode table is sorted and non-overlapping whatever the guest did.
    let d = root.decoded();
    for w in d.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[0].2 <= w[1].1, "{w:?}");
        }
    }
}
