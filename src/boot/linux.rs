//! Direct kernel boot: from kernel bytes to a guest ready to run its first instruction.
//!
//! [`setup`] is the one call the VMM's build recipe makes. It recognises the image
//! ([`load_kernel`]): a bzImage (boot_flag 0xAA55 at 0x1FE and "HdrS" at 0x202), an ELF
//! carrying a PVH entry note (PVH wins over `e_entry`), or a plain x86_64 ELF vmlinux.
//! Then it writes, in this order: the kernel, the command line, the initrd (page aligned,
//! as high as possible in RAM below min(initrd_addr_max, top of low RAM), above the
//! kernel's `init_size`), the boot GDT, and either the identity page tables and the zero
//! page (Linux 64-bit entry) or the PVH start info. The result says how the boot CPU
//! enters ([`BootEntry`]) and lists the boot MSRs.
//!
//! Everything happens in a `GuestMemoryMmap`; no KVM is needed, so it is unit-tested on
//! synthetic images.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_sregs};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::bzimage::{self, BzImageError};
use super::elf::{self, ElfError};
use super::pvh::{self, PvhError, PvhInput};
use super::zeropage::{self, ZeroPageError, ZeroPageInput};
use crate::arch::x86_64::e820::{build_e820, E820Entry, E820Type};
use crate::arch::x86_64::gdt::write_boot_gdt;
use crate::arch::x86_64::layout::{
    low_ram_top, RamRegion, CMDLINE_ADDR, CMDLINE_MAX_SIZE, HIGH_MEMORY_START, ZERO_PAGE_ADDR,
};
use crate::arch::x86_64::paging::write_identity_tables;
use crate::arch::x86_64::regs::{boot_msrs, BootEntry, MsrConfig};

/// Page size used to align the initrd.
const PAGE: u64 = 4096;

/// Errors of direct kernel boot.
#[derive(Debug, Error)]
pub enum BootError {
    /// The image is neither format.
    #[error("unrecognised kernel image: not a bzImage (no HdrS setup header at 0x202), not an ELF ({elf})")]
    UnknownFormat {
        /// Why the ELF check failed.
        elf: ElfError,
    },
    /// A bzImage that cannot be booted.
    #[error("bzImage")]
    BzImage(#[from] BzImageError),
    /// An ELF that cannot be booted.
    #[error("ELF kernel")]
    Elf(#[from] ElfError),
    /// No RAM below the 32-bit hole (or not enough to hold anything above 1 MiB).
    #[error("no RAM above 1 MiB below 4 GiB to load a kernel into")]
    NoLowRam,
    /// Command line too long for the kernel (or for our buffer).
    #[error("command line is {len} bytes, the kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Length in bytes.
        len: usize,
        /// Maximum without the NUL.
        max: u64,
    },
    /// A NUL byte would cut the command line short.
    #[error("command line contains a NUL byte at offset {0}")]
    CmdlineNul(usize),
    /// The initrd does not fit.
    #[error(
        "initrd of {size} bytes does not fit in RAM between the kernel end {low:#x} and {high:#x}"
    )]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// Lowest usable address (end of the kernel).
        low: u64,
        /// Highest usable end (min of initrd_addr_max + 1 and top of low RAM).
        high: u64,
    },
    /// Building the zero page failed.
    #[error(transparent)]
    ZeroPage(#[from] ZeroPageError),
    /// Writing the PVH start info failed.
    #[error(transparent)]
    Pvh(#[from] PvhError),
    /// Writing boot structures failed.
    #[error("cannot write {what} into guest memory")]
    Memory {
        /// What was being written.
        what: &'static str,
        /// The cause.
        source: GuestMemoryError,
    },
}

fn mem_err(what: &'static str) -> impl FnOnce(GuestMemoryError) -> BootError {
    move |source| BootError::Memory { what, source }
}

/// What kind of kernel was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// bzImage with this boot protocol version, entered at its 64-bit entry.
    BzImage {
        /// Protocol version (0x020f = 2.15).
        protocol: u16,
    },
    /// ELF vmlinux entered at `e_entry` through the 64-bit boot protocol.
    Elf64,
    /// ELF with a PVH entry note.
    Pvh,
}

