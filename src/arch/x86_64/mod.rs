//! x86_64: memory layout and e820, GDT/page tables, registers, CPUID, MSRs, LAPIC, MP table.
pub mod cpuid;
pub mod e820;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod paging;
pub mod regs;
