//! The std VGA: its legacy registers, DISPI ports and 0xA0000 window at the spec's
//! ranges; the framebuffer a memslot that follows BAR0; vgabios as its option ROM when
//! a firmware boots (the firmware runs it).

use std::sync::{Arc, Mutex};

use super::{insert_io, insert_mmio, shared, Devices, WireError};
use crate::devices::vga::{pci::StdVga, Vga, REGION_WINDOW};
use crate::spec::{DeviceSpec, MachineSpec};
use crate::vmm::bus::Bus;
use crate::vmm::memory::DeviceSlot;
use crate::vmm::vm::Vm;

/// Moves the VGA's framebuffer memslot when the guest moves BAR0.
struct LfbSlot {
    slot: DeviceSlot,
    id: String,
}

impl crate::devices::vga::LfbMapper for LfbSlot {
    fn map(&mut self, gpa: Option<u64>) {
        if let Err(e) = self.slot.map(gpa) {
            // The guest put the BAR over something else: accesses then exit and reach
            // VRAM through the PCI root, slowly but correctly.
            eprintln!(
                "vmrun: warning: device `{}`: framebuffer not mapped: {e}",
                self.id
            );
        }
    }
}

pub(super) fn vga(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    mmio: &mut Bus,
    d: &DeviceSpec,
    vram: u64,
    out: &mut Devices,
) -> Result<Arc<Mutex<StdVga>>, WireError> {
    let mut dev = Vga::new(vram).map_err(|source| WireError::Vga {
        id: d.id.clone(),
        source,
    })?;
    let v = dev.vram();
    let slot = DeviceSlot::new(
        vm.fd().clone(),
        vm.reserve_slot(),
        v.host_addr(),
        v.len() as u64,
        v.keepalive(),
    );
    dev.set_lfb_mapper(Box::new(LfbSlot {
        slot,
        id: d.id.clone(),
    }));
    let rom = spec
        .boot
        .firmware
        .as_ref()
        .and_then(|_| crate::boot::firmware::find_option_rom("vgabios-stdvga.bin").ok())
        .and_then(|p| std::fs::read(p).ok());
    let dev = shared(StdVga::new(dev, rom));
    insert_io(pio, dev.clone(), &d.io, &d.id)?;
    if let Some(&window) = d.mmio.first() {
        insert_mmio(mmio, dev.clone(), REGION_WINDOW, window, &d.id)?;
    }
    super::pci::add(out, d, dev.clone(), dev.clone())?;
    Ok(dev)
}
