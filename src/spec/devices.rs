//! Devices: which bus each sits on, and every resource it decodes. Explicit addresses
//! are claimed first, then what is left is assigned in declaration order (board
//! devices first), so the same file always gives the same machine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::check::existing_file;
use super::resources::{Claims, Owner};
use super::topology::{self, Bus};
use super::{BusKind, CharBackend, DeviceKind, DeviceSpec, FwCfgData, NicBackend, PciPlacement};
use crate::board::{Board, HIGH_RAM_START, IOAPIC_PINS};
use crate::config::model::{DeviceCfg, FwCfgContents, Machine, Props};
use crate::config::reader::{PciAddr, Sp};
use crate::config::source::{did_you_mean, Diagnostic, Loc};

/// COM1-COM4: base port and IRQ.
const COM_PORTS: [(u16, u32); 4] = [(0x3f8, 4), (0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];
/// GSIs handed to virtio-mmio devices, in order, skipping any already taken.
const VIRTIO_GSIS: [u32; 17] = [
    16, 17, 18, 19, 20, 21, 22, 23, 5, 6, 7, 9, 10, 11, 12, 14, 15,
];

/// What sort of bus a kind of device plugs into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Plug {
    Isa,
    Sysbus,
    /// PCI, or virtio-mmio on the system bus of boards without PCI.
    Pci,
}

fn plug(kind: &str) -> Plug {
    match kind {
        "vga" | "nic" | "disk" => Plug::Pci,
        "ioapic" => Plug::Sysbus,
        _ => Plug::Isa,
    }
}

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

struct Plan<'a> {
    cfg: &'a DeviceCfg,
    bus: Option<String>,
    bus_kind: Option<BusKind>,
    what: String,
    pci: Option<(String, PciAddr)>,
    io: Option<u16>,
    irq: Option<u32>,
    mmio: Option<(u64, u64)>,
}

fn owner(what: &str, loc: &Loc) -> Owner {
    Owner {
        what: what.to_string(),
        loc: loc.clone(),
        share: None,
    }
}

