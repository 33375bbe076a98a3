//! End-to-end tests of [`super::setup`] on synthetic images: the exact zero page,
//! start_info, e820, register state and initrd placement produced.

use super::*;
use crate::arch::x86_64::layout::{ram_regions, MIB, PVH_MEMMAP_ADDR, PVH_MODLIST_ADDR};
use crate::boot::elf::EM_X86_64;
use crate::boot::testimg::{elf, pvh_note, BzImageSpec, Seg};

const RAM: u64 = 128 * MIB;

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap()
}

fn input<'a>(kernel: &'a [u8], initrd: Option<&'a [u8]>, ram: &'a [RamRegion]) -> BootInput<'a> {
    BootInput {
        kernel,
        initrd,
        cmdline: "console=ttyS0 panic=-1",
        ram,
        extra_e820: &[],
        rsdp: Some(0xf_0000),
        msr: MsrConfig {
            mmio_hole_start: Some(0xe000_0000),
            phys_bits: 40,
        },
    }
}

fn rd<T: vm_memory::ByteValued>(m: &GuestMemoryMmap, at: u64) -> T {
    m.read_obj(GuestAddress(at)).unwrap()
}

#[test]
fn bzimage_zero_page_fields() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let img = BzImageSpec::default().build();
    let initrd = vec![0x5a; 10_000];
    let s = setup(&m, &input(&img, Some(&initrd), &ram)).unwrap();
    assert_eq!(s.kind, KernelKind::BzImage { protocol: 0x020f });
    assert_eq!(s.kernel, (0x100_0000, 0x140_0000));
    // Page aligned, as high as possible in low RAM (128 MiB here).
    let initrd_addr = (RAM - 10_000) & !0xfff;
    assert_eq!(s.initrd, Some((initrd_addr, 10_000)));
    assert_eq!(rd::<u8>(&m, initrd_addr), 0x5a);

    let zp = ZERO_PAGE_ADDR;
    // Setup header copied from the image...
    assert_eq!(rd::<u32>(&m, zp + 0x202), 0x5372_6448);
    assert_eq!(rd::<u16>(&m, zp + 0x206), 0x020f);
    assert_eq!(
        rd::<u32>(&m, zp + 0x238),
        2047,
        "cmdline_size from the image"
    );
    assert_eq!(
        rd::<u64>(&m, zp + 0x258),
        0x100_0000,
        "pref_address from the image"
    );
    // ...and the loader's fields.
    assert_eq!(rd::<u8>(&m, zp + 0x210), 0xff, "type_of_loader");
    assert_eq!(rd::<u8>(&m, zp + 0x211), 0x81, "LOADED_HIGH | CAN_USE_HEAP");
    assert_eq!(rd::<u16>(&m, zp + 0x1fa), 0xffff, "vid_mode");
    assert_eq!(rd::<u16>(&m, zp + 0x224), 0xde00, "heap_end_ptr");
    assert_eq!(rd::<u32>(&m, zp + 0x214), 0x100_0000, "code32_start");
    assert_eq!(
        rd::<u32>(&m, zp + 0x218),
        initrd_addr as u32,
        "ramdisk_image"
    );
    assert_eq!(rd::<u32>(&m, zp + 0x21c), 10_000, "ramdisk_size");
    assert_eq!(
        rd::<u32>(&m, zp + 0x228),
        CMDLINE_ADDR as u32,
        "cmd_line_ptr"
    );
    assert_eq!(rd::<u64>(&m, zp + 0x070), 0xf_0000, "acpi_rsdp_addr");
    // e820 table.
    assert_eq!(rd::<u8>(&m, zp + 0x1e8) as usize, s.e820.len());
    assert_eq!(s.e820.len(), 5);
    for (i, e) in s.e820.iter().enumerate() {
        let at = zp + 0x2d0 + 20 * i as u64;
        assert_eq!(rd::<u64>(&m, at), e.addr);
        assert_eq!(rd::<u64>(&m, at + 8), e.size);
        assert_eq!(rd::<u32>(&m, at + 16), e.kind as u32);
    }
    assert_eq!((s.e820[3].addr, s.e820[3].size), (MIB, RAM - MIB));
    // Command line, NUL terminated.
    let mut c = vec![0u8; 23];
    m.read_slice(&mut c, GuestAddress(CMDLINE_ADDR)).unwrap();
    assert_eq!(&c, b"console=ttyS0 panic=-1\0");
    // Entry state.
    assert_eq!(
        s.entry,
        BootEntry::Linux64 {
            entry: 0x100_0200,
            zero_page: ZERO_PAGE_ADDR
        }
    );
    let r = s.regs();
    assert_eq!((r.rip, r.rsi), (0x100_0200, ZERO_PAGE_ADDR));
    let sr = s.sregs(&kvm_sregs::default());
    assert_eq!((sr.cs.selector, sr.cs.l, sr.efer & 0x500), (0x10, 1, 0x500));
    assert!(s.msrs.iter().any(|e| e.index == 0x1a0 && e.data == 1));
}

