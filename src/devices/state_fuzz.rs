//! Hostile snapshot sections: for every device type, valid states (saved from a
//! driven device) mutated by bit flips, truncation, extension and overwrites, and
//! plain random bytes, fed to `restore_state`; then random register accesses. Nothing
//! may panic, whatever was accepted.

use std::sync::Arc;

use super::state_tests::{busy_uart, Clock, Level};
use super::state_tests_pci::{disk, pci_net_init, root, vga};
use crate::devices::cmos::{Cmos, CmosLayout};
use crate::devices::e1000::E1000;
use crate::devices::fw_cfg::{FwCfg, FwCfgItems};
use crate::devices::i8042::I8042;
use crate::devices::pci::root::PciSection;
use crate::devices::pci::PciDevice;
use crate::devices::pm::{Pm, PmConfig};
use crate::devices::virtio::blk::Blk;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::pci::VirtioPci;
use crate::devices::virtio::testutil::{memory, mmio_init, Ring};
use crate::devices::BusDevice;
use crate::snapshot::state::{Section, Stateful};
use crate::testing::{FakeNet, Rng};

/// One device under test: restore and save, and a random guest access.
trait Target {
    fn restore(&mut self, bytes: &[u8]) -> bool;
    fn save(&self) -> Vec<u8>;
    fn poke(&mut self, rng: &mut Rng);
}

fn access(rng: &mut Rng, d: &mut dyn BusDevice, regions: u64, span: u64) {
    let region = rng.below(regions) as usize;
    let off = rng.below(span);
    let len = [1, 2, 4, 8][rng.below(4) as usize];
    let mut buf = [0u8; 8];
    if rng.chance(50) {
        d.read(region, off, &mut buf[..len]);
    } else {
        buf = rng.next().to_le_bytes();
        d.write(region, off, &buf[..len]);
    }
}

fn pci_access(rng: &mut Rng, d: &mut dyn PciDevice, span: u64) {
    let len = [1, 2, 4, 8][rng.below(4) as usize];
    let mut buf = rng.next().to_le_bytes();
    match rng.below(4) {
        0 => d.config_read(rng.below(0x100) as u16, &mut buf[..len.min(4)]),
        1 => d.config_write(rng.below(0x100) as u16, &buf[..len.min(4)]),
        2 => d.bar_read(rng.below(3) as u8, rng.below(span), &mut buf[..len]),
        _ => d.bar_write(rng.below(3) as u8, rng.below(span), &buf[..len]),
    }
}

/// A bus device that is its own state.
struct Bus<D: Stateful + BusDevice>(D, u64, u64);

impl<D: Stateful + BusDevice> Target for Bus<D> {
    fn restore(&mut self, bytes: &[u8]) -> bool {
        self.0.restore_state(bytes).is_ok()
    }
    fn save(&self) -> Vec<u8> {
        self.0.save_state().unwrap()
    }
    fn poke(&mut self, rng: &mut Rng) {
        access(rng, &mut self.0, self.1, self.2);
    }
}

/// A PCI function that is its own state.
struct Pci<D: Stateful + PciDevice>(D, u64);

impl<D: Stateful + PciDevice> Target for Pci<D> {
    fn restore(&mut self, bytes: &[u8]) -> bool {
        self.0.restore_state(bytes).is_ok()
    }
    fn save(&self) -> Vec<u8> {
        self.0.save_state().unwrap()
    }
    fn poke(&mut self, rng: &mut Rng) {
        pci_access(rng, &mut self.0, self.1);
    }
}

struct Root(PciSection, Arc<crate::devices::pci::PciRoot>);

impl Target for Root {
    fn restore(&mut self, bytes: &[u8]) -> bool {
        self.0.restore(bytes).is_ok()
    }
    fn save(&self) -> Vec<u8> {
        self.0.save().unwrap()
    }
    fn poke(&mut self, rng: &mut Rng) {
        let mut b = rng.next().to_le_bytes();
        let (bus, devfn, reg) = (
            rng.below(3) as u8,
            rng.below(256) as u8,
            rng.below(256) as u16,
        );
        if rng.chance(50) {
            self.1.config_read(bus, devfn, reg & !3, &mut b[..4]);
        } else {
            self.1.config_write(bus, devfn, reg & !3, &b[..4]);
        }
        let addr = rng.next() >> rng.below(64);
        self.1.mmio_read(addr, &mut b[..4]);
        self.1.io_write(addr & 0xffff, &b[..1]);
    }
}

fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut v = valid.to_vec();
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(8) {
                if !v.is_empty() {
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => v.truncate(rng.below(v.len() as u64 + 1) as usize),
        2 => (0..=rng.below(16)).for_each(|_| v.push(rng.next() as u8)),
        3 => {
            if !v.is_empty() {
                let i = rng.below(v.len() as u64) as usize;
                v[i] = rng.next() as u8;
            }
        }
        4 => v = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        _ => {
            // A run of 0xff: lengths and indices at their largest.
            let i = rng.below(v.len() as u64 + 1) as usize;
            let n = (rng.below(8) as usize).min(v.len() - i);
            v[i..i + n].fill(0xff);
        }
    }
    v
}