fn loc_of<T>(v: &Option<Sp<T>>, fallback: &Loc) -> Loc {
    v.as_ref()
        .map_or_else(|| fallback.clone(), |s| s.loc.clone())
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

fn plan_bus<'a>(
    d: &'a DeviceCfg,
    board: &Board,
    buses: &[Bus],
    broken: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Plan<'a> {
    let kind = d.kind.value.as_str();
    let what = format!("device `{}`", d.id.value);
    let want = plug(kind);
    let default_bus = match want {
        Plug::Isa => Some("isa"),
        Plug::Sysbus => Some("sysbus"),
        Plug::Pci => match &board.pci {
            Some(r) => Some(r.id),
            None if kind == "vga" => None,
            None => Some("sysbus"),
        },
    };
    let mut plan = Plan {
        cfg: d,
        bus: None,
        bus_kind: None,
        what,
        pci: None,
        io: None,
        irq: None,
        mmio: None,
    };
    let bus_id = match (&d.bus, default_bus) {
        (Some(b), _) => b.value.clone(),
        (None, Some(b)) => b.to_string(),
        (None, None) => {
            diags.push(
                Diagnostic::new(
                    &d.kind.loc,
                    format!(
                        "a {kind} is a PCI device and board {} has no PCI",
                        board.name
                    ),
                )
                .label("needs board pc or q35"),
            );
            return plan;
        }
    };
    let Some(bus) = buses.iter().find(|b| b.spec.id == bus_id) else {
        if broken.contains(&bus_id) {
            return plan;
        }
        let ids: Vec<&str> = buses.iter().map(|b| b.spec.id.as_str()).collect();
        let loc = loc_of(&d.bus, &d.loc);
        let d = Diagnostic::new(
            &loc,
            format!("{} sits on unknown bus `{bus_id}`", plan.what),
        );
        let d = match did_you_mean(&bus_id, ids.iter().copied()) {
            Some(s) => d.label(format!("did you mean `{s}`?")),
            None => d.label("no such bus"),
        };
        diags.push(d.note(format!("buses: {}", ids.join(", "))));
        return plan;
    };
    let ok = match want {
        Plug::Isa => bus.spec.kind == BusKind::Isa,
        Plug::Sysbus => bus.spec.kind == BusKind::Sysbus,
        Plug::Pci => {
            bus.spec.kind.is_pci()
                || (bus.spec.kind == BusKind::Sysbus
                    && board.virtio_mmio.is_some()
                    && kind != "vga")
        }
    };
    if !ok {
        let needs = match want {
            Plug::Isa => "the ISA bus `isa`".to_string(),
            Plug::Sysbus => "the system bus `sysbus`".to_string(),
            Plug::Pci if board.pci.is_some() => "a PCI bus".to_string(),
            Plug::Pci => "a PCI bus, which this board lacks".to_string(),
        };
        let loc = loc_of(&d.bus, &d.kind.loc);
        diags.push(
            Diagnostic::new(
                &loc,
                format!(
                    "a {kind} can't sit on the {} bus `{bus_id}`",
                    bus.spec.kind.name()
                ),
            )
            .label(format!("{kind} devices need {needs}")),
        );
        return plan;
    }
    if kind == "nic" && bus.spec.kind == BusKind::Sysbus {
        if let Props::Nic {
            model: Some(mo), ..
        } = &d.props
        {
            if mo.value != "virtio-net" {
                diags.push(
                    Diagnostic::new(
                        &mo.loc,
                        format!(
                            "an {} is a PCI card; board {} has only virtio-mmio",
                            mo.value, board.name
                        ),
                    )
                    .label("use model = \"virtio-net\""),
                );
            }
        }
    }
    // Keys that only make sense on some buses.
    let kind_bus = bus.spec.kind;
    let misplaced = |key: &str, loc: &Loc, diags: &mut Vec<Diagnostic>, applies: &str| {
        diags.push(
            Diagnostic::new(
                loc,
                format!(
                    "`{key}` does not apply to device `{}` on the {} bus `{bus_id}`",
                    d.id.value,
                    kind_bus.name()
                ),
            )
            .label(format!("`{key}` is for {applies}")),
        );
    };
    if let Some(a) = &d.addr {
        if !kind_bus.is_pci() {
            misplaced("addr", &a.loc, diags, "PCI devices");
        }
    }
    if let Some(v) = &d.io {
        if kind_bus != BusKind::Isa {
            misplaced("io", &v.loc, diags, "ISA devices");
        }
    }
    if let Some(v) = &d.mmio {
        if kind_bus != BusKind::Sysbus || kind == "ioapic" {
            misplaced("mmio", &v.loc, diags, "virtio-mmio devices");
        }
    }
    if let Some(v) = &d.irq {
        if kind_bus.is_pci() || kind == "ioapic" {
            misplaced(
                "irq",
                &v.loc,
                diags,
                "ISA and virtio-mmio devices (PCI interrupts follow the board's routing)",
            );
        } else if kind_bus == BusKind::Sysbus {
            plan.irq = Some(v.value as u32);
        }
    }
    plan.bus = Some(bus_id);
    plan.bus_kind = Some(kind_bus);
    plan
}

fn char_backend(
    backend: &Option<Sp<String>>,
    default: &str,
    path: &Option<Sp<PathBuf>>,
    what: &str,
    loc: &Loc,
    diags: &mut Vec<Diagnostic>,
) -> CharBackend {
    let name = backend.as_ref().map_or(default, |b| b.value.as_str());
    let bloc = loc_of(backend, loc);
    let needs_path = matches!(name, "file" | "socket");
    if let (Some(p), false) = (path, needs_path) {
        diags.push(
            Diagnostic::new(
                &p.loc,
                format!("`path` of {what} is only used by the file and socket backends"),
            )
            .label(format!("backend is \"{name}\"")),
        );
    }
    let path = match (path, needs_path) {
        (Some(p), true) => {
            check_parent_dir(p, what, diags);
            Some(p.value.clone())
        }
        (None, true) => {
            diags.push(
                Diagnostic::new(
                    &bloc,
                    format!("backend \"{name}\" of {what} needs a `path`"),
                )
                .label("add `path = \"...\"`"),
            );
            None
        }
        _ => None,
    };
    match (name, path) {
        ("stdio", _) => CharBackend::Stdio,
        ("stderr", _) => CharBackend::Stderr,
        ("file", Some(p)) => CharBackend::File(p),
        ("socket", Some(p)) => CharBackend::Socket(p),
        ("pty", _) => CharBackend::Pty,
        _ => CharBackend::Null,
    }
}

