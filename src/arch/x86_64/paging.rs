//! Identity-mapped page tables for the Linux 64-bit boot entry.
//!
//! The 64-bit boot protocol enters the kernel in long mode, so paging is on, and requires
//! the loaded kernel (up to `init_size`), the zero page and the command line to be
//! identity mapped. We map the whole first 4 GiB 1:1 with 2 MiB pages: one PML4 entry →
//! one PDPT with four entries → four page directories of 512 large pages each. That
//! covers any kernel, initrd, zero page or command line we place below the 32-bit hole.
//! Linux builds its own tables immediately; these only have to be correct, not clever.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::layout::{PDPT_ADDR, PD_ADDR, PML4_ADDR};

/// Present.
const PTE_PRESENT: u64 = 1 << 0;
/// Writable.
const PTE_WRITE: u64 = 1 << 1;
/// Page size: this PD entry maps a 2 MiB page.
const PTE_LARGE: u64 = 1 << 7;
/// Number of GiB identity mapped (one page directory each).
pub const IDENTITY_MAPPED_GIB: u64 = 4;
/// The mapping covers `[0, IDENTITY_MAP_END)`.
pub const IDENTITY_MAP_END: u64 = IDENTITY_MAPPED_GIB << 30;

/// Writes PML4, PDPT and page directories; returns the value for CR3.
pub fn write_identity_tables(mem: &GuestMemoryMmap) -> Result<u64, GuestMemoryError> {
    // One 4 KiB page = 512 entries of 8 bytes; build each table as bytes and write it once.
    let mut pml4 = [0u8; 4096];
    pml4[..8].copy_from_slice(&(PDPT_ADDR | PTE_PRESENT | PTE_WRITE).to_le_bytes());
    mem.write_slice(&pml4, GuestAddress(PML4_ADDR))?;

    let mut pdpt = [0u8; 4096];
    for i in 0..IDENTITY_MAPPED_GIB {
        let entry = (PD_ADDR + i * 0x1000) | PTE_PRESENT | PTE_WRITE;
        let at = (i * 8) as usize;
        pdpt[at..at + 8].copy_from_slice(&entry.to_le_bytes());
    }
    mem.write_slice(&pdpt, GuestAddress(PDPT_ADDR))?;

    for gib in 0..IDENTITY_MAPPED_GIB {
        let mut pd = [0u8; 4096];
        for i in 0..512u64 {
            let phys = (gib << 30) | (i << 21);
            let at = (i * 8) as usize;
            pd[at..at + 8]
                .copy_from_slice(&(phys | PTE_PRESENT | PTE_WRITE | PTE_LARGE).to_le_bytes());
        }
        mem.write_slice(&pd, GuestAddress(PD_ADDR + gib * 0x1000))?;
    }
    Ok(PML4_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables in guest memory like the MMU would for a 2 MiB mapping.
    fn translate(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
        let rd = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        let pml4e = rd((cr3 & !0xfff) + ((va >> 39) & 0x1ff) * 8);
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = rd((pml4e & 0x000f_ffff_ffff_f000) + ((va >> 30) & 0x1ff) * 8);
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = rd((pdpte & 0x000f_ffff_ffff_f000) + ((va >> 21) & 0x1ff) * 8);
        if pde & 1 == 0 || pde & PTE_LARGE == 0 {
            return None;
        }
        Some((pde & 0x000f_ffff_ffe0_0000) | (va & 0x1f_ffff))
    }

    #[test]
    fn first_four_gib_are_identity_mapped() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let cr3 = write_identity_tables(&mem).unwrap();
        assert_eq!(cr3, PML4_ADDR);
        for va in [
            0u64,
            0x7000,
            0x100_0000,
            0x1234_5678,
            0xbfff_ffff,
            0xffff_fff0,
        ] {
            assert_eq!(translate(&mem, cr3, va), Some(va), "{va:#x}");
        }
        assert_eq!(translate(&mem, cr3, IDENTITY_MAP_END), None);
    }
}