#[test]
fn setup_header_copy_stops_at_the_jump_target() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    // A 2.10 header ends at 0x264; the image has 0xcc setup code after it.
    let img = BzImageSpec {
        version: 0x020a,
        xloadflags: 0,
        ..Default::default()
    }
    .build();
    setup(&m, &input(&img, None, &ram)).unwrap();
    assert_eq!(
        rd::<u32>(&m, ZERO_PAGE_ADDR + 0x260),
        0x40_0000,
        "init_size copied"
    );
    assert_eq!(
        rd::<u32>(&m, ZERO_PAGE_ADDR + 0x264),
        0,
        "setup code not copied"
    );
    assert_eq!(rd::<u32>(&m, ZERO_PAGE_ADDR + 0x21c), 0, "no initrd");
}

#[test]
fn initrd_respects_initrd_addr_max_and_kernel() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let img = BzImageSpec {
        initrd_addr_max: 0x37f_ffff,
        ..Default::default()
    }
    .build();
    let s = setup(&m, &input(&img, Some(&[1u8; 0x1800]), &ram)).unwrap();
    assert_eq!(
        s.initrd,
        Some((0x37f_e000, 0x1800)),
        "ends at or below initrd_addr_max"
    );
    let big = vec![0u8; (RAM - 0x140_0000 + 4096) as usize];
    let err = setup(&m, &input(&img, Some(&big), &ram)).unwrap_err();
    assert!(
        matches!(
            err,
            BootError::InitrdTooLarge {
                low: 0x140_0000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn initrd_avoids_reserved_ranges() {
    let e820 = [
        E820Entry::new(MIB, 63 * MIB, E820Type::Ram),
        E820Entry::new(64 * MIB, MIB, E820Type::Acpi),
        E820Entry::new(65 * MIB, 0x800, E820Type::Ram),
    ];
    assert_eq!(
        place_initrd(&e820, 0x1000, 32 * MIB, 128 * MIB),
        Some(64 * MIB - 0x1000)
    );
    assert_eq!(
        place_initrd(&e820, 0x1000, 64 * MIB - 0x800, 128 * MIB),
        None
    );
}

#[test]
fn cmdline_checks() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let img = BzImageSpec {
        cmdline_size: 10,
        ..Default::default()
    }
    .build();
    let err = setup(&m, &input(&img, None, &ram)).unwrap_err();
    assert!(
        matches!(err, BootError::CmdlineTooLong { len: 22, max: 10 }),
        "{err}"
    );
    let img = BzImageSpec::default().build();
    let mut i = input(&img, None, &ram);
    i.cmdline = "a\0b";
    assert!(matches!(
        setup(&m, &i).unwrap_err(),
        BootError::CmdlineNul(1)
    ));
}

#[test]
fn elf_vmlinux_gets_a_minimal_header() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let img = elf(
        true,
        EM_X86_64,
        0x100_0000,
        &[Seg {
            paddr: 0x100_0000,
            data: vec![0x90; 64],
            memsz: 0x10_0000,
        }],
        &[],
    );
    let s = setup(&m, &input(&img, Some(&[7u8; 100]), &ram)).unwrap();
    assert_eq!(s.kind, KernelKind::Elf64);
    assert_eq!(
        s.entry,
        BootEntry::Linux64 {
            entry: 0x100_0000,
            zero_page: ZERO_PAGE_ADDR
        }
    );
    assert_eq!(rd::<u16>(&m, ZERO_PAGE_ADDR + 0x1fe), 0xaa55);
    assert_eq!(rd::<u32>(&m, ZERO_PAGE_ADDR + 0x202), 0x5372_6448);
    assert_eq!(
        rd::<u32>(&m, ZERO_PAGE_ADDR + 0x230),
        0x100_0000,
        "kernel_alignment"
    );
    assert_eq!(rd::<u32>(&m, ZERO_PAGE_ADDR + 0x238), 22, "cmdline_size");
    assert_eq!(rd::<u8>(&m, ZERO_PAGE_ADDR + 0x210), 0xff);
    assert_eq!(s.initrd, Some(((RAM - 100) & !0xfff, 100)));
}

#[test]
fn pvh_start_info() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let seg = Seg {
        paddr: 0x10_0000,
        data: vec![0xf4; 32],
        memsz: 32,
    };
    let img = elf(
        true,
        EM_X86_64,
        0xffff_ffff_8100_0000,
        &[seg],
        &[pvh_note(0x10_0010)],
    );
    let s = setup(&m, &input(&img, Some(&[3u8; 5000]), &ram)).unwrap();
    assert_eq!(s.kind, KernelKind::Pvh);
    assert_eq!(
        s.entry,
        BootEntry::Pvh {
            entry: 0x10_0010,
            start_info: 0x6000
        }
    );
    let r = s.regs();
    assert_eq!((r.rip, r.rbx), (0x10_0010, 0x6000));
    let si = 0x6000;
    assert_eq!(rd::<u32>(&m, si), 0x336e_c578, "magic");
    assert_eq!(rd::<u32>(&m, si + 4), 1, "version");
    assert_eq!(rd::<u32>(&m, si + 12), 1, "nr_modules");
    assert_eq!(rd::<u64>(&m, si + 16), PVH_MODLIST_ADDR);
    assert_eq!(rd::<u64>(&m, si + 24), CMDLINE_ADDR);
    assert_eq!(rd::<u64>(&m, si + 32), 0xf_0000, "rsdp_paddr");
    assert_eq!(rd::<u64>(&m, si + 40), PVH_MEMMAP_ADDR);
    assert_eq!(rd::<u32>(&m, si + 48) as usize, s.e820.len());
    let (addr, size) = s.initrd.unwrap();
    assert_eq!(
        (
            rd::<u64>(&m, PVH_MODLIST_ADDR),
            rd::<u64>(&m, PVH_MODLIST_ADDR + 8)
        ),
        (addr, size)
    );
    for (i, e) in s.e820.iter().enumerate() {
        let at = PVH_MEMMAP_ADDR + 24 * i as u64;
        assert_eq!((rd::<u64>(&m, at), rd::<u64>(&m, at + 8)), (e.addr, e.size));
        assert_eq!(rd::<u32>(&m, at + 16), e.kind as u32);
    }
    // No page tables needed, but the GDT is there.
    assert_eq!(rd::<u64>(&m, 0x508), 0x00cf_9b00_0000_ffff);
}

