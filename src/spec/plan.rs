//! The first device pass: which bus each device sits on, and whether its keys make
//! sense there.

use super::ctx::{loc_of, Ctx, Plan};
use super::kinds::{plug, Plug};
use super::{BusKind, Kind};
use crate::config::model::{DeviceCfg, Props};
use crate::config::source::{did_you_mean, Diagnostic, Loc};

/// A plan per device whose kind is known, in declaration order (board devices first).
pub(super) fn plan_all<'a>(ctx: &mut Ctx<'a>) -> Vec<Plan<'a>> {
    let m = ctx.m;
    m.devices
        .iter()
        .filter_map(|d| Some((d, Kind::parse(&d.kind.value)?)))
        .map(|(d, kind)| plan_bus(ctx, d, kind))
        .collect()
}

fn new_plan(d: &DeviceCfg, kind: Kind) -> Plan<'_> {
    Plan {
        cfg: d,
        kind,
        what: format!("device `{}`", d.id.value),
        bus: None,
        bus_kind: None,
        pci: None,
        io_base: None,
        io: Vec::new(),
        irqs: Vec::new(),
        mmio: Vec::new(),
        pci_gsi: None,
    }
}

/// The bus a device of `kind` sits on when the file names none.
fn default_bus(ctx: &Ctx<'_>, kind: Kind) -> Option<&'static str> {
    match plug(kind) {
        Plug::Isa => Some("isa"),
        Plug::Sysbus => Some("sysbus"),
        Plug::Pci => match &ctx.board.pci {
            Some(r) => Some(r.id),
            None if kind == Kind::Vga => None,
            None => Some("sysbus"),
        },
    }
}

fn plan_bus<'a>(ctx: &mut Ctx<'a>, d: &'a DeviceCfg, kind: Kind) -> Plan<'a> {
    let mut plan = new_plan(d, kind);
    let bus_id = match (&d.bus, default_bus(ctx, kind)) {
        (Some(b), _) => b.value.clone(),
        (None, Some(b)) => b.to_string(),
        (None, None) => {
            let msg = format!(
                "a {} is a PCI device and board {} has no PCI",
                kind.name(),
                ctx.board.name
            );
            ctx.diags
                .push(Diagnostic::new(&d.kind.loc, msg).label("needs board pc or q35"));
            return plan;
        }
    };
    let Some(bus_kind) = ctx
        .buses
        .iter()
        .find(|b| b.spec.id == bus_id)
        .map(|b| b.spec.kind)
    else {
        if !ctx.broken.contains(&bus_id) {
            unknown_bus(ctx, d, &plan.what, &bus_id);
        }
        return plan;
    };
    if !fits(ctx, kind, bus_kind) {
        wrong_bus(ctx, d, kind, bus_kind, &bus_id);
        return plan;
    }
    if kind == Kind::Nic && bus_kind == BusKind::Sysbus {
        if let Props::Nic {
            model: Some(mo), ..
        } = &d.props
        {
            if mo.value != "virtio-net" {
                let msg = format!(
                    "an {} is a PCI card; board {} has only virtio-mmio",
                    mo.value, ctx.board.name
                );
                ctx.diags
                    .push(Diagnostic::new(&mo.loc, msg).label("use model = \"virtio-net\""));
            }
        }
    }
    misplaced_keys(ctx, d, kind, bus_kind, &bus_id);
    plan.bus = Some(bus_id);
    plan.bus_kind = Some(bus_kind);
    plan
}

fn fits(ctx: &Ctx<'_>, kind: Kind, bus: BusKind) -> bool {
    match plug(kind) {
        Plug::Isa => bus == BusKind::Isa,
        Plug::Sysbus => bus == BusKind::Sysbus,
        Plug::Pci => {
            bus.is_pci()
                || (bus == BusKind::Sysbus && ctx.board.virtio_mmio.is_some() && kind != Kind::Vga)
        }
    }
}

fn unknown_bus(ctx: &mut Ctx<'_>, d: &DeviceCfg, what: &str, bus_id: &str) {
    let ids: Vec<&str> = ctx.buses.iter().map(|b| b.spec.id.as_str()).collect();
    let loc = loc_of(&d.bus, &d.loc);
    let diag = Diagnostic::new(&loc, format!("{what} sits on unknown bus `{bus_id}`"));
    let diag = match did_you_mean(bus_id, ids.iter().copied()) {
        Some(s) => diag.label(format!("did you mean `{s}`?")),
        None => diag.label("no such bus"),
    };
    let diag = diag.note(format!("buses: {}", ids.join(", ")));
    ctx.diags.push(diag);
}

fn wrong_bus(ctx: &mut Ctx<'_>, d: &DeviceCfg, kind: Kind, bus: BusKind, bus_id: &str) {
    let needs = match plug(kind) {
        Plug::Isa => "the ISA bus `isa`",
        Plug::Sysbus => "the system bus `sysbus`",
        Plug::Pci if ctx.board.pci.is_some() => "a PCI bus",
        Plug::Pci => "a PCI bus, which this board lacks",
    };
    let loc = loc_of(&d.bus, &d.kind.loc);
    let msg = format!(
        "a {} can't sit on the {} bus `{bus_id}`",
        kind.name(),
        bus.name()
    );
    ctx.diags
        .push(Diagnostic::new(&loc, msg).label(format!("{} devices need {needs}", kind.name())));
}

/// Keys that only make sense on some buses.
fn misplaced_keys(ctx: &mut Ctx<'_>, d: &DeviceCfg, kind: Kind, bus: BusKind, bus_id: &str) {
    let mut misplaced = |key: &str, loc: &Loc, applies: &str| {
        let msg = format!(
            "`{key}` does not apply to device `{}` on the {} bus `{bus_id}`",
            d.id.value,
            bus.name()
        );
        ctx.diags
            .push(Diagnostic::new(loc, msg).label(format!("`{key}` is for {applies}")));
    };
    if let Some(a) = &d.addr {
        if !bus.is_pci() {
            misplaced("addr", &a.loc, "PCI devices");
        }
    }
    if let Some(v) = &d.io {
        if bus != BusKind::Isa {
            misplaced("io", &v.loc, "ISA devices");
        }
    }
    if let Some(v) = &d.mmio {
        if bus != BusKind::Sysbus || kind == Kind::Ioapic {
            misplaced("mmio", &v.loc, "virtio-mmio devices");
        }
    }
    if let Some(v) = &d.irq {
        if bus.is_pci() || kind == Kind::Ioapic {
            misplaced(
                "irq",
                &v.loc,
                "ISA and virtio-mmio devices (PCI interrupts follow the board's routing)",
            );
        }
    }
}
