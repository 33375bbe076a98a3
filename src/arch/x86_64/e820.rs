//! The BIOS e820 memory map handed to direct-boot guests (Linux zero page, PVH memmap).
//!
//! The map says what a PC BIOS would say about our layout (see `layout.rs`):
//!
//! * `0 .. 0x9FC00` RAM (conventional memory, minus the EBDA),
//! * `0x9FC00 .. 0xA0000` reserved (EBDA, holds the MP table),
//! * `0xA0000 .. 0xF0000` not listed (VGA window, option ROMs),
//! * `0xF0000 .. 0x100000` reserved (system BIOS area, where MP/RSDP structures live),
//! * `1 MiB .. low RAM top` RAM,
//! * `0xFEFFC000 .. 0xFF000000` reserved: the KVM identity-map page and TSS (QEMU lists
//!   this range too, so the guest never maps anything over it),
//! * caller-supplied entries (q35 MMCONFIG, ACPI tables, ...),
//! * `4 GiB ..` RAM.
//!
//! The IOAPIC and LAPIC pages are deliberately not listed: QEMU does not list them and
//! Linux finds them through the MP table / MADT; listing them reserved would be harmless
//! but would differ from what guests see on QEMU and real boards.
//!
//! Overlaps are resolved by type precedence (a reserved range punches a hole in RAM),
//! then the result is sorted and adjacent entries of the same type are merged.

use super::layout::{
    RamRegion, BIOS_AREA_END, BIOS_AREA_START, EBDA_END, EBDA_START, KVM_IDENTITY_MAP_ADDR,
    KVM_PRIVATE_SIZE, VGA_ROM_START,
};

/// Linux keeps at most this many entries in the zero page.
pub const E820_MAX_ZEROPAGE_ENTRIES: usize = 128;

/// e820 entry types (ACPI address range types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum E820Type {
    /// Usable RAM (1).
    Ram = 1,
    /// Reserved, never usable by the OS (2).
    Reserved = 2,
    /// ACPI tables, reclaimable once parsed (3).
    Acpi = 3,
    /// ACPI non-volatile storage (4).
    Nvs = 4,
    /// Memory with errors (5).
    Unusable = 5,
}

impl E820Type {
    /// Which type wins where two ranges overlap: anything beats RAM, and reserved beats
    /// every other kind.
    fn precedence(self) -> u8 {
        match self {
            E820Type::Ram => 0,
            E820Type::Acpi => 1,
            E820Type::Nvs => 2,
            E820Type::Unusable => 3,
            E820Type::Reserved => 4,
        }
    }
}

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes (never 0 in a built map).
    pub size: u64,
    /// What the range is.
    pub kind: E820Type,
}

impl E820Entry {
    /// A new entry.
    pub const fn new(addr: u64, size: u64, kind: E820Type) -> Self {
        E820Entry { addr, size, kind }
    }

