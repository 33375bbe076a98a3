//! Boot CPU state for each way we enter a guest, as plain `kvm_bindings` values.
//!
//! * [`BootEntry::Linux64`]: the Linux 64-bit boot protocol: long mode with the identity
//!   page tables of `paging.rs`, CS = `__BOOT_CS` (0x10), DS/ES/SS = `__BOOT_DS` (0x18),
//!   interrupts off, %rsi = zero page, %rip = the 64-bit entry (load address + 0x200 for
//!   a bzImage, `e_entry` for an ELF vmlinux).
//! * [`BootEntry::Pvh`]: the Xen PVH entry: 32-bit protected mode, paging off, flat
//!   4 GiB CS (execute/read) and DS/ES/SS (read/write), TR a 32-bit busy TSS with base 0
//!   and limit 0x67, CR4 = EFER = 0, %ebx = `hvm_start_info`, %eip = the note's entry.
//! * [`BootEntry::ResetVector`]: the architectural power-on state (Intel SDM vol. 3
//!   §10.1.1): CS selector 0xF000 with base 0xFFFF_0000, IP 0xFFF0, CR0 = 0x6000_0010,
//!   for firmware (SeaBIOS) boot.
//!
//! `sregs` takes the vCPU's current `kvm_sregs` (from KVM_GET_SREGS) and changes only what
//! the entry defines, so KVM-owned fields (APIC base, pending interrupt bitmap) survive.
//! [`boot_msrs`] lists the MSR values a VMM sets before a direct (firmware-less) boot.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};

use super::gdt::{
    boot_segment, BOOT_GDT_LIMIT, CODE32_SELECTOR, CODE64_SELECTOR, DATA_SELECTOR, TSS_SELECTOR,
};
use super::layout::{BOOT_GDT_ADDR, BOOT_IDT_ADDR, BOOT_STACK_POINTER, FOUR_GIB, PML4_ADDR};

/// CR0 bits.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET: always 1 on anything newer than a 386.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NW (not write-through), set at reset.
pub const CR0_NW: u64 = 1 << 29;
/// CR0.CD (cache disable), set at reset.
pub const CR0_CD: u64 = 1 << 30;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always reads as 1.
pub const RFLAGS_RESERVED: u64 = 1 << 1;

/// MSR indices used at boot.
pub mod msr_index {
    /// Time-stamp counter.
    pub const IA32_TSC: u32 = 0x10;
    /// SYSENTER target CS.
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    /// SYSENTER target ESP.
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    /// SYSENTER target EIP.
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    /// Miscellaneous feature enables; bit 0 = fast string operations.
    pub const IA32_MISC_ENABLE: u32 = 0x1a0;
    /// First variable-range MTRR base; mask is at +1, pairs follow.
    pub const IA32_MTRR_PHYSBASE0: u32 = 0x200;
    /// Default memory type and MTRR enable.
    pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
    /// SYSCALL segment selectors.
    pub const STAR: u32 = 0xc000_0081;
    /// 64-bit SYSCALL target.
    pub const LSTAR: u32 = 0xc000_0082;
    /// Compatibility-mode SYSCALL target.
    pub const CSTAR: u32 = 0xc000_0083;
    /// SYSCALL RFLAGS mask.
    pub const SYSCALL_MASK: u32 = 0xc000_0084;
    /// SWAPGS shadow.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// IA32_MISC_ENABLE.FAST_STRING.
pub const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRR memory type: uncacheable.
pub const MTRR_TYPE_UC: u64 = 0;
/// MTRR memory type: write-back.
pub const MTRR_TYPE_WB: u64 = 6;
/// IA32_MTRR_DEF_TYPE.E: MTRRs enabled.
pub const MTRR_ENABLE: u64 = 1 << 11;
/// Variable-range MTRR mask "valid" bit.
pub const MTRR_VALID: u64 = 1 << 11;
/// Variable-range MTRRs KVM implements.
pub const MTRR_VAR_COUNT: usize = 8;

/// How the boot CPU enters the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEntry {
    /// Linux 64-bit boot protocol.
    Linux64 {
        /// 64-bit entry point.
        entry: u64,
        /// Address of `struct boot_params`, passed in %rsi.
        zero_page: u64,
    },
    /// Xen PVH entry (32-bit protected mode, no paging).
    Pvh {
        /// XEN_ELFNOTE_PHYS32_ENTRY.
        entry: u32,
        /// Address of `struct hvm_start_info`, passed in %ebx.
        start_info: u32,
    },
    /// Architectural reset: firmware runs from 0xFFFF_FFF0.
    ResetVector,
}