type Make = Box<dyn Fn() -> Box<dyn Target>>;

fn cmos() -> Cmos {
    let layout = CmosLayout {
        ram_below_4g: 1 << 30,
        ram_above_4g: 0,
        cpus: 1,
        boot_order: vec![],
    };
    Cmos::new(
        &layout,
        Box::new(Clock::at(1 << 60)),
        Arc::new(Level::default()),
    )
}

fn targets() -> Vec<(&'static str, u32, Make)> {
    let pm_cfg = PmConfig {
        gpe0_offset: 0x0c,
        gpe0_len: 4,
        s5_typ: 0,
        sci_enabled: false,
    };
    let mut out: Vec<(&'static str, u32, Make)> = vec![
        (
            "serial",
            12_000,
            Box::new(|| Box::new(Bus(busy_uart(Arc::new(Level::default())), 1, 8))),
        ),
        ("cmos", 12_000, Box::new(|| Box::new(Bus(cmos(), 1, 2)))),
        (
            "i8042",
            12_000,
            Box::new(|| {
                let mut d = I8042::new(Arc::new(Level::default()), Arc::new(Level::default()));
                d.write(0, 0, &[0xf2]);
                Box::new(Bus(d, 2, 1))
            }),
        ),
        (
            "pm",
            12_000,
            Box::new(move || {
                let mut p = Pm::new(pm_cfg, Box::new(Clock::at(7)), Arc::new(Level::default()));
                p.press_power_button();
                Box::new(Bus(p, 1, 0x40))
            }),
        ),
        (
            "fw_cfg",
            8_000,
            Box::new(|| {
                let mut i = FwCfgItems::new();
                i.add_item(5, vec![1; 40]);
                let mut d = FwCfg::new(memory(1 << 16), i);
                d.write(0, 0, &5u16.to_le_bytes());
                Box::new(Bus(d, 2, 12))
            }),
        ),
        (
            "pci",
            8_000,
            Box::new(|| {
                let (r, p) = root();
                r.config_write(0, 3 << 3, 0x18, &[0, 1, 1, 0]);
                Box::new(Root(PciSection::new(r.clone(), Some(p)), r))
            }),
        ),
    ];
    out.push((
        "virtio-mmio-blk",
        12_000,
        Box::new(|| {
            let mem = memory(1 << 20);
            let mut t = MmioTransport::new(
                Box::new(Blk::new(disk("fz"), "f")),
                mem,
                Arc::new(Level::default()),
            );
            mmio_init(
                &mut t,
                crate::devices::virtio::F_VERSION_1,
                &[Ring::new(16, 0x1000)],
            );
            Box::new(Bus(t, 1, 0x200))
        }),
    ));
    out.push((
        "virtio-pci-net",
        12_000,
        Box::new(|| {
            let mem = memory(1 << 20);
            let (net, _) = Net::new([2, 0, 0, 0, 0, 2], Some(Box::new(FakeNet::new())));
            let mut d = VirtioPci::new(
                Box::new(net),
                mem,
                0x020000,
                Arc::new(crate::devices::pci::NoMsi),
            );
            d.config_write(0x10, &0xe000_0000u32.to_le_bytes());
            pci_net_init(&mut d, &[Ring::new(8, 0x1000), Ring::new(8, 0x3000)]);
            Box::new(Pci(d, 0x8000))
        }),
    ));
    out.push((
        "vga",
        3_000,
        Box::new(|| {
            let (mut v, _) = vga();
            v.write(2, 0x18000, b"x");
            Box::new(Pci(v, 0x1000))
        }),
    ));
    out.push((
        "e1000",
        9_000,
        Box::new(|| {
            let d = E1000::new(
                [2, 0, 0, 0, 0, 3],
                None,
                memory(1 << 20),
                Box::new(Clock::at(9)),
            );
            Box::new(Pci(d, 0x20000))
        }),
    ));
    out
}

#[test]
fn hostile_sections_never_panic() {
    let mut rng = Rng(0x5eed_5a7e_dead_beef);
    let mut total = 0u32;
    let mut accepted = 0u32;
    for (name, cases, make) in targets() {
        let mut dev = make();
        let valid = dev.save();
        for case in 0..cases {
            if case % 1000 == 999 {
                dev = make();
            }
            let bytes = mutate(&mut rng, &valid);
            if dev.restore(&bytes) {
                accepted += 1;
                // What was accepted saves again.
                let _ = dev.save();
            }
            for _ in 0..8 {
                dev.poke(&mut rng);
            }
            total += 1;
        }
        assert!(dev.restore(&valid), "{name}: its own valid state");
    }
    assert!(total >= 100_000, "{total} cases");
    assert!(accepted > 0);
}
