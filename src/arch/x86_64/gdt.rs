//! The boot GDT and the segment registers that match it.
//!
//! The Linux boot protocol (Documentation/arch/x86/boot.rst, "64-bit boot protocol")
//! requires a GDT with flat 4 GiB descriptors for `__BOOT_CS` (selector 0x10, execute/read)
//! and `__BOOT_DS` (selector 0x18, read/write), CS = `__BOOT_CS` and DS/ES/SS = `__BOOT_DS`.
//! The PVH entry (xen/include/public/arch-x86/hvm/start_info.h) wants a flat 32-bit
//! code segment and flat data segments; the selectors are not fixed.
//!
//! One table serves both:
//!
//! | selector | descriptor                                   |
//! |----------|----------------------------------------------|
//! | 0x00     | null                                         |
//! | 0x08     | 32-bit code, flat 4 GiB (PVH CS)             |
//! | 0x10     | 64-bit code (L=1) = `__BOOT_CS`              |
//! | 0x18     | data, flat 4 GiB, read/write = `__BOOT_DS`   |
//! | 0x20     | busy TSS, 16-byte system descriptor (TR)      |
//!
//! Every usable descriptor has its "accessed" bit set, as the CPU would have set it after
//! loading it (VMX entry checks require it).

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::layout::BOOT_GDT_ADDR;

/// Selector of the flat 32-bit code segment (PVH entry).
pub const CODE32_SELECTOR: u16 = 0x08;
/// Selector of the 64-bit code segment (`__BOOT_CS`).
pub const CODE64_SELECTOR: u16 = 0x10;
/// Selector of the flat data segment (`__BOOT_DS`).
pub const DATA_SELECTOR: u16 = 0x18;
/// Selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x20;

/// Access byte: present, DPL 0, code, execute/read, accessed.
const ACCESS_CODE: u8 = 0x9b;
/// Access byte: present, DPL 0, data, read/write, accessed.
const ACCESS_DATA: u8 = 0x93;
/// Access byte: present, system, type 0xB = busy 32/64-bit TSS.
const ACCESS_TSS_BUSY: u8 = 0x8b;
/// Flags nibble: 4 KiB granularity, 32-bit default operand size.
const FLAGS_32: u8 = 0xc;
/// Flags nibble: 4 KiB granularity, long mode (L=1, D=0).
const FLAGS_64: u8 = 0xa;
/// Minimal TSS limit (104-byte TSS).
const TSS_LIMIT: u32 = 0x67;

/// Encodes a legacy 8-byte segment descriptor.
pub const fn descriptor(access: u8, flags: u8, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((flags & 0xf) as u64) << 52)
        | (((base >> 24) & 0xff) << 56)
}

/// The boot GDT as 64-bit words (the TSS takes two).
pub fn boot_gdt() -> [u64; 6] {
    [
        0,
        descriptor(ACCESS_CODE, FLAGS_32, 0, 0xfffff),
        descriptor(ACCESS_CODE, FLAGS_64, 0, 0xfffff),
        descriptor(ACCESS_DATA, FLAGS_32, 0, 0xfffff),
        descriptor(ACCESS_TSS_BUSY, 0, 0, TSS_LIMIT),
        0, // base[63:32] of the TSS and reserved bits
    ]
}

/// Size in bytes of the GDT, minus one, as loaded into GDTR.limit.
pub const BOOT_GDT_LIMIT: u16 = (6 * 8 - 1) as u16;

/// Writes [`boot_gdt`] at [`BOOT_GDT_ADDR`].
pub fn write_boot_gdt(mem: &GuestMemoryMmap) -> Result<(), GuestMemoryError> {
    for (i, d) in boot_gdt().iter().enumerate() {
        mem.write_obj(*d, GuestAddress(BOOT_GDT_ADDR + 8 * i as u64))?;
    }
    Ok(())
}

/// The hidden part of a segment register as loaded from descriptor `desc` by `selector`.
pub fn segment_from_descriptor(selector: u16, desc: u64) -> kvm_segment {
    let base = ((desc >> 16) & 0xff_ffff) | (((desc >> 56) & 0xff) << 24);
    let raw_limit = (desc & 0xffff) | (((desc >> 48) & 0xf) << 16);
    let g = ((desc >> 55) & 1) as u8;
    // With G=1 the limit counts 4 KiB pages and the low 12 bits read as ones.
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    kvm_segment {
        base,
        limit: limit as u32,
        selector,
        type_: ((desc >> 40) & 0xf) as u8,
        present: ((desc >> 47) & 1) as u8,
        dpl: ((desc >> 45) & 3) as u8,
        db: ((desc >> 54) & 1) as u8,
        s: ((desc >> 44) & 1) as u8,
        l: ((desc >> 53) & 1) as u8,
        g,
        avl: ((desc >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Segment register for `selector` in the boot GDT (a selector past the table decodes
/// as the null descriptor, i.e. a non-present segment).
pub fn boot_segment(selector: u16) -> kvm_segment {
    let desc = boot_gdt()
        .get(usize::from(selector >> 3))
        .copied()
        .unwrap_or(0);
    segment_from_descriptor(selector, desc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_match_the_usual_encodings() {
        let g = boot_gdt();
        assert_eq!(g[1], 0x00cf_9b00_0000_ffff);
        assert_eq!(g[2], 0x00af_9b00_0000_ffff);
        assert_eq!(g[3], 0x00cf_9300_0000_ffff);
        assert_eq!(g[4], 0x0000_8b00_0000_0067);
    }

    #[test]
    fn segments_decode_flat() {
        let cs = boot_segment(CODE64_SELECTOR);
        assert_eq!((cs.base, cs.limit, cs.selector), (0, 0xffff_ffff, 0x10));
        assert_eq!(
            (cs.type_, cs.present, cs.s, cs.l, cs.db, cs.g),
            (11, 1, 1, 1, 0, 1)
        );
        let cs32 = boot_segment(CODE32_SELECTOR);
        assert_eq!((cs32.l, cs32.db, cs32.limit), (0, 1, 0xffff_ffff));
        let ds = boot_segment(DATA_SELECTOR);
        assert_eq!((ds.type_, ds.s, ds.db, ds.selector), (3, 1, 1, 0x18));
        let tr = boot_segment(TSS_SELECTOR);
        assert_eq!(
            (tr.type_, tr.s, tr.limit, tr.g, tr.present),
            (11, 0, 0x67, 0, 1)
        );
    }

    #[test]
    fn gdt_lands_in_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        write_boot_gdt(&mem).unwrap();
        let d: u64 = mem.read_obj(GuestAddress(BOOT_GDT_ADDR + 0x10)).unwrap();
        assert_eq!(d, boot_gdt()[2]);
    }
}
