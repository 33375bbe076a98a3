//! x86_64: memory layout and e820, GDT/page tables, registers, CPUID, MSRs, LAPIC, MP table.