impl BootEntry {
    /// General-purpose registers at entry.
    pub fn regs(&self) -> kvm_regs {
        let mut regs = kvm_regs {
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        };
        match *self {
            BootEntry::Linux64 { entry, zero_page } => {
                regs.rip = entry;
                regs.rsi = zero_page;
                regs.rsp = BOOT_STACK_POINTER;
                regs.rbp = BOOT_STACK_POINTER;
            }
            BootEntry::Pvh { entry, start_info } => {
                regs.rip = u64::from(entry);
                regs.rbx = u64::from(start_info);
            }
            BootEntry::ResetVector => {
                regs.rip = 0xfff0;
                // EDX holds the processor signature after reset (family 6).
                regs.rdx = 0x600;
            }
        }
        regs
    }

    /// Special registers at entry, starting from the vCPU's `current` ones.
    pub fn sregs(&self, current: &kvm_sregs) -> kvm_sregs {
        let mut s = *current;
        match self {
            BootEntry::Linux64 { .. } => {
                flat_segments(&mut s, CODE64_SELECTOR);
                s.cr0 = CR0_PE | CR0_ET | CR0_PG;
                s.cr3 = PML4_ADDR;
                s.cr4 = CR4_PAE;
                s.efer = EFER_LME | EFER_LMA;
            }
            BootEntry::Pvh { .. } => {
                flat_segments(&mut s, CODE32_SELECTOR);
                s.cr0 = CR0_PE | CR0_ET;
                s.cr3 = 0;
                s.cr4 = 0;
                s.efer = 0;
            }
            BootEntry::ResetVector => {
                let seg = |selector: u16, base: u64, type_: u8| kvm_segment {
                    base,
                    limit: 0xffff,
                    selector,
                    type_,
                    present: 1,
                    s: 1,
                    ..Default::default()
                };
                s.cs = seg(0xf000, 0xffff_0000, 0xb);
                s.ds = seg(0, 0, 3);
                s.es = s.ds;
                s.fs = s.ds;
                s.gs = s.ds;
                s.ss = s.ds;
                s.tr = kvm_segment {
                    s: 0,
                    ..seg(0, 0, 0xb)
                };
                s.ldt = kvm_segment {
                    s: 0,
                    ..seg(0, 0, 2)
                };
                s.gdt.base = 0;
                s.gdt.limit = 0xffff;
                s.idt.base = 0;
                s.idt.limit = 0xffff;
                s.cr0 = CR0_CD | CR0_NW | CR0_ET;
                s.cr2 = 0;
                s.cr3 = 0;
                s.cr4 = 0;
                s.efer = 0;
            }
        }
        s
    }

    /// x87/SSE state: the FNINIT state for direct boots, the reset state for firmware.
    pub fn fpu(&self) -> kvm_fpu {
        kvm_fpu {
            fcw: match self {
                BootEntry::ResetVector => 0x40,
                _ => 0x37f,
            },
            mxcsr: 0x1f80,
            ..Default::default()
        }
    }
}

/// Loads the boot GDT and IDT and flat segments, CS from `code`.
fn flat_segments(s: &mut kvm_sregs, code: u16) {
    s.gdt.base = BOOT_GDT_ADDR;
    s.gdt.limit = BOOT_GDT_LIMIT;
    // An empty IDT: any exception before the guest installs its own is a triple fault,
    // which the VMM reports instead of running garbage.
    s.idt.base = BOOT_IDT_ADDR;
    s.idt.limit = 0;
    s.cs = boot_segment(code);
    let data = boot_segment(DATA_SELECTOR);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = boot_segment(TSS_SELECTOR);
}

fn msr(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }
}

/// Inputs of [`boot_msrs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrConfig {
    /// Start of the 32-bit MMIO hole; `[start, 4 GiB)` is made uncacheable with
    /// variable-range MTRRs the way SeaBIOS does. `None`: everything write-back.
    pub mmio_hole_start: Option<u64>,
    /// Guest physical address width (CPUID 0x8000_0008 EAX[7:0]); MTRR masks must not set
    /// bits above it.
    pub phys_bits: u8,
}

/// MSRs a VMM sets for a direct boot: SYSENTER/SYSCALL state cleared, TSC 0, fast
/// strings on, MTRRs enabled with write-back default and the MMIO hole uncacheable.
pub fn boot_msrs(cfg: &MsrConfig) -> Vec<kvm_msr_entry> {
    use msr_index::*;
    let mut msrs = vec![
        msr(IA32_SYSENTER_CS, 0),
        msr(IA32_SYSENTER_ESP, 0),
        msr(IA32_SYSENTER_EIP, 0),
        msr(STAR, 0),
        msr(LSTAR, 0),
        msr(CSTAR, 0),
        msr(SYSCALL_MASK, 0),
        msr(KERNEL_GS_BASE, 0),
        msr(IA32_TSC, 0),
        msr(IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        msr(IA32_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB),
    ];
    if let Some(start) = cfg.mmio_hole_start {
        let phys_mask = if cfg.phys_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << cfg.phys_bits) - 1
        } & !0xfff;
        for (i, (base, size)) in mtrr_ranges(start, FOUR_GIB).iter().enumerate() {
            let index = IA32_MTRR_PHYSBASE0 + 2 * i as u32;
            msrs.push(msr(index, base | MTRR_TYPE_UC));
            msrs.push(msr(index + 1, (phys_mask & !(size - 1)) | MTRR_VALID));
        }
    }
    msrs
}

