//! The PVH boot ABI's `hvm_start_info` (version 1), handed to the guest in %ebx.
//!
//! Layout (xen/include/public/arch-x86/hvm/start_info.h): `magic` 0x336EC578,
//! `version` 1 (which adds the memory map), `flags`, `nr_modules` + `modlist_paddr`
//! (array of `hvm_modlist_entry`; the initrd is module 0, as Linux and the probe expect),
//! `cmdline_paddr` (NUL-terminated, 0 = none), `rsdp_paddr` (0 = none), `memmap_paddr` +
//! `memmap_entries` (array of `hvm_memmap_table_entry`; the types are the e820 types).
//! We place them at the fixed addresses of `layout.rs`, below the zero page.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};
use thiserror::Error;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::arch::x86_64::e820::E820Entry;
use crate::arch::x86_64::layout::{
    PVH_MEMMAP_ADDR, PVH_MEMMAP_MAX_ENTRIES, PVH_MODLIST_ADDR, PVH_START_INFO_ADDR,
};

/// Errors writing the start info.
#[derive(Debug, Error)]
pub enum PvhError {
    /// The memory map does not fit in its area.
    #[error("the memory map has {0} entries; the PVH area holds {max}", max = PVH_MEMMAP_MAX_ENTRIES)]
    TooManyEntries(usize),
    /// Writing guest memory failed.
    #[error("cannot write the PVH start info")]
    Memory(#[from] GuestMemoryError),
}

macro_rules! byte_valued {
    ($name:ident, $inner:ty) => {
        /// Plain-bytes wrapper of the linux-loader struct of the same layout.
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, Debug, PartialEq)]
        pub struct $name(pub $inner);
        // SAFETY: the wrapped struct is `repr(C)` with only integer fields laid out without
        // padding (its size is asserted by linux-loader: 56, 32 and 24 bytes), so every byte
        // pattern is a valid value; `repr(transparent)` keeps that layout.
        unsafe impl ByteValued for $name {}
    };
}
byte_valued!(StartInfo, hvm_start_info);
byte_valued!(ModlistEntry, hvm_modlist_entry);
byte_valued!(MemmapEntry, hvm_memmap_table_entry);

/// What the PVH guest is told.
#[derive(Clone, Debug)]
pub struct PvhInput<'a> {
    /// Command line address, if there is one.
    pub cmdline_addr: Option<u64>,
    /// Initrd address and size (module 0).
    pub initrd: Option<(u64, u64)>,
    /// Memory map.
    pub e820: &'a [E820Entry],
    /// ACPI RSDP address.
    pub rsdp: Option<u64>,
}

/// Writes start info, module list and memory map; returns the start info address.
pub fn write_start_info(mem: &GuestMemoryMmap, input: &PvhInput) -> Result<u64, PvhError> {
    if input.e820.len() > PVH_MEMMAP_MAX_ENTRIES {
        return Err(PvhError::TooManyEntries(input.e820.len()));
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: input.cmdline_addr.unwrap_or(0),
        rsdp_paddr: input.rsdp.unwrap_or(0),
        memmap_paddr: PVH_MEMMAP_ADDR,
        memmap_entries: input.e820.len() as u32,
        ..Default::default()
    };
    if let Some((paddr, size)) = input.initrd {
        let module = hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        };
        mem.write_obj(ModlistEntry(module), GuestAddress(PVH_MODLIST_ADDR))?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_ADDR;
    }
    for (i, e) in input.e820.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind as u32,
            reserved: 0,
        };
        let at = PVH_MEMMAP_ADDR + (i * std::mem::size_of::<MemmapEntry>()) as u64;
        mem.write_obj(MemmapEntry(entry), GuestAddress(at))?;
    }
    mem.write_obj(StartInfo(info), GuestAddress(PVH_START_INFO_ADDR))?;
    Ok(PVH_START_INFO_ADDR)
}
