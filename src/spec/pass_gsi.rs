//! The interrupt pass: ISA and virtio-mmio lines are claimed (exclusive, but serial
//! ports may share one as COM1 and COM3 traditionally do), virtio-mmio devices without
//! an `irq` get the next free GSI of 16-23 then 5-15, and every PCI device's INTA is
//! swizzled up through its bridges and routed to a GSI by the board's PIRQ wiring —
//! which must not land on a line an ISA device owns.

use super::ctx::{loc_of, owner, Ctx, Plan};
use super::resources::Owner;
use super::topology;
use super::{BusKind, Kind};
use crate::board::IOAPIC_PINS;
use crate::config::source::Diagnostic;

/// GSIs handed to virtio-mmio devices, in order, skipping any already taken.
const VIRTIO_GSIS: [u32; 17] = [
    16, 17, 18, 19, 20, 21, 22, 23, 5, 6, 7, 9, 10, 11, 12, 14, 15,
];

pub(super) fn assign(ctx: &mut Ctx<'_>, plans: &mut [Plan<'_>]) {
    for p in plans.iter_mut() {
        claim_lines(ctx, p);
    }
    for p in plans
        .iter_mut()
        .filter(|p| p.on(BusKind::Sysbus) && p.kind != Kind::Ioapic)
    {
        if p.irqs.is_empty() {
            auto_virtio(ctx, p);
        }
    }
    for p in plans.iter_mut() {
        route_pci(ctx, p);
    }
}

/// Claims the lines an ISA or virtio-mmio device raises.
fn claim_lines(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    if p.on(BusKind::Sysbus) && p.cfg.irq.is_some() {
        p.irqs = p.cfg.irq.iter().map(|v| v.value as u32).collect();
    }
    let loc = loc_of(&p.cfg.irq, &p.cfg.loc);
    for &irq in &p.irqs {
        if irq >= IOAPIC_PINS {
            let msg = format!(
                "GSI {irq} of {} is past the IOAPIC's {IOAPIC_PINS} inputs",
                p.what
            );
            ctx.diags.push(Diagnostic::new(&loc, msg).label("too high"));
            continue;
        }
        let who = Owner {
            what: p.what.clone(),
            loc: loc.clone(),
            share: (p.kind == Kind::Serial).then_some("serial"),
        };
        ctx.gsis.claim(irq.into(), 1, who, &mut ctx.diags);
    }
}

fn auto_virtio(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    let free = VIRTIO_GSIS
        .iter()
        .copied()
        .find(|g| ctx.gsis.taken((*g).into(), 1).is_none());
    match free {
        Some(g) => {
            ctx.gsis
                .claim(g.into(), 1, owner(&p.what, &p.cfg.loc), &mut ctx.diags);
            p.irqs = vec![g];
        }
        None => {
            let msg = format!("no free GSI for {}", p.what);
            ctx.diags
                .push(Diagnostic::new(&p.cfg.loc, msg).label("all IOAPIC inputs are taken"));
        }
    }
}

/// INTA of a PCI device → the GSI it reaches; an error if an exclusive line is there.
/// The VGA has no interrupt pin.
fn route_pci(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    if p.kind == Kind::Vga {
        return;
    }
    let (Some((bus, addr)), Some(routing)) = (&p.pci, super::chipset::routing(ctx.board)) else {
        return;
    };
    let (slot, pin) = topology::swizzle_to_root(&ctx.buses, bus, addr.slot, 1);
    let gsi = routing.gsi(slot, pin - 1);
    if let Some(other) = ctx.gsis.taken(gsi.into(), 1) {
        let msg = format!(
            "{} raises GSI {gsi} through PCI interrupt routing, which {} uses",
            p.what, other.what
        );
        let d = Diagnostic::new(&p.cfg.loc, msg)
            .label("interrupt conflict")
            .note_at(
                &other.loc,
                format!("{} is here; give it another irq", other.what),
            );
        ctx.diags.push(d);
    }
    p.pci_gsi = Some(gsi);
}