#[test]
fn pvh_without_initrd_has_no_modules() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let seg = Seg {
        paddr: 0x10_0000,
        data: vec![0xf4; 32],
        memsz: 32,
    };
    let img = elf(false, 3, 0x10_0000, &[seg], &[pvh_note(0x10_0000)]);
    let mut i = input(&img, None, &ram);
    i.rsdp = None;
    let s = setup(&m, &i).unwrap();
    assert_eq!(s.initrd, None);
    assert_eq!(
        (rd::<u32>(&m, 0x6000 + 12), rd::<u64>(&m, 0x6000 + 16)),
        (0, 0)
    );
    assert_eq!(rd::<u64>(&m, 0x6000 + 32), 0);
}

#[test]
fn unknown_format_says_what_was_expected() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let err = setup(&m, &input(b"#!/bin/sh\necho hi\n", None, &ram)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not a bzImage (no HdrS setup header"), "{msg}");
    assert!(msg.contains("not an ELF"), "{msg}");
    let old = BzImageSpec {
        version: 0x0202,
        ..Default::default()
    }
    .build();
    let msg = crate::error_chain(&setup(&m, &input(&old, None, &ram)).unwrap_err());
    assert!(msg.contains("2.02 is too old"), "{msg}");
}

#[test]
fn kernel_needs_ram_above_1mib() {
    let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MIB as usize)]).unwrap();
    let ram = ram_regions(MIB, 0xe000_0000);
    let img = BzImageSpec::default().build();
    assert!(matches!(
        setup(&m, &input(&img, None, &ram)).unwrap_err(),
        BootError::NoLowRam
    ));
}

#[test]
fn the_real_probe_guest_is_a_pvh_elf() {
    let m = mem();
    let ram = ram_regions(RAM, 0xe000_0000);
    let s = setup(&m, &input(crate::boot::probe::PROBE_ELF, None, &ram)).unwrap();
    assert_eq!(s.kind, KernelKind::Pvh);
    match s.entry {
        BootEntry::Pvh { entry, start_info } => {
            assert!((0x10_0000..s.kernel.1).contains(&u64::from(entry)));
            assert_eq!(start_info, 0x6000);
        }
        other => panic!("expected a PVH entry, got {other:?}"),
    }
    assert!(s.kernel.0 >= MIB && s.kernel.1 < RAM);
}
