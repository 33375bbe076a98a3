//! Devices: the resolution passes in order, each over the shared context. Explicit
//! addresses are claimed first within every pass, then what is left is assigned in
//! declaration order (board devices first), so the same file always gives the same
//! machine.
//!
//! 1. `chipset::claim`: the chipset's ports and MMIO, RAM, the cascade IRQ;
//! 2. `plan`: which bus each device sits on;
//! 3. `pass_pci`: PCI slots and bus numbers;
//! 4. `pass_isa`: ISA ports and IRQs;
//! 5. `pass_mmio`: MMIO windows (IOAPIC, virtio-mmio, VGA legacy);
//! 6. `pass_gsi`: GSIs (claims, virtio-mmio lines, PCI INTx routing);
//! 7. `props`: kind-specific properties.

use super::ctx::{Ctx, Plan};
use super::kinds::can_disable;
use super::props::{device_kind, Seen};
use super::{chipset, pass_gsi, pass_isa, pass_mmio, pass_pci, plan};
use super::{CpuTopology, DeviceSpec, Kind, PciPlacement};
use crate::config::source::Diagnostic;

pub(super) fn resolve(ctx: &mut Ctx<'_>, cpus: &CpuTopology) -> Vec<DeviceSpec> {
    refuse_disabled(ctx);
    chipset::claim(ctx);
    let mut plans = plan::plan_all(ctx);
    pass_pci::place(ctx, &mut plans);
    pass_isa::assign(ctx, &mut plans);
    pass_mmio::assign(ctx, &mut plans);
    pass_gsi::assign(ctx, &mut plans);
    let ioapic_id = ioapic_apic_id(cpus);
    let mut seen = Seen::default();
    let mut out: Vec<DeviceSpec> = plans
        .iter()
        .filter_map(|p| {
            let kind = device_kind(ctx, p, &mut seen, ioapic_id)?;
            Some(finish(ctx, p, kind))
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The IOAPIC takes the APIC ID after the last CPU's.
fn ioapic_apic_id(cpus: &CpuTopology) -> u8 {
    let last = (0..cpus.count())
        .map(|i| cpus.apic_id(i))
        .max()
        .unwrap_or(0);
    (last + 1).min(254) as u8
}

/// `enabled = false` on a device that exists whatever the file says is an error.
fn refuse_disabled(ctx: &mut Ctx<'_>) {
    for d in &ctx.m.disabled {
        let Some(kind) = d.kind.as_deref().and_then(Kind::parse) else {
            continue;
        };
        if !can_disable(kind) {
            let msg = format!("device `{}` ({}) can't be switched off", d.id, kind.name());
            ctx.diags.push(
                Diagnostic::new(&d.enabled, msg)
                    .label("KVM's in-kernel interrupt controllers are always there"),
            );
        }
    }
}

fn finish(ctx: &Ctx<'_>, p: &Plan<'_>, kind: super::DeviceKind) -> DeviceSpec {
    let pci = p.pci.as_ref().map(|(bus, addr)| PciPlacement {
        bus_number: ctx
            .buses
            .iter()
            .find(|b| &b.spec.id == bus)
            .and_then(|b| b.spec.number)
            .unwrap_or(0),
        addr: *addr,
        pin: if p.pci_gsi.is_some() { 1 } else { 0 },
        gsi: p.pci_gsi,
    });
    DeviceSpec {
        id: p.cfg.id.value.clone(),
        bus: p.bus.clone().unwrap_or_default(),
        from_board: !ctx.in_user_file(&p.cfg.loc),
        io: p.io.clone(),
        mmio: p.mmio.clone(),
        irqs: p.irqs.clone(),
        pci,
        kind,
    }
}
