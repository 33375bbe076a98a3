//! Guest physical memory layout of an x86_64 machine.
//!
//! RAM is split around the 32-bit PCI/MMIO hole: the first `min(ram, low_limit)` bytes
//! sit at 0, the rest continues at 4 GiB. Boards differ only in `low_limit` (where the
//! hole starts), so [`ram_regions`] takes it as a number.
//!
//! Below 1 MiB the layout follows what a PC BIOS leaves behind, because direct-boot
//! guests (Linux, PVH) look for their tables there:
//!
//! ```text
//! 0x0000_0000  real-mode IVT (1 KiB)           0x0000_0400  BIOS data area (BDA)
//! 0x0000_0500  boot GDT                        0x0000_0540  boot IDT (empty)
//! 0x0000_6000  PVH hvm_start_info + modlist    0x0000_6400  PVH memory map
//! 0x0000_7000  Linux zero page (boot_params)   0x0000_8ff0  boot stack top
//! 0x0000_9000  PML4, PDPT, 4 PDs (to 0xEFFF)   0x0002_0000  kernel command line
//! 0x0009_fc00  EBDA (1 KiB): MP floating pointer + MP configuration table
//! 0x000a_0000  VGA window / option ROMs        0x000f_0000  BIOS area (MP/RSDP, ROM)
//! 0x0010_0000  high memory: kernel, initrd, the rest of low RAM up to `low_limit`
//! low_limit    PCI/MMIO hole ... 0xfec0_0000 IOAPIC, 0xfee0_0000 LAPIC,
//! 0xfeff_c000  KVM identity-map page + TSS (4 pages), 0xff00_0000 firmware ROM (16 MiB max)
//! 0x1_0000_0000 RAM above 4 GiB
//! ```

/// One KiB.
pub const KIB: u64 = 1 << 10;
/// One MiB.
pub const MIB: u64 = 1 << 20;
/// One GiB.
pub const GIB: u64 = 1 << 30;
/// 4 GiB: where RAM above the 32-bit hole resumes.
pub const FOUR_GIB: u64 = 4 * GIB;

/// BIOS data area; the word at 0x40E holds the EBDA segment, the word at 0x413 the base
/// memory size in KiB (both read by Linux when it looks for the EBDA).
pub const BDA_START: u64 = 0x400;
/// Offset of the EBDA segment word in the BDA.
pub const BDA_EBDA_SEGMENT: u64 = 0x40E;
/// Offset of the base memory size (KiB) word in the BDA.
pub const BDA_BASE_MEM_KIB: u64 = 0x413;

/// Boot GDT (see `gdt.rs`), written for both the Linux 64-bit and PVH entries.
pub const BOOT_GDT_ADDR: u64 = 0x500;
/// Boot IDT: an empty table (limit 0); the guest installs its own before enabling interrupts.
pub const BOOT_IDT_ADDR: u64 = 0x540;

/// PVH `hvm_start_info` (56 bytes), pointed to by %ebx at the PVH entry.
pub const PVH_START_INFO_ADDR: u64 = 0x6000;
/// PVH module list (`hvm_modlist_entry`, 32 bytes each); the initrd is module 0.
pub const PVH_MODLIST_ADDR: u64 = 0x6040;
/// PVH memory map (`hvm_memmap_table_entry`, 24 bytes each) up to the zero page.
pub const PVH_MEMMAP_ADDR: u64 = 0x6400;
/// Maximum PVH memory map entries that fit below the zero page.
pub const PVH_MEMMAP_MAX_ENTRIES: usize = ((ZERO_PAGE_ADDR - PVH_MEMMAP_ADDR) / 24) as usize;

/// Linux zero page (`struct boot_params`, 4 KiB), pointed to by %rsi at the 64-bit entry.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer for the boot CPU (grows down from below the page tables).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;

/// Identity-map page tables for the 64-bit entry: PML4, one PDPT, four PDs (2 MiB pages).
pub const PML4_ADDR: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPT_ADDR: u64 = 0xa000;
/// First of the four page directories (one per GiB of the first 4 GiB).
pub const PD_ADDR: u64 = 0xb000;

/// Kernel command line; Linux accepts up to `cmdline_size` from the setup header.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Room we reserve for the command line (including its NUL terminator).
pub const CMDLINE_MAX_SIZE: u64 = 0x1_0000;

/// Extended BIOS data area: the top 1 KiB of conventional memory.
pub const EBDA_START: u64 = 0x9_fc00;
/// End of conventional memory (start of the VGA window).
pub const EBDA_END: u64 = 0xa_0000;
/// The MP floating pointer structure is the first thing in the EBDA (MP spec 1.4 §4).
pub const MPTABLE_START: u64 = EBDA_START;
/// Legacy VGA window and option ROMs: not RAM as far as the guest is told.
pub const VGA_ROM_START: u64 = 0xa_0000;
/// System BIOS area (F-segment): MP tables / RSDP / BIOS ROM live here; reserved in e820.
pub const BIOS_AREA_START: u64 = 0xf_0000;
/// End of the first MiB.
pub const BIOS_AREA_END: u64 = 0x10_0000;
/// Start of high memory: the lowest address a protected-mode kernel or initrd may use.
pub const HIGH_MEMORY_START: u64 = 0x10_0000;