/// Splits `[start, end)` into naturally aligned power-of-two blocks (what a variable MTRR
/// can describe). Empty if the range is empty, not page aligned, or needs more than
/// [`MTRR_VAR_COUNT`] blocks (then the whole map stays write-back, as on Firecracker).
pub fn mtrr_ranges(start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if start >= end || !start.is_multiple_of(4096) || !end.is_multiple_of(4096) {
        return out;
    }
    let mut at = start;
    while at < end {
        let align = if at == 0 {
            1u64 << 63
        } else {
            1u64 << at.trailing_zeros()
        };
        let mut size = align;
        while size > end - at {
            size >>= 1;
        }
        out.push((at, size));
        at += size;
        if out.len() > MTRR_VAR_COUNT {
            return Vec::new();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux64_state() {
        let e = BootEntry::Linux64 {
            entry: 0x100_0200,
            zero_page: 0x7000,
        };
        let r = e.regs();
        assert_eq!((r.rip, r.rsi, r.rflags), (0x100_0200, 0x7000, 2));
        let cur = kvm_sregs {
            apic_base: 0xfee0_0900,
            ..Default::default()
        };
        let s = e.sregs(&cur);
        assert_eq!(s.apic_base, 0xfee0_0900, "KVM-owned fields survive");
        assert_eq!((s.cs.selector, s.cs.l, s.cs.db), (0x10, 1, 0));
        assert_eq!(
            (s.ds.selector, s.ss.selector, s.es.selector),
            (0x18, 0x18, 0x18)
        );
        assert_eq!(s.cr0, 0x8000_0011);
        assert_eq!((s.cr3, s.cr4, s.efer), (0x9000, 0x20, 0x500));
        assert_eq!((s.gdt.base, s.gdt.limit), (0x500, 47));
        assert_eq!(s.tr.type_, 11);
    }

    #[test]
    fn pvh_state() {
        let e = BootEntry::Pvh {
            entry: 0x10_0000,
            start_info: 0x6000,
        };
        let r = e.regs();
        assert_eq!((r.rip, r.rbx, r.rflags & (1 << 9)), (0x10_0000, 0x6000, 0));
        let s = e.sregs(&kvm_sregs::default());
        assert_eq!(
            (s.cs.db, s.cs.l, s.cs.limit, s.cs.base),
            (1, 0, 0xffff_ffff, 0)
        );
        assert_eq!((s.ds.limit, s.ds.type_), (0xffff_ffff, 3));
        assert_eq!(
            (s.cr0 & CR0_PG, s.cr0 & CR0_PE, s.cr4, s.efer),
            (0, 1, 0, 0)
        );
        assert_eq!((s.tr.base, s.tr.limit, s.tr.type_), (0, 0x67, 11));
    }

    #[test]
    fn reset_vector_state() {
        let e = BootEntry::ResetVector;
        assert_eq!(e.regs().rip, 0xfff0);
        let s = e.sregs(&kvm_sregs::default());
        assert_eq!((s.cs.selector, s.cs.base), (0xf000, 0xffff_0000));
        assert_eq!(s.cs.base + e.regs().rip, 0xffff_fff0);
        assert_eq!(s.cr0, 0x6000_0010);
        assert_eq!(e.fpu().fcw, 0x40);
    }

    #[test]
    fn mtrr_split() {
        assert_eq!(
            mtrr_ranges(0xe000_0000, FOUR_GIB),
            vec![(0xe000_0000, 0x2000_0000)]
        );
        assert_eq!(
            mtrr_ranges(0xb000_0000, FOUR_GIB),
            vec![(0xb000_0000, 0x1000_0000), (0xc000_0000, 0x4000_0000)]
        );
        assert!(mtrr_ranges(0xffe0_1000, FOUR_GIB).is_empty());
    }

    #[test]
    fn msrs_include_fast_strings_and_uc_hole() {
        let m = boot_msrs(&MsrConfig {
            mmio_hole_start: Some(0xc000_0000),
            phys_bits: 40,
        });
        let get = |i| m.iter().find(|e| e.index == i).map(|e| e.data);
        assert_eq!(get(msr_index::IA32_MISC_ENABLE), Some(1));
        assert_eq!(get(msr_index::IA32_MTRR_DEF_TYPE), Some(0x806));
        assert_eq!(get(0x200), Some(0xc000_0000));
        assert_eq!(get(0x201), Some(0xff_c000_0800));
        assert_eq!(get(0x202), None);
    }
}
