//! The items a machine's fw_cfg device serves, from its resolved spec: what QEMU's x86
//! boards put there, the machine file's own files, and for firmware boot the kernel.

use std::path::Path;

use super::*;
use crate::arch::x86_64::e820::E820Type;
use crate::arch::x86_64::layout::{self, RamRegion};
use crate::spec::{FwCfgData, MachineSpec};

/// `etc/e820` as QEMU writes it for firmware: every RAM region whole (the firmware
/// carves out its own areas below 1 MiB) and the KVM identity-map/TSS pages reserved.
pub fn firmware_e820(ram: &[RamRegion]) -> Vec<E820Entry> {
    let mut v: Vec<E820Entry> = ram
        .iter()
        .map(|r| E820Entry::new(r.base, r.size, E820Type::Ram))
        .collect();
    v.push(E820Entry::new(
        layout::KVM_IDENTITY_MAP_ADDR,
        layout::KVM_PRIVATE_SIZE,
        E820Type::Reserved,
    ));
    v
}

fn read(path: &Path) -> Result<Vec<u8>, FwCfgError> {
    std::fs::read(path).map_err(|e| FwCfgError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Everything the device serves for `spec`, with `files` from its `[[device]]` entry.
/// The kernel, initrd and command line are added when the machine boots firmware and
/// has a kernel (a bzImage) for the firmware's linuxboot ROM.
pub fn items_for(
    spec: &MachineSpec,
    files: &[(String, FwCfgData)],
) -> Result<FwCfgItems, FwCfgError> {
    let ram = &spec.memory.ram;
    let cpus = spec.cpus.count();
    let apic_id_limit = (0..cpus)
        .map(|i| spec.cpus.apic_id(i) + 1)
        .max()
        .unwrap_or(1);
    let info = MachineInfo {
        ram_size: spec.memory.size,
        cpus: cpus.min(u16::MAX as u32) as u16,
        apic_id_limit: apic_id_limit.min(u16::MAX as u32) as u16,
        e820: firmware_e820(ram),
        nographic: false,
        boot_menu: false,
        bootorder: Vec::new(),
    };
    let mut items = FwCfgItems::standard(&info);
    for (name, data) in files {
        let bytes = match data {
            FwCfgData::Inline(s) => s.as_bytes().to_vec(),
            FwCfgData::File(p) => read(p)?,
        };
        items.add_file(name, bytes)?;
    }
    if let (Some(_), Some(kernel)) = (&spec.boot.firmware, &spec.boot.kernel) {
        let image = read(&kernel.path)?;
        // A PVH ELF is loaded into RAM by the builder and entered by pvh.bin
        // (`boot::firmware::prepare_payload`); only a bzImage goes through linuxboot.
        if !crate::boot::bzimage::is_bzimage(&image) {
            return Ok(items);
        }
        let initrd = match &spec.boot.initrd {
            Some(a) => Some(read(&a.path)?),
            None => None,
        };
        items.add_linux(
            &image,
            initrd.as_deref(),
            &spec.boot.cmdline,
            spec.memory.below_4g,
        )?;
    }
    Ok(items)
}
