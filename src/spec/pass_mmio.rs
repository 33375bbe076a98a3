//! The MMIO pass: the IOAPIC's window, virtio-mmio transports on the system bus
//! (explicit bases, then the board's next free slot), and the VGA's legacy ports and
//! 0xA0000 window. Every range must lie inside the guest-physical address space and
//! clear of RAM, the chipset and other devices.

use super::ctx::{owner, Ctx, Plan};
use super::{BusKind, IoRange, Kind, MmioRange};
use crate::board::{ADDRESS_SPACE_END, IOAPIC_MMIO};
use crate::config::source::{Diagnostic, Loc};

/// The VGA's legacy registers: (base, length, what).
const VGA_PORTS: [(u16, u16, &str); 2] = [
    (0x3b0, 0x30, "VGA registers"),
    (0x1ce, 2, "Bochs VBE DISPI ports"),
];
/// The legacy VGA memory window.
const VGA_WINDOW: MmioRange = MmioRange {
    base: 0xa_0000,
    len: 0x2_0000,
};

pub(super) fn assign(ctx: &mut Ctx<'_>, plans: &mut [Plan<'_>]) {
    for p in plans.iter_mut() {
        match p.kind {
            Kind::Ioapic => ioapic(ctx, p),
            Kind::Vga if p.on_pci() => vga(ctx, p),
            _ if p.on(BusKind::Sysbus) => explicit_virtio(ctx, p),
            _ => {}
        }
    }
    for p in plans
        .iter_mut()
        .filter(|p| p.on(BusKind::Sysbus) && p.kind != Kind::Ioapic && p.mmio.is_empty())
    {
        if p.cfg.mmio.is_none() {
            auto_virtio(ctx, p);
        }
    }
}

fn ioapic(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    // The chipset already claims the window; the device just decodes it.
    let _ = ctx;
    p.mmio = vec![MmioRange {
        base: IOAPIC_MMIO.0,
        len: IOAPIC_MMIO.1,
    }];
}

fn vga(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    for (base, len, what) in VGA_PORTS {
        let who = owner(&format!("{} ({what})", p.what), &p.cfg.loc);
        if ctx.io.claim(base.into(), len.into(), who, &mut ctx.diags) {
            p.io.push(IoRange { base, len });
        }
    }
    let who = owner(&format!("{} (VGA window)", p.what), &p.cfg.loc);
    if ctx
        .mmio
        .claim(VGA_WINDOW.base, VGA_WINDOW.len, who, &mut ctx.diags)
    {
        p.mmio.push(VGA_WINDOW);
    }
}

/// The stride (and size) of a virtio-mmio window.
fn virtio_stride(ctx: &Ctx<'_>) -> u64 {
    ctx.board.virtio_mmio.map_or(0x200, |v| v.1)
}

fn explicit_virtio(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    let Some(v) = &p.cfg.mmio else { return };
    let (base, len) = (v.value as u64, virtio_stride(ctx));
    if base % 0x200 != 0 {
        let msg = format!("the MMIO base of {} must be 512-byte aligned", p.what);
        ctx.diags
            .push(Diagnostic::new(&v.loc, msg).label("not aligned"));
    } else if !in_address_space(ctx, base, len, &p.what, &v.loc) {
    } else if ctx
        .mmio
        .claim(base, len, owner(&p.what, &v.loc), &mut ctx.diags)
    {
        p.mmio = vec![MmioRange { base, len }];
    }
}

/// Whether `[base, base + len)` is inside the guest-physical address space (an error
/// otherwise).
fn in_address_space(ctx: &mut Ctx<'_>, base: u64, len: u64, what: &str, loc: &Loc) -> bool {
    if base
        .checked_add(len)
        .is_some_and(|e| e <= ADDRESS_SPACE_END)
    {
        return true;
    }
    let msg =
        format!("the MMIO window of {what} at {base:#x} is outside the guest's address space");
    ctx.diags
        .push(Diagnostic::new(loc, msg).label("too high").note(format!(
            "guest-physical addresses end at {ADDRESS_SPACE_END:#x} (40 bits)"
        )));
    false
}

fn auto_virtio(ctx: &mut Ctx<'_>, p: &mut Plan<'_>) {
    let Some((base, stride, count)) = ctx.board.virtio_mmio else {
        return;
    };
    let slot = (0..u64::from(count))
        .map(|i| base + i * stride)
        .find(|b| ctx.mmio.taken(*b, stride).is_none());
    match slot {
        Some(b) => {
            ctx.mmio
                .claim(b, stride, owner(&p.what, &p.cfg.loc), &mut ctx.diags);
            p.mmio = vec![MmioRange {
                base: b,
                len: stride,
            }];
        }
        None => {
            let msg = format!("no virtio-mmio slot left for {}", p.what);
            let label = format!("board {} has {count}", ctx.board.name);
            ctx.diags
                .push(Diagnostic::new(&p.cfg.loc, msg).label(label));
        }
    }
}
