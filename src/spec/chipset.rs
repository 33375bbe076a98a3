//! The board's own part of the machine: the memory layout (RAM around the PCI hole,
//! the windows PCI BARs go in, what e820 reserves), the chipset (PCI host, ECAM,
//! interrupt routing, reset register), and the claims they make before any device is
//! placed: the chipset's ports and MMIO, guest RAM, the legacy BIOS area and the PIC's
//! cascade line.

use super::ctx::Ctx;
use super::{Chipset, IntxRouting, IoRange, MemoryLayout, MmioRange, PciHost};
use crate::arch::x86_64::layout::{self};
use crate::board::{
    Board, ADDRESS_SPACE_END, CASCADE_IRQ, HIGH_RAM_START, LAPIC_BASE, PCI_HOLE64_SIZE,
    PCI_HOLE_END,
};

const GIB: u64 = 1 << 30;

/// Claims what the chipset decodes, RAM and the legacy areas, and the cascade IRQ.
pub(super) fn claim(ctx: &mut Ctx<'_>) {
    let board = ctx.board;
    for &(base, len, what) in board.chipset_io {
        let who = ctx.chipset(what);
        ctx.io.claim(base.into(), len.into(), who, &mut ctx.diags);
    }
    for &(base, len, what) in board.chipset_mmio {
        let who = ctx.chipset(what);
        ctx.mmio.claim(base, len, who, &mut ctx.diags);
    }
    let (below, above) = ctx.ram;
    let ram = super::ctx::owner("guest RAM", &ctx.m.memory.loc);
    // RAM below 4 GiB has the legacy hole at 0xa0000-0xfffff: the VGA window, then
    // option ROMs and the BIOS.
    ctx.mmio
        .claim(0, below.min(0xa0000), ram.clone(), &mut ctx.diags);
    let bios = ctx.chipset("legacy option ROM and BIOS area");
    ctx.mmio.claim(0xc0000, 0x40000, bios, &mut ctx.diags);
    if below > 0x10_0000 {
        ctx.mmio
            .claim(0x10_0000, below - 0x10_0000, ram.clone(), &mut ctx.diags);
    }
    if above > 0 {
        ctx.mmio.claim(HIGH_RAM_START, above, ram, &mut ctx.diags);
    }
    let cascade = ctx.chipset("PIC cascade (IRQ 2)");
    ctx.gsis
        .claim(CASCADE_IRQ.into(), 1, cascade, &mut ctx.diags);
}

/// The root-bus INTx routing of a PCI board.
pub(super) fn routing(board: &Board) -> Option<IntxRouting> {
    board.pci.as_ref().map(|r| IntxRouting {
        slot_offset: r.pirq_slot_offset,
        pirq_gsi: r.pirq_gsi,
    })
}

pub(super) fn chipset(board: &Board) -> Chipset {
    let routing = routing(board);
    let pci = board.pci.as_ref().zip(routing).map(|(r, routing)| PciHost {
        express: r.express,
        root_bus: r.id.to_string(),
        config_ports: IoRange {
            base: 0xcf8,
            len: 8,
        },
        ecam: r.ecam.map(|(base, len)| MmioRange { base, len }),
        functions: r.functions.to_vec(),
        isa_bridge: r.isa_bridge,
        routing,
    });
    Chipset {
        pci,
        reset_port: board.reset_port,
        lapic_base: LAPIC_BASE,
    }
}

/// RAM split around the board's PCI hole, the PCI windows, and e820 reservations.
pub(super) fn memory(board: &Board, size: u64) -> MemoryLayout {
    let (below, above) = board.ram_split(size);
    let ram = layout::ram_regions(size, board.low_limit(size));
    let ecam = board
        .pci
        .as_ref()
        .and_then(|p| p.ecam)
        .map(|(base, len)| MmioRange { base, len });
    let (pci_hole, pci_hole64) = match &board.pci {
        Some(r) => {
            let start = below.max(r.hole_min).min(PCI_HOLE_END & !0xf_ffff);
            let hole = MmioRange {
                base: start,
                len: PCI_HOLE_END - start,
            };
            // (Memory too large for the address space is refused by check; the
            // arithmetic saturates so it can say so.)
            let start64 = HIGH_RAM_START
                .saturating_add(above)
                .div_ceil(GIB)
                .saturating_mul(GIB);
            let end64 = start64
                .saturating_add(PCI_HOLE64_SIZE)
                .min(ADDRESS_SPACE_END);
            let hole64 = (end64 > start64).then(|| MmioRange {
                base: start64,
                len: end64 - start64,
            });
            (Some(hole), hole64)
        }
        None => (None, None),
    };
    MemoryLayout {
        size,
        below_4g: below,
        above_4g: above,
        ram,
        reserved: ecam.into_iter().collect(),
        pci_hole,
        pci_hole64,
        address_space_end: ADDRESS_SPACE_END,
    }
}
