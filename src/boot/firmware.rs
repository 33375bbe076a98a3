//! Firmware boot: a BIOS image (SeaBIOS) mapped where a PC's flash chip answers, and
//! the boot CPU started at the reset vector.
//!
//! # Where the image goes
//!
//! * The whole image, read-only, ends at 4 GiB: `[4 GiB - size, 4 GiB)`. The CPU's first
//!   fetch is at 0xFFFF_FFF0 (CS base 0xFFFF_0000 + IP 0xFFF0, see
//!   [`BootEntry::ResetVector`]), i.e. 16 bytes below the top of the image. The builder
//!   maps it with `Vm::add_rom` (a `KVM_MEM_READONLY` memslot: reads are memory, writes
//!   exit as MMIO and are dropped).
//! * Its last 256 KiB (the whole image when it is smaller) at `0x10_0000 - len`, i.e.
//!   the whole PAM window 0xC0000-0xFFFFF for a 256 KiB or larger image, 0xE0000-0xFFFFF
//!   for SeaBIOS's 128 KiB `bios.bin`. SeaBIOS's first far jump goes to F000:E05B, and
//!   its 16-bit code and data live there for the rest of the run.
//!
//! Why 256 KiB and not the 128 KiB a chipset aliases at reset: SeaBIOS's
//! `bios-256k.bin` (the q35 image) links code from 0xD0000 up. On QEMU that part is
//! not visible below 1 MiB at reset either: SeaBIOS finds the i440FX/Q35 bridge, opens
//! the PAM registers and copies its `code32flat` section from the 4 GiB copy into
//! shadow RAM itself. With no bridge to find it skips that copy, and the first call
//! into 0xD0000 runs zeros (a triple fault right after "Running on KVM"). So vmrun
//! does the copy the firmware would have done, for the whole shadowable window.
//!
//! # What real hardware does differently (and what issue 5 changes)
//!
//! On a real i440FX / Q35 the legacy window 0xC0000-0xFFFFF is decoded by the host
//! bridge's PAM registers: at reset it forwards reads to the flash (an alias of the top
//! of the ROM) and writes to nowhere; firmware then flips the PAM bits to "read and write
//! DRAM", copies itself into that shadow RAM and finally write-protects it again.
//! vmrun has no host bridge yet (PCI config space arrives with issue 5), so here the first
//! MiB is one plain RAM memslot and this module simply writes the legacy copy into that
//! RAM: it is writable from the first instruction on, which SeaBIOS needs (it writes its
//! own variables there; without a bridge it logs "Unable to unlock ram - bridge not
//! found" and carries on). Issue 5 will put the PAM registers in the host bridge and make
//! 0xC0000-0xFFFFF switch between the ROM alias and shadow RAM as the guest programs
//! them, so a guest that write-protects its BIOS gets what it asked for.
//!
//! # What is not written
//!
//! Firmware builds its own boot structures: no zero page, no PVH start_info, no boot
//! GDT or page tables, no MP table and no BDA words are written for a firmware boot
//! (SeaBIOS writes the BDA, the EBDA and an MP table of its own, and takes the ACPI
//! tables, the e820 map and the payload from fw_cfg). Only the boot CPU is set up; the
//! APs stay in KVM's wait-for-SIPI state until the firmware starts them with INIT/SIPI.

use kvm_bindings::kvm_msr_entry;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::layout::{FIRMWARE_MAX_SIZE, FOUR_GIB, HIGH_MEMORY_START};
use crate::arch::x86_64::regs::{msr_index, BootEntry, MISC_ENABLE_FAST_STRING};

/// The legacy BIOS window below 1 MiB (0xC0000-0xFFFFF, the range the PAM registers
/// shadow) holds at most this much of the image.
pub const LEGACY_MAX: u64 = 256 * 1024;

/// Firmware images are whole 4 KiB pages.
const PAGE: u64 = 4096;

#[derive(Debug, Error)]
pub enum FirmwareError {
    #[error("the firmware image is empty")]
    Empty,
    #[error("the firmware image is {0} bytes; at most {FIRMWARE_MAX_SIZE} bytes fit below 4 GiB")]
    TooLarge(u64),
    #[error("the firmware image is {0} bytes, not a whole number of 4 KiB pages")]
    NotPageSized(u64),
    #[error("cannot write the legacy BIOS copy at {addr:#x}: {source} (is there 1 MiB of RAM?)")]
    Legacy {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
}

/// Where a firmware image of a given size is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareLayout {
    /// Guest address of the read-only copy of the whole image (ends at 4 GiB).
    pub rom_base: u64,
    /// Image size in bytes.
    pub size: u64,
    /// Guest address of the legacy copy (ends at 1 MiB).
    pub legacy_base: u64,
    /// Offset in the image where the legacy copy starts.
    pub legacy_offset: u64,
}

impl FirmwareLayout {
    /// Placement of an image of `size` bytes.
    pub fn new(size: u64) -> Result<Self, FirmwareError> {
        if size == 0 {
            return Err(FirmwareError::Empty);
        }
        if size > FIRMWARE_MAX_SIZE {
            return Err(FirmwareError::TooLarge(size));
        }
        if size % PAGE != 0 {
            return Err(FirmwareError::NotPageSized(size));
        }
        let legacy = size.min(LEGACY_MAX);
        Ok(Self {
            rom_base: FOUR_GIB - size,
            size,
            legacy_base: HIGH_MEMORY_START - legacy,
            legacy_offset: size - legacy,
        })
    }

    /// Length of the legacy copy.
    pub fn legacy_len(&self) -> u64 {
        self.size - self.legacy_offset
    }
}