/// An output file's directory must exist.
fn check_parent_dir(p: &Sp<PathBuf>, what: &str, diags: &mut Vec<Diagnostic>) {
    let dir = p
        .value
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        diags.push(
            Diagnostic::new(
                &p.loc,
                format!(
                    "the directory of {} (for {what}) does not exist",
                    p.value.display()
                ),
            )
            .label("no such directory"),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn device_kind(
    p: &Plan<'_>,
    m: &Machine,
    board: &Board,
    macs: &mut Vec<([u8; 6], String, Loc)>,
    stdio_user: &mut Option<(String, Loc)>,
    disks: &mut Vec<(PathBuf, bool, String, Loc)>,
    diags: &mut Vec<Diagnostic>,
) -> Option<DeviceKind> {
    let d = p.cfg;
    let what = &p.what;
    Some(match (d.kind.value.as_str(), &d.props) {
        ("serial", Props::Serial { backend, path, log }) => {
            let default = if d.id.value == "com1" {
                "stdio"
            } else {
                "null"
            };
            let backend_v = char_backend(backend, default, path, what, &d.loc, diags);
            if backend_v == CharBackend::Stdio {
                let loc = loc_of(backend, &d.loc);
                match stdio_user {
                    Some((other, oloc)) => diags.push(
                        Diagnostic::new(
                            &loc,
                            format!("{what} and {other} both read standard input"),
                        )
                        .label("only one device can have the stdio backend")
                        .note_at(oloc, format!("{other} is here")),
                    ),
                    None => *stdio_user = Some((what.clone(), loc)),
                }
            }
            if let Some(l) = log {
                check_parent_dir(l, what, diags);
            }
            DeviceKind::Serial {
                backend: backend_v,
                log: log.as_ref().map(|l| l.value.clone()),
            }
        }
        ("rtc", Props::Rtc { clock }) => DeviceKind::Rtc {
            localtime: clock.as_ref().is_some_and(|c| c.value == "localtime"),
        },
        ("debugcon", Props::Debugcon { backend, path }) => DeviceKind::Debugcon {
            backend: char_backend(backend, "stderr", path, what, &d.loc, diags),
        },
        ("fw_cfg", Props::FwCfg { files }) => {
            let mut out: Vec<(String, FwCfgData)> = Vec::new();
            for f in files {
                let name = &f.name.value;
                if name.is_empty() || name.len() > 55 {
                    diags.push(
                        Diagnostic::new(
                            &f.name.loc,
                            format!("fw_cfg file name \"{name}\" must be 1-55 bytes"),
                        )
                        .label("bad length"),
                    );
                    continue;
                }
                if out.iter().any(|(n, _)| n == name) {
                    diags.push(
                        Diagnostic::new(
                            &f.name.loc,
                            format!("fw_cfg file \"{name}\" is given twice"),
                        )
                        .label("duplicate name"),
                    );
                    continue;
                }
                if !name.starts_with("opt/") {
                    diags.push(
                        Diagnostic::new(&f.name.loc, format!("fw_cfg file \"{name}\" must be under \"opt/\""))
                            .label("user files live in opt/ so they can't shadow the firmware's own (etc/e820, bootorder, ...)"),
                    );
                    continue;
                }
                let data = match &f.contents {
                    FwCfgContents::Path(p) => match existing_file(p, "fw_cfg file", diags) {
                        Some(path) => FwCfgData::File(path),
                        None => continue,
                    },
                    FwCfgContents::String(s) => FwCfgData::Inline(s.value.clone()),
                };
                out.push((name.clone(), data));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            DeviceKind::FwCfg { files: out }
        }
        ("vga", Props::Vga { vram }) => {
            let v = vram.as_ref().map_or(16 << 20, |v| v.value);
            if let Some(vr) = vram {
                if !v.is_power_of_two() || !(1 << 20..=256 << 20).contains(&v) {
                    diags.push(
                        Diagnostic::new(
                            &vr.loc,
                            format!("`vram` of {what} must be a power of two from 1MiB to 256MiB"),
                        )
                        .label("bad size"),
                    );
                }
            }
            DeviceKind::Vga { vram: v }
        }
        (
            "nic",
            Props::Nic {
                model,
                mac,
                backend,
                tap,
                switch,
            },
        ) => {
            let model = model
                .as_ref()
                .map_or("virtio-net".to_string(), |m| m.value.clone());
            let mac = match mac {
                Some(mac) => {
                    if let Some((_, other, oloc)) = macs.iter().find(|(x, _, _)| *x == mac.value) {
                        diags.push(
                            Diagnostic::new(
                                &mac.loc,
                                format!("{what} has the same MAC address as {other}"),
                            )
                            .label("duplicate MAC")
                            .note_at(oloc, format!("{other} is here")),
                        );
                    }
                    mac.value
                }
                None => derive_mac(&m.name.value, &d.id.value, macs),
            };
            macs.push((mac, what.clone(), d.mac_loc()));
            let bname = backend.as_ref().map_or("none", |b| b.value.as_str());
            let bloc = loc_of(backend, &d.loc);
            if let (Some(t), false) = (tap, bname == "tap") {
                diags.push(
                    Diagnostic::new(
                        &t.loc,
                        format!("`tap` of {what} is only used by backend \"tap\""),
                    )
                    .label(format!("backend is \"{bname}\"")),
                );
            }
            if let (Some(s), false) = (switch, bname == "switch") {
                diags.push(
                    Diagnostic::new(
                        &s.loc,
                        format!("`switch` of {what} is only used by backend \"switch\""),
                    )
                    .label(format!("backend is \"{bname}\"")),
                );
            }
            if let Some(t) = tap {
                if t.value.is_empty() || t.value.len() > 15 || t.value.contains(['/', ' ', '\0']) {
                    diags.push(
                        Diagnostic::new(
                            &t.loc,
                            format!("`tap` of {what} is not an interface name"),
                        )
                        .label("1-15 characters, no '/' or spaces"),
                    );
                }
            }
            let backend = match bname {
                "tap" => NicBackend::Tap(tap.as_ref().map(|t| t.value.clone())),
                "switch" => match switch {
                    Some(s) => {
                        check_parent_dir(s, what, diags);
                        NicBackend::Switch(s.value.clone())
                    }
                    None => {
                        diags.push(Diagnostic::new(&bloc, format!("backend \"switch\" of {what} needs `switch`, the switch's socket path")).label("add `switch = \"...\"`"));
                        NicBackend::None
                    }
                },
                _ => NicBackend::None,
            };
            DeviceKind::Nic {
                model,
                mac,
                backend,
            }
        }
        (
            "disk",
            Props::Disk {
                path,
                readonly,
                format,
            },
        ) => {
            let readonly = readonly.as_ref().is_some_and(|r| r.value);
            let Some(p) = path else {
                diags.push(
                    Diagnostic::new(&d.kind.loc, format!("{what} needs a `path` to its image"))
                        .label("add `path = \"disk.img\"`"),
                );
                return None;
            };
            let abs = existing_file(p, "disk image", diags)?;
            if let Some((_, other_ro, other, oloc)) = disks.iter().find(|(q, ..)| *q == abs) {
                if !readonly || !other_ro {
                    diags.push(
                        Diagnostic::new(
                            &p.loc,
                            format!("{what} and {other} use the same image {}", abs.display()),
                        )
                        .label("an image written by one device can't be shared")
                        .note_at(oloc, format!("{other} is here")),
                    );
                }
            }
            disks.push((abs.clone(), readonly, what.clone(), p.loc.clone()));
            DeviceKind::Disk {
                path: abs,
                readonly,
                format: format.as_ref().map_or("raw".into(), |f| f.value.clone()),
            }
        }
        ("i8042", _) => DeviceKind::I8042,
        ("pm", _) => DeviceKind::Pm {
            s5_typ: board.s5_typ,
        },
        ("pit", _) => DeviceKind::Pit,
        ("pic", _) => DeviceKind::Pic,
        ("ioapic", _) => DeviceKind::Ioapic,
        _ => return None,
    })
}

impl DeviceCfg {
    fn mac_loc(&self) -> Loc {
        match &self.props {
            Props::Nic { mac: Some(m), .. } => m.loc.clone(),
            _ => self.id.loc.clone(),
        }
    }
}

/// A locally administered MAC (QEMU's 52:54:00 prefix) from the machine name and the
/// device id, re-hashed past any collision.
fn derive_mac(machine: &str, id: &str, macs: &[([u8; 6], String, Loc)]) -> [u8; 6] {
    for n in 0u32.. {
        let mut h = Sha256::new();
        h.update(machine.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        if n > 0 {
            h.update(n.to_le_bytes());
        }
        let d = h.finalize();
        let mac = [0x52, 0x54, 0x00, d[0], d[1], d[2]];
        if !macs.iter().any(|(x, _, _)| *x == mac) {
            return mac;
        }
    }
    unreachable!("2^32 collisions")
}