    /// One past the last byte (saturating at 2^64).
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// Builds the guest's memory map from its RAM regions and extra reserved/ACPI entries.
pub fn build_e820(ram: &[RamRegion], extra: &[E820Entry]) -> Vec<E820Entry> {
    let mut input: Vec<E820Entry> = Vec::new();
    for r in ram {
        input.push(E820Entry::new(r.base, r.size, E820Type::Ram));
    }
    let has_low_ram = ram.iter().any(|r| r.base < EBDA_END && r.size > 0);
    if has_low_ram {
        input.push(E820Entry::new(
            EBDA_START,
            EBDA_END - EBDA_START,
            E820Type::Reserved,
        ));
        input.push(E820Entry::new(
            BIOS_AREA_START,
            BIOS_AREA_END - BIOS_AREA_START,
            E820Type::Reserved,
        ));
    }
    input.push(E820Entry::new(
        KVM_IDENTITY_MAP_ADDR,
        KVM_PRIVATE_SIZE,
        E820Type::Reserved,
    ));
    input.extend_from_slice(extra);
    // The VGA window and option ROM space is neither RAM nor listed.
    let holes = [(VGA_ROM_START, BIOS_AREA_START)];
    resolve(&input, &holes)
}

/// Paints `input` over the address space (highest precedence wins), removes `holes`,
/// then merges adjacent runs of the same type.
fn resolve(input: &[E820Entry], holes: &[(u64, u64)]) -> Vec<E820Entry> {
    let mut points: Vec<u64> = Vec::new();
    for e in input.iter().filter(|e| e.size > 0) {
        points.push(e.addr);
        points.push(e.end());
    }
    for &(s, e) in holes {
        points.push(s);
        points.push(e);
    }
    points.sort_unstable();
    points.dedup();

    let mut out: Vec<E820Entry> = Vec::new();
    for w in points.windows(2) {
        let (start, end) = (w[0], w[1]);
        if holes.iter().any(|&(hs, he)| start >= hs && end <= he) {
            continue;
        }
        let kind = input
            .iter()
            .filter(|e| e.size > 0 && e.addr <= start && e.end() >= end)
            .map(|e| e.kind)
            .max_by_key(|k| k.precedence());
        let Some(kind) = kind else { continue };
        match out.last_mut() {
            Some(last) if last.kind == kind && last.end() == start => last.size += end - start,
            _ => out.push(E820Entry::new(start, end - start, kind)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::{ram_regions, FOUR_GIB, GIB, MIB};

    fn e(addr: u64, size: u64, kind: E820Type) -> E820Entry {
        E820Entry::new(addr, size, kind)
    }

    #[test]
    fn small_machine_map() {
        let map = build_e820(&ram_regions(256 * MIB, 0xe000_0000), &[]);
        assert_eq!(
            map,
            vec![
                e(0, 0x9fc00, E820Type::Ram),
                e(0x9fc00, 0x400, E820Type::Reserved),
                e(0xf0000, 0x10000, E820Type::Reserved),
                e(0x10_0000, 255 * MIB, E820Type::Ram),
                e(0xfeff_c000, 0x4000, E820Type::Reserved),
            ]
        );
    }

    #[test]
    fn q35_with_mmconfig_and_high_ram() {
        let ram = ram_regions(4 * GIB, 0x8000_0000);
        let mmcfg = e(0xb000_0000, 256 * MIB, E820Type::Reserved);
        let map = build_e820(&ram, &[mmcfg]);
        assert_eq!(
            map,
            vec![
                e(0, 0x9fc00, E820Type::Ram),
                e(0x9fc00, 0x400, E820Type::Reserved),
                e(0xf0000, 0x10000, E820Type::Reserved),
                e(0x10_0000, 2 * GIB - MIB, E820Type::Ram),
                mmcfg,
                e(0xfeff_c000, 0x4000, E820Type::Reserved),
                e(FOUR_GIB, 2 * GIB, E820Type::Ram),
            ]
        );
    }

    #[test]
    fn reserved_punches_ram_and_neighbours_merge() {
        let ram = [RamRegion {
            base: 0,
            size: 64 * MIB,
        }];
        let extra = [
            e(16 * MIB, MIB, E820Type::Acpi),
            e(17 * MIB, MIB, E820Type::Acpi),
            e(17 * MIB + 0x1000, 0x1000, E820Type::Reserved),
        ];
        let map = build_e820(&ram, &extra);
        assert_eq!(
            &map[3..7],
            &[
                e(MIB, 15 * MIB, E820Type::Ram),
                e(16 * MIB, MIB + 0x1000, E820Type::Acpi),
                e(17 * MIB + 0x1000, 0x1000, E820Type::Reserved),
                e(17 * MIB + 0x2000, MIB - 0x2000, E820Type::Acpi),
            ]
        );
        assert_eq!(map[7], e(18 * MIB, 46 * MIB, E820Type::Ram));
    }

    #[test]
    fn map_is_sorted_disjoint_and_merged() {
        let ram = ram_regions(5 * GIB, 0xc000_0000);
        let map = build_e820(&ram, &[e(0xfec0_0000, 0x1000, E820Type::Reserved)]);
        for w in map.windows(2) {
            assert!(w[0].end() <= w[1].addr, "{:x?}", map);
            assert!(!(w[0].end() == w[1].addr && w[0].kind == w[1].kind));
        }
        assert!(map.iter().all(|x| x.size > 0));
    }

    #[test]
    fn tiny_ram_below_ebda() {
        let map = build_e820(
            &[RamRegion {
                base: 0,
                size: 0x8_0000,
            }],
            &[],
        );
        assert_eq!(map[0], e(0, 0x8_0000, E820Type::Ram));
        assert_eq!(map[1], e(0x9fc00, 0x400, E820Type::Reserved));
    }
}
