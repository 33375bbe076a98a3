//! The Linux zero page (`struct boot_params`) for the 64-bit boot protocol.
//!
//! What a boot loader must fill in (Documentation/arch/x86/boot.rst, zero-page.rst):
//!
//! * the setup header, copied from the bzImage from 0x1F1 to the end given by the jump
//!   at 0x200 (for an ELF vmlinux, which has none, a minimal header: boot_flag, "HdrS",
//!   kernel_alignment, as Firecracker and Cloud Hypervisor do);
//! * `type_of_loader` = 0xFF (no registered ID), `vid_mode` = 0xFFFF ("normal"),
//!   `heap_end_ptr` = 0xDE00 with CAN_USE_HEAP, `code32_start` = the load address;
//! * `cmd_line_ptr` (the kernel reads at most `cmdline_size` bytes);
//! * `ramdisk_image` / `ramdisk_size`;
//! * the e820 table (`e820_entries`, at most 128) and `acpi_rsdp_addr` (0 = scan).

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use thiserror::Error;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::bzimage::{BOOT_FLAG, CAN_USE_HEAP, HDRS_MAGIC, SETUP_HEADER_OFFSET, SETUP_HEADER_SIZE};
use crate::arch::x86_64::e820::{E820Entry, E820_MAX_ZEROPAGE_ENTRIES};

/// "Undefined" boot loader ID.
pub const TYPE_OF_LOADER_UNDEFINED: u8 = 0xff;
/// vid_mode "normal" (80x25 text, no prompt).
pub const VID_MODE_NORMAL: u16 = 0xffff;
/// heap_end_ptr: end of the setup heap/stack (0xE000) minus 0x200, the usual value.
pub const HEAP_END_PTR: u16 = 0xde00;
/// Default alignment claimed for an ELF vmlinux (CONFIG_PHYSICAL_ALIGN default).
pub const ELF_KERNEL_ALIGNMENT: u32 = 0x100_0000;

/// Errors building the zero page.
#[derive(Debug, Error)]
pub enum ZeroPageError {
    /// More e820 entries than the zero page holds.
    #[error("the memory map has {0} entries; the Linux zero page holds at most 128")]
    TooManyE820(usize),
    /// An address that must be 32-bit is not.
    #[error("{what} at {addr:#x} is above 4 GiB")]
    Above4G {
        /// Which field.
        what: &'static str,
        /// The address.
        addr: u64,
    },
    /// Writing guest memory failed.
    #[error("cannot write the zero page")]
    Memory(#[from] GuestMemoryError),
}

/// `boot_params` as plain bytes.
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
pub struct ZeroPage(pub boot_params);

// SAFETY: `boot_params` is `repr(C, packed)` and made only of integers and arrays of
// integers (or structs of those), so it has no padding and any byte pattern is a valid
// value; `repr(transparent)` gives `ZeroPage` the same layout.
unsafe impl ByteValued for ZeroPage {}

/// What goes into the zero page.
#[derive(Clone, Debug)]
pub struct ZeroPageInput<'a> {
    /// Raw setup header bytes of a bzImage (from 0x1F1); `None` for an ELF vmlinux.
    pub setup_header: Option<&'a [u8]>,
    /// Protected-mode kernel load address.
    pub load_addr: u64,
    /// Command line address (NUL terminated in guest memory).
    pub cmdline_addr: u64,
    /// Command line length without the NUL.
    pub cmdline_len: u32,
    /// Initrd address and size.
    pub initrd: Option<(u64, u64)>,
    /// The memory map.
    pub e820: &'a [E820Entry],
    /// ACPI RSDP address, if the VMM built ACPI tables.
    pub rsdp: Option<u64>,
}

fn low32(what: &'static str, addr: u64) -> Result<u32, ZeroPageError> {
    u32::try_from(addr).map_err(|_| ZeroPageError::Above4G { what, addr })
}

/// Builds the zero page.
pub fn build(input: &ZeroPageInput) -> Result<ZeroPage, ZeroPageError> {
    if input.e820.len() > E820_MAX_ZEROPAGE_ENTRIES {
        return Err(ZeroPageError::TooManyE820(input.e820.len()));
    }
    let mut zp = ZeroPage::default();
    match input.setup_header {
        Some(raw) => {
            let raw = &raw[..raw.len().min(SETUP_HEADER_SIZE)];
            let dst = zp.as_mut_slice();
            dst[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + raw.len()].copy_from_slice(raw);
        }
        None => {
            zp.0.hdr.boot_flag = BOOT_FLAG;
            zp.0.hdr.header = HDRS_MAGIC;
            zp.0.hdr.kernel_alignment = ELF_KERNEL_ALIGNMENT;
        }
    }
    let hdr = &mut zp.0.hdr;
    hdr.type_of_loader = TYPE_OF_LOADER_UNDEFINED;
    hdr.vid_mode = VID_MODE_NORMAL;
    hdr.heap_end_ptr = HEAP_END_PTR;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.code32_start = low32("kernel", input.load_addr)?;
    hdr.cmd_line_ptr = low32("command line", input.cmdline_addr)?;
    if input.setup_header.is_none() {
        hdr.cmdline_size = input.cmdline_len;
    }
    if let Some((addr, size)) = input.initrd {
        hdr.ramdisk_image = low32("initrd", addr)?;
        hdr.ramdisk_size = low32("initrd size", size)?;
    }
    zp.0.acpi_rsdp_addr = input.rsdp.unwrap_or(0);
    for (i, e) in input.e820.iter().enumerate() {
        zp.0.e820_table[i] = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        };
    }
    zp.0.e820_entries = input.e820.len() as u8;
    Ok(zp)
}

/// Builds the zero page and writes it at `addr`.
pub fn write(
    mem: &GuestMemoryMmap,
    addr: u64,
    input: &ZeroPageInput,
) -> Result<ZeroPage, ZeroPageError> {
    let zp = build(input)?;
    mem.write_obj(zp, GuestAddress(addr))?;
    Ok(zp)
}