/// A firmware boot, ready for the builder: map `image` read-only at `layout.rom_base`
/// and start the boot CPU with `entry` and `msrs`.
#[derive(Clone, Debug)]
pub struct FirmwareSetup {
    pub layout: FirmwareLayout,
    /// Always [`BootEntry::ResetVector`].
    pub entry: BootEntry,
    /// MSR values at power-on.
    pub msrs: Vec<kvm_msr_entry>,
}

/// Checks `image`, writes its legacy copy into guest RAM below 1 MiB and says where the
/// whole image must be mapped. The caller maps the ROM (it owns the VM's memslots).
pub fn setup(mem: &GuestMemoryMmap, image: &[u8]) -> Result<FirmwareSetup, FirmwareError> {
    let layout = FirmwareLayout::new(image.len() as u64)?;
    let legacy = &image[layout.legacy_offset as usize..];
    mem.write_slice(legacy, GuestAddress(layout.legacy_base))
        .map_err(|source| FirmwareError::Legacy {
            addr: layout.legacy_base,
            source,
        })?;
    Ok(FirmwareSetup {
        layout,
        entry: BootEntry::ResetVector,
        msrs: reset_msrs(),
    })
}

/// The MSRs the builder sets for a firmware boot: the power-on values (TSC 0, MTRRs
/// disabled, so everything is uncacheable until the firmware programs them, as SeaBIOS
/// does), fast strings on as QEMU's reset leaves them.
pub fn reset_msrs() -> Vec<kvm_msr_entry> {
    let m = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        m(msr_index::IA32_TSC, 0),
        m(msr_index::IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        m(msr_index::IA32_MTRR_DEF_TYPE, 0),
        m(msr_index::IA32_SYSENTER_CS, 0),
        m(msr_index::IA32_SYSENTER_ESP, 0),
        m(msr_index::IA32_SYSENTER_EIP, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn layout_of_common_sizes() {
        // SeaBIOS bios.bin: 128 KiB, all of it at 0xE0000.
        let l = FirmwareLayout::new(128 * 1024).unwrap();
        assert_eq!(l.rom_base, 0xfffe_0000);
        assert_eq!((l.legacy_base, l.legacy_offset), (0xe_0000, 0));
        assert_eq!(l.legacy_len(), 0x2_0000);
        // bios-256k.bin: all of it at 0xC0000 (its code starts at 0xD0000).
        let l = FirmwareLayout::new(256 * 1024).unwrap();
        assert_eq!(l.rom_base, 0xfffc_0000);
        assert_eq!((l.legacy_base, l.legacy_offset), (0xc_0000, 0));
        // A 2 MiB image: its top 256 KiB.
        let l = FirmwareLayout::new(2 << 20).unwrap();
        assert_eq!(
            (l.legacy_base, l.legacy_offset),
            (0xc_0000, (2 << 20) - 0x4_0000)
        );
        // A 64 KiB image: 0xF0000-0xFFFFF.
        let l = FirmwareLayout::new(64 * 1024).unwrap();
        assert_eq!(
            (l.rom_base, l.legacy_base, l.legacy_len()),
            (0xffff_0000, 0xf_0000, 0x1_0000)
        );
        // The largest image ends at 4 GiB and starts at 4 GiB - 16 MiB.
        let l = FirmwareLayout::new(FIRMWARE_MAX_SIZE).unwrap();
        assert_eq!(l.rom_base, 0xff00_0000);
        assert_eq!(l.legacy_offset, FIRMWARE_MAX_SIZE - LEGACY_MAX);
    }

    #[test]
    fn bad_sizes() {
        assert!(matches!(FirmwareLayout::new(0), Err(FirmwareError::Empty)));
        assert!(matches!(
            FirmwareLayout::new(FIRMWARE_MAX_SIZE + PAGE),
            Err(FirmwareError::TooLarge(_))
        ));
        assert!(matches!(
            FirmwareLayout::new(4097),
            Err(FirmwareError::NotPageSized(4097))
        ));
    }

    fn ram(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

    #[test]
    fn legacy_copy_is_the_top_of_the_image() {
        let mem = ram(2 << 20);
        let mut image = vec![0u8; 512 * 1024];
        for (i, b) in image.iter_mut().enumerate() {
            *b = (i / 4096) as u8 | 1;
        }
        // The reset vector's far jump sits 16 bytes below the end.
        let n = image.len();
        image[n - 16] = 0xea;
        let s = setup(&mem, &image).unwrap();
        assert_eq!(s.entry, BootEntry::ResetVector);
        let mut got = vec![0u8; 256 * 1024];
        mem.read_slice(&mut got, GuestAddress(0xc_0000)).unwrap();
        assert_eq!(got[..], image[256 * 1024..]);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xf_fff0)).unwrap(), 0xea);
        // Nothing else below 1 MiB is touched.
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xb_ffff)).unwrap(), 0);
    }

    #[test]
    fn no_low_ram_is_an_error() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x8_0000)]).unwrap();
        assert!(mem.last_addr().0 < 0xe_0000);
        let e = setup(&mem, &vec![0u8; 4096]).unwrap_err();
        assert!(
            matches!(e, FirmwareError::Legacy { addr: 0xf_f000, .. }),
            "{e}"
        );
    }

    #[test]
    fn reset_state_msrs_disable_mtrrs() {
        let m = reset_msrs();
        let def = m
            .iter()
            .find(|e| e.index == msr_index::IA32_MTRR_DEF_TYPE)
            .unwrap();
        assert_eq!(def.data, 0);
    }
}
