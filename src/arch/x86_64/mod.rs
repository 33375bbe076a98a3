//! x86_64: memory layout and e820, GDT/page tables, registers, CPUID, MSRs, LAPIC, MP table.
pub mod layout;
pub mod e820;
pub mod gdt;
pub mod paging;
pub mod regs;
pub mod mptable;
pub mod cpuid;
pub mod msr;
pub mod lapic;
