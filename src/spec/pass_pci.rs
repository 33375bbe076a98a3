//! The PCI pass: bridges and PCI devices get their slot.function on their bus —
//! explicit addresses first, then the first free slot in declaration order — and
//! bridges get their bus numbers, depth-first in address order as firmware numbers them.

use super::ctx::{owner, Ctx, Plan};
use super::topology;
use super::BusKind;
use crate::config::reader::PciAddr;
use crate::config::source::Diagnostic;

pub(super) fn place(ctx: &mut Ctx<'_>, plans: &mut [Plan<'_>]) {
    claim_chipset_slots(ctx);
    explicit_bridges(ctx);
    explicit_devices(ctx, plans);
    auto_bridges(ctx);
    auto_devices(ctx, plans);
    check_slots(ctx);
    topology::number_buses(&mut ctx.buses, &ctx.m.anchor, &mut ctx.diags);
}

fn claim_chipset_slots(ctx: &mut Ctx<'_>) {
    let Some(root) = &ctx.board.pci else { return };
    for (addr, what) in root.chipset {
        let who = ctx.chipset(what);
        ctx.pci
            .entry(root.id.into())
            .or_default()
            .push((*addr, who));
    }
}

fn explicit_bridges(ctx: &mut Ctx<'_>) {
    for i in 0..ctx.buses.len() {
        let b = &ctx.buses[i];
        let (Some(a), Some(parent)) = (
            b.cfg.as_ref().and_then(|c| c.addr.clone()),
            b.spec.parent.clone(),
        ) else {
            continue;
        };
        let who = owner(&format!("bus `{}`", b.spec.id), &a.loc);
        if ctx.take_pci(&parent, a.value, who) {
            ctx.buses[i].spec.addr = Some(a.value);
        }
    }
}

fn explicit_devices(ctx: &mut Ctx<'_>, plans: &mut [Plan<'_>]) {
    for p in plans.iter_mut().filter(|p| p.on_pci()) {
        let (Some(a), Some(bus)) = (&p.cfg.addr, p.bus.clone()) else {
            continue;
        };
        if ctx.take_pci(&bus, a.value, owner(&p.what, &a.loc)) {
            p.pci = Some((bus, a.value));
        }
    }
}

/// The first free slot (function 0) on `bus` below `max`.
fn free_slot(ctx: &Ctx<'_>, bus: &str, max: u8) -> Option<PciAddr> {
    let used = ctx.used_slots(bus);
    (ctx.first_slot(bus)..max)
        .find(|s| !used.contains(s))
        .map(|slot| PciAddr { slot, func: 0 })
}

fn auto_bridges(ctx: &mut Ctx<'_>) {
    for i in 0..ctx.buses.len() {
        let b = &ctx.buses[i];
        let (Some(cfg), Some(parent)) = (&b.cfg, b.spec.parent.clone()) else {
            continue;
        };
        if cfg.addr.is_some() {
            continue;
        }
        let (id, loc) = (b.spec.id.clone(), cfg.loc.clone());
        let Some(a) = free_slot(ctx, &parent, 32) else {
            let msg = format!("bus `{parent}` has no free slot for bus `{id}`");
            ctx.diags.push(Diagnostic::new(&loc, msg).label("bus full"));
            continue;
        };
        ctx.take_pci(&parent, a, owner(&format!("bus `{id}`"), &loc));
        ctx.buses[i].spec.addr = Some(a);
    }
}

fn auto_devices(ctx: &mut Ctx<'_>, plans: &mut [Plan<'_>]) {
    for p in plans
        .iter_mut()
        .filter(|p| p.on_pci() && p.cfg.addr.is_none())
    {
        let Some(bus) = p.bus.clone() else { continue };
        let root_port = p.on(BusKind::PcieRootPort);
        let Some(a) = free_slot(ctx, &bus, if root_port { 1 } else { 32 }) else {
            let msg = format!("bus `{bus}` has no free slot for {}", p.what);
            let mut d = Diagnostic::new(&p.cfg.loc, msg).label("bus full");
            if root_port {
                d = d.note(
                    "a PCIe root port has a single slot (00); give each device its own root port",
                );
            }
            ctx.diags.push(d);
            continue;
        };
        ctx.take_pci(&bus, a, owner(&p.what, &p.cfg.loc));
        p.pci = Some((bus, a));
    }
}

/// Root ports have one slot; functions other than 0 need function 0.
fn check_slots(ctx: &mut Ctx<'_>) {
    for (bus, list) in &ctx.pci {
        let root_port = ctx
            .buses
            .iter()
            .any(|b| &b.spec.id == bus && b.spec.kind == BusKind::PcieRootPort);
        for (a, who) in list {
            if root_port && a.slot != 0 {
                let msg = format!(
                    "{} is at slot {:02x} of PCIe root port `{bus}`, which has only slot 00",
                    who.what, a.slot
                );
                ctx.diags
                    .push(Diagnostic::new(&who.loc, msg).label("use addr = \"00.0\""));
            }
            if a.func != 0 && !list.iter().any(|(b, _)| b.slot == a.slot && b.func == 0) {
                let msg = format!(
                    "{} is function {} of slot {:02x} on `{bus}`, but nothing is at function 0",
                    who.what, a.func, a.slot
                );
                ctx.diags.push(
                    Diagnostic::new(&who.loc, msg)
                        .label("firmware and OSes only look past function 0 when it exists"),
                );
            }
        }
    }
}
