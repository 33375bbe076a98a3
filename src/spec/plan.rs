//! Which bus each device sits on, and whether its keys make sense there: the first
//! step of placing devices.

use super::resources::Owner;
use super::topology::Bus;
use super::BusKind;
use crate::board::Board;
use crate::config::model::{DeviceCfg, Props};
use crate::config::reader::{PciAddr, Sp};
use crate::config::source::{did_you_mean, Diagnostic, Loc};

/// What sort of bus a kind of device plugs into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Plug {
    Isa,
    Sysbus,
    /// PCI, or virtio-mmio on the system bus of boards without PCI.
    Pci,
}

pub(super) fn plug(kind: &str) -> Plug {
    match kind {
        "vga" | "nic" | "disk" => Plug::Pci,
        "ioapic" => Plug::Sysbus,
        _ => Plug::Isa,
    }
}

pub(super) struct Plan<'a> {
    pub(super) cfg: &'a DeviceCfg,
    pub(super) bus: Option<String>,
    pub(super) bus_kind: Option<BusKind>,
    pub(super) what: String,
    pub(super) pci: Option<(String, PciAddr)>,
    pub(super) io: Option<u16>,
    pub(super) irq: Option<u32>,
    pub(super) mmio: Option<(u64, u64)>,
}

pub(super) fn owner(what: &str, loc: &Loc) -> Owner {
    Owner {
        what: what.to_string(),
        loc: loc.clone(),
        share: None,
    }
}

pub(super) fn loc_of<T>(v: &Option<Sp<T>>, fallback: &Loc) -> Loc {
    v.as_ref()
        .map_or_else(|| fallback.clone(), |s| s.loc.clone())
}

pub(super) fn plan_bus<'a>(
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