/// A kernel copied into guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// Format.
    pub kind: KernelKind,
    /// Lowest address occupied (bzImage: the load address).
    pub load_addr: u64,
    /// End of the memory the kernel claims (bzImage: load + init_size).
    pub end: u64,
    /// Entry point (64-bit entry, or PVH entry).
    pub entry: u64,
    /// Raw setup header (bzImage only), to copy into the zero page.
    pub setup_header: Option<Vec<u8>>,
    /// Highest address the initrd may end at, exclusive.
    pub initrd_limit: u64,
    /// Maximum command line length without the NUL.
    pub cmdline_max: u64,
}

/// Detects the image format, checks it and copies it into guest memory below `ram_end`.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    image: &[u8],
    ram_end: u64,
) -> Result<KernelImage, BootError> {
    if ram_end <= HIGH_MEMORY_START {
        return Err(BootError::NoLowRam);
    }
    let our_cmdline_max = CMDLINE_MAX_SIZE - 1;
    if bzimage::is_bzimage(image) {
        let hdr = bzimage::parse_header(image)?;
        let loaded = bzimage::load(mem, image, &hdr, ram_end)?;
        // initrd_addr_max is the address of the last byte the initrd may occupy.
        let initrd_max = match hdr.initrd_addr_max {
            0 => 0x37ff_ffff,
            m => m,
        };
        return Ok(KernelImage {
            kind: KernelKind::BzImage {
                protocol: hdr.version,
            },
            load_addr: loaded.load_addr,
            end: loaded.end,
            entry: loaded.entry,
            initrd_limit: (u64::from(initrd_max) + 1).min(ram_end),
            cmdline_max: u64::from(hdr.cmdline_size).min(our_cmdline_max),
            setup_header: Some(hdr.raw),
        });
    }
    if !elf::is_elf(image) {
        return Err(BootError::UnknownFormat {
            elf: ElfError::NotElf,
        });
    }
    let parsed = elf::parse(image)?;
    let (lo, hi) = elf::load(mem, image, &parsed, ram_end)?;
    let (kind, entry) = match parsed.pvh_entry {
        Some(pvh) => (KernelKind::Pvh, u64::from(pvh)),
        None => (KernelKind::Elf64, parsed.entry),
    };
    Ok(KernelImage {
        kind,
        load_addr: lo,
        end: hi,
        entry,
        setup_header: None,
        initrd_limit: ram_end,
        cmdline_max: our_cmdline_max,
    })
}

/// Everything [`setup`] needs.
#[derive(Clone, Debug)]
pub struct BootInput<'a> {
    /// Kernel image bytes (bzImage, ELF vmlinux or PVH ELF).
    pub kernel: &'a [u8],
    /// Initrd bytes; an empty slice counts as none.
    pub initrd: Option<&'a [u8]>,
    /// Kernel command line (no NUL inside).
    pub cmdline: &'a str,
    /// Guest RAM (from `layout::ram_regions`).
    pub ram: &'a [RamRegion],
    /// Extra e820 entries: MMCONFIG, ACPI tables, ...
    pub extra_e820: &'a [E820Entry],
    /// ACPI RSDP address, if ACPI tables were built.
    pub rsdp: Option<u64>,
    /// MTRR setup for the boot MSRs.
    pub msr: MsrConfig,
}

/// The result of a direct boot setup: how the boot CPU starts and what was placed where.
#[derive(Clone, Debug)]
pub struct BootSetup {
    /// Kernel format.
    pub kind: KernelKind,
    /// How the boot CPU enters the guest.
    pub entry: BootEntry,
    /// `[load address, end)` of the kernel.
    pub kernel: (u64, u64),
    /// Initrd `(address, size)`.
    pub initrd: Option<(u64, u64)>,
    /// Command line address.
    pub cmdline_addr: u64,
    /// The memory map given to the guest.
    pub e820: Vec<E820Entry>,
    /// MSRs to set on the boot CPU.
    pub msrs: Vec<kvm_msr_entry>,
}