/// IOAPIC MMIO base (default of every PC chipset).
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Local APIC MMIO base (IA32_APIC_BASE reset value).
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// KVM_SET_IDENTITY_MAP_ADDR: one page KVM uses for its real-mode identity map.
/// Same place QEMU picks: above the LAPIC window, below the firmware ROM area.
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
/// KVM_SET_TSS_ADDR: three pages right after the identity-map page, ending at 0xFF00_0000.
pub const KVM_TSS_ADDR: u64 = 0xfeff_d000;
/// Pages KVM needs at [`KVM_IDENTITY_MAP_ADDR`] (identity map + TSS), reserved in e820.
pub const KVM_PRIVATE_SIZE: u64 = 4 * 4096;
/// Largest firmware ROM we map just below 4 GiB.
pub const FIRMWARE_MAX_SIZE: u64 = 16 * MIB;
/// Lowest address a firmware ROM can occupy (4 GiB - 16 MiB).
pub const FIRMWARE_AREA_START: u64 = FOUR_GIB - FIRMWARE_MAX_SIZE;

// The fixed areas below 1 MiB and in the hole must not overlap (checked at compile time).
const _: () = {
    assert!(BOOT_IDT_ADDR >= BOOT_GDT_ADDR + 6 * 8);
    assert!(PVH_MODLIST_ADDR >= PVH_START_INFO_ADDR + 56);
    assert!(PVH_MEMMAP_ADDR >= PVH_MODLIST_ADDR + 32);
    assert!(PVH_MEMMAP_MAX_ENTRIES >= 128);
    assert!(BOOT_STACK_POINTER < PML4_ADDR && BOOT_STACK_POINTER > ZERO_PAGE_ADDR + 4096);
    assert!(PD_ADDR + 4 * 4096 <= CMDLINE_ADDR);
    assert!(CMDLINE_ADDR + CMDLINE_MAX_SIZE <= EBDA_START);
    assert!(KVM_IDENTITY_MAP_ADDR >= LAPIC_ADDR + MIB);
    assert!(KVM_TSS_ADDR + 3 * 4096 == FIRMWARE_AREA_START);
};

/// A contiguous range of guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRegion {
    /// Guest physical start address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl RamRegion {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// RAM regions for `ram_size` bytes: `[0, min(ram, low_limit))` and, if RAM is left
/// over, `[4 GiB, 4 GiB + rest)`. A zero-sized RAM yields no region.
pub fn ram_regions(ram_size: u64, low_limit: u64) -> Vec<RamRegion> {
    let low = ram_size.min(low_limit);
    let mut regions = Vec::with_capacity(2);
    if low > 0 {
        regions.push(RamRegion { base: 0, size: low });
    }
    if ram_size > low {
        regions.push(RamRegion {
            base: FOUR_GIB,
            size: ram_size - low,
        });
    }
    regions
}

/// Top of the RAM region that starts at 0 (0 if there is none).
pub fn low_ram_top(regions: &[RamRegion]) -> u64 {
    regions
        .iter()
        .find(|r| r.base == 0)
        .map(RamRegion::end)
        .unwrap_or(0)
}

/// Writes the two BDA words a BIOS leaves for the OS: the EBDA segment (0x40E) and the
/// base memory size in KiB (0x413), so the guest finds the EBDA where we put the MP table.
pub fn write_bda(mem: &vm_memory::GuestMemoryMmap) -> Result<(), vm_memory::GuestMemoryError> {
    use vm_memory::{Bytes, GuestAddress};
    mem.write_obj((EBDA_START >> 4) as u16, GuestAddress(BDA_EBDA_SEGMENT))?;
    mem.write_obj((EBDA_START / KIB) as u16, GuestAddress(BDA_BASE_MEM_KIB))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_one_region() {
        assert_eq!(
            ram_regions(512 * MIB, 0xe000_0000),
            vec![RamRegion {
                base: 0,
                size: 512 * MIB
            }]
        );
    }

    #[test]
    fn large_ram_splits_at_the_hole() {
        let r = ram_regions(6 * GIB, 0x8000_0000);
        assert_eq!(
            r,
            vec![
                RamRegion {
                    base: 0,
                    size: 2 * GIB
                },
                RamRegion {
                    base: FOUR_GIB,
                    size: 4 * GIB
                }
            ]
        );
        assert_eq!(low_ram_top(&r), 2 * GIB);
    }

    #[test]
    fn exactly_low_limit_has_no_high_region() {
        assert_eq!(ram_regions(0xe000_0000, 0xe000_0000).len(), 1);
        assert!(ram_regions(0, 0xe000_0000).is_empty());
    }

    #[test]
    fn board_limits_match_qemu() {
        use crate::board::BoardKind;
        let limit = |b: BoardKind, ram| b.board().low_limit(ram);
        assert_eq!(limit(BoardKind::Pc, GIB), 0xe000_0000);
        assert_eq!(limit(BoardKind::Pc, 0xe000_0000), 0xc000_0000);
        assert_eq!(limit(BoardKind::Q35, 2 * GIB), 0xb000_0000);
        assert_eq!(limit(BoardKind::Q35, 0xb000_0000), 0x8000_0000);
        assert_eq!(limit(BoardKind::Microvm, 8 * GIB), 0xc000_0000);
    }

    #[test]
    fn bda_points_at_the_ebda() {
        use vm_memory::{Bytes, GuestAddress};
        let mem =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        write_bda(&mem).unwrap();
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x40e)).unwrap(), 0x9fc0);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x413)).unwrap(), 639);
    }
}
