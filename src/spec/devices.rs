//! Devices: which bus each sits on, and every resource it decodes. Explicit addresses
//! are claimed first, then what is left is assigned in declaration order (board
//! devices first), so the same file always gives the same machine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::plan::{loc_of, owner, plan_bus, Plan};
use super::props::device_kind;
use super::resources::{Claims, Owner};
use super::topology::{self, Bus};
use super::{BusKind, DeviceSpec, PciPlacement};
use crate::board::{Board, HIGH_RAM_START, IOAPIC_PINS};
use crate::config::model::Machine;
use crate::config::reader::PciAddr;
use crate::config::source::{Diagnostic, Loc};

/// COM1-COM4: base port and IRQ.
const COM_PORTS: [(u16, u32); 4] = [(0x3f8, 4), (0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];
/// GSIs handed to virtio-mmio devices, in order, skipping any already taken.
const VIRTIO_GSIS: [u32; 17] = [
    16, 17, 18, 19, 20, 21, 22, 23, 5, 6, 7, 9, 10, 11, 12, 14, 15,
];

/// Fixed or default ISA resources: (base port or None, port ranges relative to base,
/// IRQ, whether io/irq are fixed).
fn isa_layout(kind: &str, pm_len: u16) -> (Option<u16>, Vec<(u16, u16)>, Option<u32>, bool) {
    match kind {
        "serial" => (None, vec![(0, 8)], None, false),
        "rtc" => (Some(0x70), vec![(0, 2)], Some(8), true),
        "i8042" => (Some(0x60), vec![(0, 1), (4, 1)], Some(1), true),
        "debugcon" => (Some(0x402), vec![(0, 1)], None, false),
        "pm" => (Some(0x600), vec![(0, pm_len)], Some(9), false),
        "fw_cfg" => (Some(0x510), vec![(0, 2), (4, 8)], None, false),
        "pit" => (Some(0x40), vec![(0, 4)], Some(0), true),
        "pic" => (Some(0x20), vec![(0, 2), (0x80, 2), (0x4b0, 2)], None, true),
        _ => (None, vec![], None, false),
    }
}

pub fn resolve(
    m: &Machine,
    board: &Board,
    buses: &mut [Bus],
    broken: &[String],
    ram: (u64, u64),
    diags: &mut Vec<Diagnostic>,
) -> Vec<DeviceSpec> {
    let board_loc = m.board.loc.clone();
    let chipset = |what: &str| Owner {
        what: format!("the {} chipset's {what}", board.name),
        loc: board_loc.clone(),
        share: None,
    };
    let mut io = Claims::new("I/O ports");
    let mut mmio = Claims::new("MMIO");
    let mut gsis = Claims::new("GSI");
    let mut pci: BTreeMap<String, Vec<(PciAddr, Owner)>> = BTreeMap::new();
    for &(base, len, what) in board.chipset_io {
        io.claim(base as u64, len as u64, chipset(what), diags);
    }
    for &(base, len, what) in board.chipset_mmio {
        mmio.claim(base, len, chipset(what), diags);
    }
    let ram_owner = Owner {
        what: "guest RAM".into(),
        loc: m.memory.loc.clone(),
        share: None,
    };
    // RAM below 4 GiB has the legacy hole at 0xa0000-0xfffff: the VGA window, then
    // option ROMs and the BIOS.
    mmio.claim(0, ram.0.min(0xa0000), ram_owner.clone(), diags);
    mmio.claim(
        0xc0000,
        0x40000,
        chipset("legacy option ROM and BIOS area"),
        diags,
    );
    if ram.0 > 0x10_0000 {
        mmio.claim(0x10_0000, ram.0 - 0x10_0000, ram_owner.clone(), diags);
    }
    if ram.1 > 0 {
        mmio.claim(HIGH_RAM_START, ram.1, ram_owner, diags);
    }
    if let Some(root) = &board.pci {
        for (addr, what) in root.chipset {
            pci.entry(root.id.into())
                .or_default()
                .push((*addr, chipset(what)));
        }
    }

    // Which bus each device is on, and whether its keys make sense there.
    let mut plans: Vec<Plan> = m
        .devices
        .iter()
        .map(|d| plan_bus(d, board, buses, broken, diags))
        .collect();

    // Explicit PCI addresses (bridges and devices), then automatic ones.
    let mut taken = |bus: &str, addr: PciAddr, who: Owner, diags: &mut Vec<Diagnostic>| -> bool {
        let list = pci.entry(bus.to_string()).or_default();
        if let Some((_, other)) = list.iter().find(|(a, _)| *a == addr) {
            diags.push(
                Diagnostic::new(
                    &who.loc,
                    format!(
                        "PCI address {addr} on bus `{bus}` of {} is taken by {}",
                        who.what, other.what
                    ),
                )
                .label("conflict")
                .note_at(&other.loc, format!("{} is here", other.what)),
            );
            return false;
        }
        list.push((addr, who));
        true
    };
    for b in buses.iter_mut() {
        let Some(cfg) = &b.cfg else { continue };
        if let (Some(a), Some(parent)) = (&cfg.addr, &b.spec.parent) {
            if taken(
                parent,
                a.value,
                owner(&format!("bus `{}`", b.spec.id), &a.loc),
                diags,
            ) {
                b.spec.addr = Some(a.value);
            }
        }
    }
    for p in plans.iter_mut() {
        if let (
            Some(a),
            Some(bus),
            Some(BusKind::PciRoot | BusKind::PcieRoot | BusKind::PciBridge | BusKind::PcieRootPort),
        ) = (&p.cfg.addr, &p.bus, p.bus_kind)
        {
            if taken(bus, a.value, owner(&p.what, &a.loc), diags) {
                p.pci = Some((bus.clone(), a.value));
            }
        }
    }
    let first_slot = |bus: &str| {
        board
            .pci
            .as_ref()
            .filter(|r| r.id == bus)
            .map_or(0, |r| r.first_auto_slot)
    };
    let pci_snapshot = |pci: &BTreeMap<String, Vec<(PciAddr, Owner)>>, bus: &str| -> Vec<u8> {
        pci.get(bus)
            .map(|l| l.iter().map(|(a, _)| a.slot).collect())
            .unwrap_or_default()
    };
    for i in 0..buses.len() {
        let (Some(cfg), Some(parent)) = (&buses[i].cfg, buses[i].spec.parent.clone()) else {
            continue;
        };
        if cfg.addr.is_some() {
            continue;
        }
        let used = pci_snapshot(&pci, &parent);
        let slot = (first_slot(&parent)..32).find(|s| !used.contains(s));
        let Some(slot) = slot else {
            diags.push(
                Diagnostic::new(
                    &cfg.loc,
                    format!(
                        "bus `{parent}` has no free slot for bus `{}`",
                        buses[i].spec.id
                    ),
                )
                .label("bus full"),
            );
            continue;
        };
        let a = PciAddr { slot, func: 0 };
        let who = owner(&format!("bus `{}`", buses[i].spec.id), &cfg.loc);
        pci.entry(parent.clone()).or_default().push((a, who));
        buses[i].spec.addr = Some(a);
    }
    for p in plans.iter_mut() {
        let (Some(bus), Some(kind)) = (&p.bus, p.bus_kind) else {
            continue;
        };
        if !kind.is_pci() || p.cfg.addr.is_some() {
            continue;
        }
        let used = pci_snapshot(&pci, bus);
        let max = if kind == BusKind::PcieRootPort { 1 } else { 32 };
        let Some(slot) = (first_slot(bus)..max).find(|s| !used.contains(s)) else {
            let mut d = Diagnostic::new(
                &p.cfg.loc,
                format!("bus `{bus}` has no free slot for {}", p.what),
            )
            .label("bus full");
            if kind == BusKind::PcieRootPort {
                d = d.note(
                    "a PCIe root port has a single slot (00); give each device its own root port",
                );
            }
            diags.push(d);
            continue;
        };
        let a = PciAddr { slot, func: 0 };
        pci.entry(bus.clone())
            .or_default()
            .push((a, owner(&p.what, &p.cfg.loc)));
        p.pci = Some((bus.clone(), a));
    }
    // Root ports have one slot; functions other than 0 need function 0.
    for (bus, list) in &pci {
        let root_port = buses
            .iter()
            .any(|b| &b.spec.id == bus && b.spec.kind == BusKind::PcieRootPort);
        for (a, who) in list {
            if root_port && a.slot != 0 {
                diags.push(
                    Diagnostic::new(&who.loc, format!("{} is at slot {:02x} of PCIe root port `{bus}`, which has only slot 00", who.what, a.slot))
                        .label("use addr = \"00.0\""),
                );
            }
            if a.func != 0 && !list.iter().any(|(b, _)| b.slot == a.slot && b.func == 0) {
                diags.push(
                    Diagnostic::new(&who.loc, format!("{} is function {} of slot {:02x} on `{bus}`, but nothing is at function 0", who.what, a.func, a.slot))
                        .label("firmware and OSes only look past function 0 when it exists"),
                );
            }
        }
    }
    topology::number_buses(buses, &m.anchor, diags);

    // ISA ports and IRQs: explicit ones first, then the defaults.
    let pm_len = if board.kind == crate::board::BoardKind::Q35 {
        0x80
    } else {
        0x40
    };
    for p in plans
        .iter_mut()
        .filter(|p| p.bus_kind == Some(BusKind::Isa))
    {
        let kind = p.cfg.kind.value.as_str();
        let (fixed_base, _, fixed_irq, fixed) = isa_layout(kind, pm_len);
        if let Some(v) = &p.cfg.io {
            if fixed && Some(v.value as u16) != fixed_base {
                diags.push(
                    Diagnostic::new(
                        &v.loc,
                        format!(
                            "the I/O ports of a {kind} are fixed at {:#x}",
                            fixed_base.unwrap_or(0)
                        ),
                    )
                    .label("can't be moved"),
                );
            } else {
                p.io = Some(v.value as u16);
            }
        }
        if let Some(v) = &p.cfg.irq {
            if fixed && Some(v.value as u32) != fixed_irq {
                let msg = match fixed_irq {
                    Some(i) => format!("the IRQ of a {kind} is fixed at {i}"),
                    None => format!("a {kind} has no IRQ of its own"),
                };
                diags.push(Diagnostic::new(&v.loc, msg).label("can't be changed"));
            } else {
                p.irq = Some(v.value as u32);
            }
        }
    }
    let mut com_used: Vec<u16> = plans
        .iter()
        .filter(|p| p.cfg.kind.value == "serial")
        .filter_map(|p| p.io)
        .collect();
    for p in plans
        .iter_mut()
        .filter(|p| p.bus_kind == Some(BusKind::Isa))
    {
        let kind = p.cfg.kind.value.as_str();
        let (base, _, irq, _) = isa_layout(kind, pm_len);
        if kind == "serial" {
            if p.io.is_none() {
                match COM_PORTS.iter().find(|(b, _)| !com_used.contains(b)) {
                    Some(&(b, i)) => {
                        com_used.push(b);
                        p.io = Some(b);
                        p.irq = p.irq.or(Some(i));
                    }
                    None => diags.push(
                        Diagnostic::new(
                            &p.cfg.loc,
                            format!("{} needs an `io` port: COM1-COM4 are all taken", p.what),
                        )
                        .label("add `io = 0x...`"),
                    ),
                }
            } else if p.irq.is_none() {
                p.irq = COM_PORTS
                    .iter()
                    .find(|(b, _)| Some(*b) == p.io)
                    .map(|(_, i)| *i);
                if p.irq.is_none() {
                    let loc = loc_of(&p.cfg.io, &p.cfg.loc);
                    diags.push(
                        Diagnostic::new(
                            &loc,
                            format!("{} is not at a COM port, so it needs an `irq`", p.what),
                        )
                        .label("add `irq = N`"),
                    );
                }
            }
        } else {
            p.io = p.io.or(base);
            p.irq = p.irq.or(irq);
        }
    }
    let mut specs_extra: Vec<(Vec<(u16, u16)>, Option<(u64, u64)>)> =
        Vec::with_capacity(plans.len());
    for p in &plans {
        let kind = p.cfg.kind.value.as_str();
        let mut ranges = Vec::new();
        if let Some(base) = p.io {
            let (_, rel, _, _) = isa_layout(kind, pm_len);
            let loc = loc_of(&p.cfg.io, &p.cfg.loc);
            for (off, len) in rel {
                let start = base as u32 + off as u32;
                if start + len as u32 > 0x10000 {
                    diags.push(
                        Diagnostic::new(
                            &loc,
                            format!("the I/O ports of {} run past 0xffff", p.what),
                        )
                        .label("too high"),
                    );
                    continue;
                }
                if io.claim(start as u64, len as u64, owner(&p.what, &loc), diags) {
                    ranges.push((start as u16, len));
                }
            }
        }
        let mut legacy_mmio = None;
        if kind == "vga" && p.bus_kind.is_some_and(|k| k.is_pci()) {
            io.claim(
                0x3b0,
                0x30,
                owner(&format!("{} (VGA registers)", p.what), &p.cfg.loc),
                diags,
            );
            ranges.push((0x3b0, 0x30));
            io.claim(
                0x1ce,
                2,
                owner(&format!("{} (Bochs VBE DISPI ports)", p.what), &p.cfg.loc),
                diags,
            );
            ranges.push((0x1ce, 2));
            mmio.claim(
                0xa0000,
                0x20000,
                owner(&format!("{} (VGA window)", p.what), &p.cfg.loc),
                diags,
            );
            legacy_mmio = Some((0xa0000, 0x20000));
        }
        specs_extra.push((ranges, legacy_mmio));
    }

    // MMIO of system-bus devices: the IOAPIC and virtio-mmio transports.
    for p in plans
        .iter_mut()
        .filter(|p| p.bus_kind == Some(BusKind::Sysbus))
    {
        if p.cfg.kind.value == "ioapic" {
            p.mmio = Some((0xfec0_0000, 0x1000));
            continue;
        }
        if let Some(v) = &p.cfg.mmio {
            let (base, len) = (v.value as u64, board.virtio_mmio.map_or(0x200, |v| v.1));
            if base % 0x200 != 0 {
                diags.push(
                    Diagnostic::new(
                        &v.loc,
                        format!("the MMIO base of {} must be 512-byte aligned", p.what),
                    )
                    .label("not aligned"),
                );
            } else if mmio.claim(base, len, owner(&p.what, &v.loc), diags) {
                p.mmio = Some((base, len));
            }
        }
    }
    if let Some((base, stride, count)) = board.virtio_mmio {
        for p in plans.iter_mut().filter(|p| {
            p.bus_kind == Some(BusKind::Sysbus) && p.mmio.is_none() && p.cfg.mmio.is_none()
        }) {
            let slot = (0..count as u64)
                .map(|i| base + i * stride)
                .find(|b| mmio.taken(*b, stride).is_none());
            match slot {
                Some(b) => {
                    mmio.claim(b, stride, owner(&p.what, &p.cfg.loc), diags);
                    p.mmio = Some((b, stride));
                }
                None => diags.push(
                    Diagnostic::new(
                        &p.cfg.loc,
                        format!("no virtio-mmio slot left for {}", p.what),
                    )
                    .label(format!("board {} has {count}", board.name)),
                ),
            }
        }
    }

    // GSIs. ISA and virtio-mmio lines are exclusive (serial ports may share, as COM1
    // and COM3 traditionally do); PCI INTx lines are shared, level-triggered.
    for p in &plans {
        if let Some(irq) = p.irq {
            let loc = loc_of(&p.cfg.irq, &p.cfg.loc);
            let share = (p.cfg.kind.value == "serial").then_some("serial");
            gsis.claim(
                irq as u64,
                1,
                Owner {
                    what: p.what.clone(),
                    loc,
                    share,
                },
                diags,
            );
        }
    }
    for p in plans
        .iter_mut()
        .filter(|p| p.bus_kind == Some(BusKind::Sysbus) && p.cfg.kind.value != "ioapic")
    {
        if p.irq.is_none() {
            match VIRTIO_GSIS
                .iter()
                .find(|g| gsis.taken(**g as u64, 1).is_none())
            {
                Some(&g) => {
                    gsis.claim(g as u64, 1, owner(&p.what, &p.cfg.loc), diags);
                    p.irq = Some(g);
                }
                None => diags.push(
                    Diagnostic::new(&p.cfg.loc, format!("no free GSI for {}", p.what))
                        .label("all IOAPIC inputs are taken"),
                ),
            }
        } else if p.irq.is_some_and(|g| g >= IOAPIC_PINS) {
            let loc = loc_of(&p.cfg.irq, &p.cfg.loc);
            diags.push(
                Diagnostic::new(
                    &loc,
                    format!(
                        "GSI of {} is past the IOAPIC's {IOAPIC_PINS} inputs",
                        p.what
                    ),
                )
                .label("too high"),
            );
        }
    }
    let mut pci_gsis = Vec::new();
    for p in &plans {
        let Some((bus, addr)) = &p.pci else {
            pci_gsis.push(None);
            continue;
        };
        let (slot, pin) = topology::swizzle_to_root(buses, bus, addr.slot, 1);
        let gsi = board.pci.as_ref().map_or(0, |r| {
            let pirq = if r.express {
                (slot as usize + pin as usize - 1) % 4
            } else {
                (slot as usize + pin as usize + 2) % 4
            };
            r.pirq_gsi[pirq]
        });
        if let Some(other) = gsis.taken(gsi as u64, 1) {
            diags.push(
                Diagnostic::new(
                    &p.cfg.loc,
                    format!(
                        "{} raises GSI {gsi} through PCI interrupt routing, which {} uses",
                        p.what, other.what
                    ),
                )
                .label("interrupt conflict")
                .note_at(
                    &other.loc,
                    format!("{} is here; give it another irq", other.what),
                ),
            );
        }
        pci_gsis.push(Some(gsi));
    }

    // Kind-specific properties.
    let mut out = Vec::new();
    let mut macs: Vec<([u8; 6], String, Loc)> = Vec::new();
    let mut stdio_user: Option<(String, Loc)> = None;
    let mut disks: Vec<(PathBuf, bool, String, Loc)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let Some(kind) = device_kind(p, m, board, &mut macs, &mut stdio_user, &mut disks, diags)
        else {
            continue;
        };
        let (ranges, legacy) = specs_extra[i].clone();
        let pci = p.pci.as_ref().map(|(bus, addr)| PciPlacement {
            bus_number: buses
                .iter()
                .find(|b| &b.spec.id == bus)
                .and_then(|b| b.spec.number)
                .unwrap_or(0),
            addr: *addr,
            pin: 1,
            gsi: pci_gsis[i].unwrap_or(0),
        });
        out.push(DeviceSpec {
            id: p.cfg.id.value.clone(),
            bus: p.bus.clone().unwrap_or_default(),
            from_board: !is_user_file(m, &p.cfg.loc),
            pci,
            io: p.io,
            io_ranges: ranges,
            irq: p.irq,
            mmio: p.mmio.or(legacy),
            kind,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Whether a location is in one of the user's files (not a board's built-in text).
fn is_user_file(m: &Machine, loc: &Loc) -> bool {
    loc.src.0 < m.board_src_start
}
