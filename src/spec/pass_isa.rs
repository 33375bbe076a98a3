//! The ISA pass: base ports and IRQs of ISA devices — explicit ones first (a fixed
//! device can't move), then the kind's default, serial ports taking the first free of
//! COM1-COM4 — and every register region claimed.

use super::ctx::{loc_of, owner, Ctx, Plan};
use super::kinds::isa_layout;
use super::{BusKind, IoRange, Kind};
use crate::config::source::Diagnostic;

/// COM1-COM4: base port and IRQ.
const COM_PORTS: [(u16, u32); 4] = [(0x3f8, 4), (0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];

pub(super) fn assign(ctx: &mut Ctx<'_>, plans: &mut [Plan<'_>]) {
    for p in plans.iter_mut().filter(|p| p.on(BusKind::Isa)) {
        explicit(ctx, p);
    }
    let mut com_used: Vec<u16> = plans
        .iter()
        .filter(|p| p.kind == Kind::Serial)
        .filter_map(|p| p.io_base)
        .collect();
    for p in plans.iter_mut().filter(|p| p.on(BusKind::Isa)) {
        if p.kind == Kind::Serial {
            serial(ctx, p, &mut com_used);
        } else {
            let l = isa_layout(p.kind, ctx.board);
            p.io_base = p.io_base.or(l.base);
            if p.irqs.is_empty() {
                p.irqs = l.irqs.to_vec();
            }
        }
        claim_regions(ctx, p);
    }
}

/// The file's `io` and `irq`, unless the hardware fixes them elsewhere.
fn explicit(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    let l = isa_layout(p.kind, ctx.board);
    let kind = p.kind.name();
    if let Some(v) = &p.cfg.io {
        if l.fixed && Some(v.value as u16) != l.base {
            let msg = format!(
                "the I/O ports of a {kind} are fixed at {:#x}",
                l.base.unwrap_or(0)
            );
            ctx.diags
                .push(Diagnostic::new(&v.loc, msg).label("can't be moved"));
        } else {
            p.io_base = Some(v.value as u16);
        }
    }
    if let Some(v) = &p.cfg.irq {
        if l.fixed && l.irqs.first() != Some(&(v.value as u32)) {
            let msg = match l.irqs.first() {
                Some(i) => format!("the IRQ of a {kind} is fixed at {i}"),
                None => format!("a {kind} has no IRQ of its own"),
            };
            ctx.diags
                .push(Diagnostic::new(&v.loc, msg).label("can't be changed"));
        } else {
            // The first IRQ is the file's; a device with more keeps its others.
            let mut irqs = l.irqs.to_vec();
            match irqs.first_mut() {
                Some(first) => *first = v.value as u32,
                None => irqs.push(v.value as u32),
            }
            p.irqs = irqs;
        }
    }
}

fn serial(ctx: &mut Ctx<'_>, p: &mut Plan<'_>, com_used: &mut Vec<u16>) {
    if p.io_base.is_none() {
        match COM_PORTS.iter().find(|(b, _)| !com_used.contains(b)) {
            Some(&(b, i)) => {
                com_used.push(b);
                p.io_base = Some(b);
                if p.irqs.is_empty() {
                    p.irqs = vec![i];
                }
            }
            None => {
                let msg = format!("{} needs an `io` port: COM1-COM4 are all taken", p.what);
                ctx.diags
                    .push(Diagnostic::new(&p.cfg.loc, msg).label("add `io = 0x...`"));
            }
        }
    } else if p.irqs.is_empty() {
        match COM_PORTS.iter().find(|(b, _)| Some(*b) == p.io_base) {
            Some(&(_, i)) => p.irqs = vec![i],
            None => {
                let loc = loc_of(&p.cfg.io, &p.cfg.loc);
                let msg = format!("{} is not at a COM port, so it needs an `irq`", p.what);
                ctx.diags
                    .push(Diagnostic::new(&loc, msg).label("add `irq = N`"));
            }
        }
    }
}

/// Claims every register region of an ISA device at its base.
fn claim_regions(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    let Some(base) = p.io_base else { return };
    let loc = loc_of(&p.cfg.io, &p.cfg.loc);
    for (off, len) in isa_layout(p.kind, ctx.board).regions {
        let start = u32::from(base) + u32::from(off);
        if start + u32::from(len) > 0x10000 {
            let msg = format!("the I/O ports of {} run past 0xffff", p.what);
            ctx.diags.push(Diagnostic::new(&loc, msg).label("too high"));
            continue;
        }
        if ctx.io.claim(
            start.into(),
            len.into(),
            owner(&p.what, &loc),
            &mut ctx.diags,
        ) {
            p.io.push(IoRange {
                base: start as u16,
                len,
            });
        }
    }
}