impl BootSetup {
    /// General-purpose registers of the boot CPU.
    pub fn regs(&self) -> kvm_regs {
        self.entry.regs()
    }
    /// Special registers of the boot CPU, starting from its current ones.
    pub fn sregs(&self, current: &kvm_sregs) -> kvm_sregs {
        self.entry.sregs(current)
    }
    /// FPU state of the boot CPU.
    pub fn fpu(&self) -> kvm_fpu {
        self.entry.fpu()
    }
}

/// Highest page-aligned address where `size` bytes fit in a RAM entry of `e820`, at or
/// above `low` and ending at or below `high`.
pub fn place_initrd(e820: &[E820Entry], size: u64, low: u64, high: u64) -> Option<u64> {
    e820.iter()
        .rev()
        .filter(|e| e.kind == E820Type::Ram)
        .find_map(|e| {
            let top = e.end().min(high);
            let addr = top.checked_sub(size)? & !(PAGE - 1);
            (addr >= e.addr.max(low)).then_some(addr)
        })
}

/// Loads kernel, command line and initrd and writes the boot structures.
pub fn setup(mem: &GuestMemoryMmap, input: &BootInput) -> Result<BootSetup, BootError> {
    let ram_end = low_ram_top(input.ram);
    let e820 = build_e820(input.ram, input.extra_e820);
    let kernel = load_kernel(mem, input.kernel, ram_end)?;

    let cmdline = input.cmdline.as_bytes();
    if let Some(i) = cmdline.iter().position(|&b| b == 0) {
        return Err(BootError::CmdlineNul(i));
    }
    if cmdline.len() as u64 > kernel.cmdline_max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: kernel.cmdline_max,
        });
    }
    mem.write_slice(cmdline, GuestAddress(CMDLINE_ADDR))
        .and_then(|()| mem.write_obj(0u8, GuestAddress(CMDLINE_ADDR + cmdline.len() as u64)))
        .map_err(mem_err("the command line"))?;

    let initrd = match input.initrd.filter(|i| !i.is_empty()) {
        None => None,
        Some(bytes) => {
            let size = bytes.len() as u64;
            let addr = place_initrd(&e820, size, kernel.end, kernel.initrd_limit).ok_or(
                BootError::InitrdTooLarge {
                    size,
                    low: kernel.end,
                    high: kernel.initrd_limit,
                },
            )?;
            mem.write_slice(bytes, GuestAddress(addr))
                .map_err(mem_err("the initrd"))?;
            Some((addr, size))
        }
    };

    write_boot_gdt(mem).map_err(mem_err("the boot GDT"))?;
    let entry = match kernel.kind {
        KernelKind::Pvh => {
            let start_info = pvh::write_start_info(
                mem,
                &PvhInput {
                    cmdline_addr: Some(CMDLINE_ADDR),
                    initrd,
                    e820: &e820,
                    rsdp: input.rsdp,
                },
            )?;
            BootEntry::Pvh {
                // PVH entries come from a 32-bit note field.
                entry: kernel.entry as u32,
                start_info: start_info as u32,
            }
        }
        KernelKind::BzImage { .. } | KernelKind::Elf64 => {
            write_identity_tables(mem).map_err(mem_err("the boot page tables"))?;
            zeropage::write(
                mem,
                ZERO_PAGE_ADDR,
                &ZeroPageInput {
                    setup_header: kernel.setup_header.as_deref(),
                    load_addr: kernel.load_addr,
                    cmdline_addr: CMDLINE_ADDR,
                    cmdline_len: cmdline.len() as u32,
                    initrd,
                    e820: &e820,
                    rsdp: input.rsdp,
                },
            )?;
            BootEntry::Linux64 {
                entry: kernel.entry,
                zero_page: ZERO_PAGE_ADDR,
            }
        }
    };

    Ok(BootSetup {
        kind: kernel.kind,
        entry,
        kernel: (kernel.load_addr, kernel.end),
        initrd,
        cmdline_addr: CMDLINE_ADDR,
        e820,
        msrs: boot_msrs(&input.msr),
    })
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
