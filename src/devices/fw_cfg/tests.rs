//! Unit tests for the parent module: I/O and DMA accesses against a small guest RAM.

use super::*;
use crate::arch::x86_64::e820::E820Type;

const RAM: u64 = 0x10_0000;

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap()
}

fn info() -> MachineInfo {
    MachineInfo {
        ram_size: 512 << 20,
        cpus: 2,
        apic_id_limit: 2,
        e820: vec![
            E820Entry::new(0, 0x2000_0000, E820Type::Ram),
            E820Entry::new(0xfeff_c000, 0x4000, E820Type::Reserved),
        ],
        ..Default::default()
    }
}

fn dev() -> FwCfg {
    let mut items = FwCfgItems::standard(&info());
    items.add_file("opt/z", b"last".to_vec()).unwrap();
    items.add_file("opt/a", b"first".to_vec()).unwrap();
    FwCfg::new(mem(), items)
}

fn select(d: &mut FwCfg, key: u16) {
    d.write(0, 0, &key.to_le_bytes());
}

fn read_io(d: &mut FwCfg, key: u16, n: usize) -> Vec<u8> {
    select(d, key);
    (0..n)
        .map(|_| {
            let mut b = [0u8];
            d.read(0, 1, &mut b);
            b[0]
        })
        .collect()
}

/// Writes a DMA descriptor at `at` and kicks it through the two 32-bit halves.
fn dma(d: &mut FwCfg, at: u64, control: u32, len: u32, addr: u64) -> u32 {
    let mut desc = Vec::new();
    desc.extend_from_slice(&control.to_be_bytes());
    desc.extend_from_slice(&len.to_be_bytes());
    desc.extend_from_slice(&addr.to_be_bytes());
    d.mem.write_slice(&desc, GuestAddress(at)).unwrap();
    d.write(1, 0, &((at >> 32) as u32).to_be_bytes());
    d.write(1, 4, &(at as u32).to_be_bytes());
    let mut c = [0u8; 4];
    d.mem.read_slice(&mut c, GuestAddress(at)).unwrap();
    u32::from_be_bytes(c)
}

fn guest(d: &FwCfg, at: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    d.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
    v
}

fn dir(d: &mut FwCfg) -> Vec<(String, u32, u16)> {
    let n = u32::from_be_bytes(read_io(d, FW_CFG_FILE_DIR, 4).try_into().unwrap()) as usize;
    let raw = read_io(d, FW_CFG_FILE_DIR, 4 + n * DIR_ENTRY_LEN);
    raw[4..]
        .chunks(DIR_ENTRY_LEN)
        .map(|e| {
            let name = e[8..].split(|&b| b == 0).next().unwrap();
            (
                String::from_utf8(name.to_vec()).unwrap(),
                u32::from_be_bytes(e[0..4].try_into().unwrap()),
                u16::from_be_bytes(e[4..6].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn signature_and_id() {
    let mut d = dev();
    assert_eq!(read_io(&mut d, FW_CFG_SIGNATURE, 4), b"QEMU");
    assert_eq!(read_io(&mut d, FW_CFG_ID, 4), [3, 0, 0, 0]);
    // Past the end: zeros.
    assert_eq!(read_io(&mut d, FW_CFG_SIGNATURE, 6), b"QEMU\0\0");
    // The write-channel bit is ignored when selecting.
    assert_eq!(
        read_io(&mut d, FW_CFG_SIGNATURE | FW_CFG_WRITE_CHANNEL, 4),
        b"QEMU"
    );
    // Unknown items read as zeros.
    assert_eq!(read_io(&mut d, 0x1234, 3), [0, 0, 0]);
}

#[test]
fn dma_signature_reads_big_endian() {
    let mut d = dev();
    let mut b = [0u8; 8];
    d.read(1, 0, &mut b);
    assert_eq!(&b, DMA_SIGNATURE);
    assert_eq!(u64::from_be_bytes(b), 0x5145_4d55_2043_4647);
    let mut h = [0u8; 4];
    d.read(1, 4, &mut h);
    assert_eq!(&h, b" CFG");
}

#[test]
fn standard_items() {
    let mut d = dev();
    assert_eq!(
        read_io(&mut d, FW_CFG_RAM_SIZE, 8),
        (512u64 << 20).to_le_bytes()
    );
    assert_eq!(read_io(&mut d, FW_CFG_NB_CPUS, 2), [2, 0]);
    assert_eq!(read_io(&mut d, FW_CFG_MAX_CPUS, 2), [2, 0]);
    assert_eq!(read_io(&mut d, FW_CFG_NUMA, 8), [0; 8]);
    assert_eq!(d.items().get(FW_CFG_NUMA).unwrap().len(), 24);
    assert_eq!(read_io(&mut d, FW_CFG_BOOT_MENU, 2), [0, 0]);
    assert_eq!(read_io(&mut d, FW_CFG_NOGRAPHIC, 2), [0, 0]);
    assert_eq!(read_io(&mut d, FW_CFG_ACPI_TABLES, 2), [0, 0]);
}

#[test]
fn directory_is_sorted_with_selectors_in_order() {
    let mut d = dev();
    let files = dir(&mut d);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "bootorder",
            "etc/boot-fail-wait",
            "etc/e820",
            "opt/a",
            "opt/z"
        ]
    );
    for (i, (name, size, sel)) in files.iter().enumerate() {
        assert_eq!(*sel, FW_CFG_FILE_FIRST + i as u16, "{name}");
        let body = read_io(&mut d, *sel, *size as usize);
        assert_eq!(body, d.items().get(*sel).unwrap(), "{name}");
    }
    assert_eq!(files[0].1, 0, "empty bootorder");
    assert_eq!(read_io(&mut d, files[1].2, 4), [0xff; 4]);
    assert_eq!(read_io(&mut d, files[3].2, 5), b"first");
    // etc/e820: two 20-byte little-endian entries.
    let e820 = read_io(&mut d, files[2].2, 40);
    assert_eq!(files[2].1, 40);
    assert_eq!(&e820[8..16], &0x2000_0000u64.to_le_bytes());
    assert_eq!(&e820[16..20], &1u32.to_le_bytes());
    assert_eq!(&e820[20..28], &0xfeff_c000u64.to_le_bytes());
    assert_eq!(&e820[36..40], &2u32.to_le_bytes());
}

#[test]
fn add_file_after_creation_renumbers() {
    let mut d = dev();
    d.add_file("etc/acpi/tables", vec![1, 2, 3]).unwrap();
    let files = dir(&mut d);
    assert_eq!(files[1], ("etc/acpi/tables".into(), 3, 0x21));
    assert_eq!(
        d.add_file("etc/acpi/tables", vec![]),
        Err(FwCfgError::Duplicate("etc/acpi/tables".into()))
    );
    assert!(matches!(
        d.add_file("", vec![]),
        Err(FwCfgError::BadName(_))
    ));
    assert!(matches!(
        d.add_file(&"x".repeat(56), vec![]),
        Err(FwCfgError::BadName(_))
    ));
    assert!(d.add_file(&"x".repeat(55), vec![]).is_ok());
}

#[test]
fn boot_rom_goes_first_in_bootorder() {
    let mut items = FwCfgItems::standard(&MachineInfo {
        bootorder: vec!["/pci@i0cf8/ide@1,1/drive@0/disk@0".into()],
        ..info()
    });
    items.add_boot_rom("pvh.bin", vec![0x55, 0xaa]).unwrap();
    let order = items.files().find(|f| f.0 == "bootorder").unwrap().2;
    assert_eq!(
        order,
        b"/rom@genroms/pvh.bin\n/pci@i0cf8/ide@1,1/drive@0/disk@0\0"
    );
    assert!(items
        .files()
        .any(|f| f.0 == "genroms/pvh.bin" && f.2 == [0x55, 0xaa]));
}

#[test]
fn dma_read_with_select_matches_io() {
    let mut d = dev();
    let sel = dir(&mut d).iter().find(|f| f.0 == "etc/e820").unwrap().2;
    let ctl = (u32::from(sel) << 16) | DMA_CTL_SELECT | DMA_CTL_READ;
    assert_eq!(dma(&mut d, 0x1000, ctl, 40, 0x2000), 0);
    assert_eq!(guest(&d, 0x2000, 40), read_io(&mut d, sel, 40));
    // Skip 4, then read the rest of the signature on the same item.
    let ctl = (u32::from(FW_CFG_SIGNATURE) << 16) | DMA_CTL_SELECT | DMA_CTL_SKIP;
    assert_eq!(dma(&mut d, 0x1000, ctl, 2, 0), 0);
    assert_eq!(dma(&mut d, 0x1000, DMA_CTL_READ, 4, 0x3000), 0);
    assert_eq!(guest(&d, 0x3000, 4), b"MU\0\0");
}

#[test]
fn dma_through_a_64_bit_write() {
    let mut d = dev();
    let desc = [
        ((u32::from(FW_CFG_ID) << 16) | DMA_CTL_SELECT | DMA_CTL_READ).to_be_bytes(),
        4u32.to_be_bytes(),
    ]
    .concat();
    d.mem.write_slice(&desc, GuestAddress(0x800)).unwrap();
    d.mem
        .write_slice(&0x900u64.to_be_bytes(), GuestAddress(0x808))
        .unwrap();
    d.write(1, 0, &0x800u64.to_be_bytes());
    assert_eq!(guest(&d, 0x800, 4), [0; 4]);
    assert_eq!(guest(&d, 0x900, 4), [3, 0, 0, 0]);
}

#[test]
fn dma_errors() {
    let mut d = dev();
    let sel = |k: u16| (u32::from(k) << 16) | DMA_CTL_SELECT;
    // Unknown selector: error, buffer zeroed.
    d.mem.write_slice(&[0xaa; 8], GuestAddress(0x2000)).unwrap();
    assert_eq!(
        dma(&mut d, 0x1000, sel(0x777) | DMA_CTL_READ, 8, 0x2000),
        DMA_CTL_ERROR
    );
    assert_eq!(guest(&d, 0x2000, 8), [0; 8]);
    // Writes: every item is read-only.
    assert_eq!(
        dma(
            &mut d,
            0x1000,
            sel(FW_CFG_SIGNATURE) | DMA_CTL_WRITE,
            4,
            0x2000
        ),
        DMA_CTL_ERROR
    );
    assert_eq!(read_io(&mut d, FW_CFG_SIGNATURE, 4), b"QEMU");
    // Buffer beyond RAM, and a buffer that wraps around.
    assert_eq!(
        dma(
            &mut d,
            0x1000,
            sel(FW_CFG_SIGNATURE) | DMA_CTL_READ,
            4,
            RAM - 2
        ),
        DMA_CTL_ERROR
    );
    assert_eq!(
        dma(
            &mut d,
            0x1000,
            sel(FW_CFG_SIGNATURE) | DMA_CTL_READ,
            16,
            u64::MAX - 4
        ),
        DMA_CTL_ERROR
    );
    // Past the end of an item: zeros, no error.
    assert_eq!(
        dma(
            &mut d,
            0x1000,
            sel(FW_CFG_SIGNATURE) | DMA_CTL_READ,
            8,
            0x2000
        ),
        0
    );
    assert_eq!(guest(&d, 0x2000, 8), b"QEMU\0\0\0\0");
    // A select alone is fine and sets the item for I/O reads.
    assert_eq!(dma(&mut d, 0x1000, sel(FW_CFG_ID), 0, 0), 0);
    let mut b = [0u8];
    d.read(0, 1, &mut b);
    assert_eq!(b[0], 3);
    // A descriptor outside RAM: nothing to write back, nothing breaks.
    d.write(1, 0, &0u32.to_be_bytes());
    d.write(1, 4, &(RAM as u32 - 8).to_be_bytes());
    d.write(1, 0, &(u64::MAX - 3).to_be_bytes());
}

/// A tiny bzImage: 1 setup sector after the boot sector, then the "kernel".
fn bzimage(version: u16) -> Vec<u8> {
    let mut img = vec![0u8; 1024 + 4096];
    img[0x1f1] = 1;
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    img[0x211] = 1;
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    img[1024] = 0xcc;
    img
}

#[test]
fn linux_items() {
    let mut items = FwCfgItems::new();
    let initrd = vec![7u8; 5000];
    items
        .add_linux(&bzimage(0x020f), Some(&initrd), "console=ttyS0", 256 << 20)
        .unwrap();
    let u32_of = |k| u32::from_le_bytes(items.get(k).unwrap().try_into().unwrap());
    assert_eq!(u32_of(FW_CFG_SETUP_ADDR), 0x10000);
    assert_eq!(u32_of(FW_CFG_SETUP_SIZE), 1024);
    assert_eq!(u32_of(FW_CFG_KERNEL_ADDR), 0x100000);
    assert_eq!(u32_of(FW_CFG_KERNEL_SIZE), 4096);
    assert_eq!(items.get(FW_CFG_KERNEL_DATA).unwrap()[0], 0xcc);
    assert_eq!(u32_of(FW_CFG_CMDLINE_ADDR), 0x20000);
    assert_eq!(u32_of(FW_CFG_CMDLINE_SIZE), 14);
    assert_eq!(items.get(FW_CFG_CMDLINE_DATA).unwrap(), b"console=ttyS0\0");
    let ia = u32_of(FW_CFG_INITRD_ADDR);
    assert_eq!(ia % 4096, 0);
    assert!(u64::from(ia) + 5000 <= (256 << 20) - ACPI_RESERVE_FOR_TEST);
    assert_eq!(u32_of(FW_CFG_INITRD_SIZE), 5000);
    let setup = items.get(FW_CFG_SETUP_DATA).unwrap();
    assert_eq!(setup[0x210], 0xb0);
    assert_eq!(setup[0x211], 0x81);
    assert_eq!(&setup[0x218..0x21c], &ia.to_le_bytes());
    assert_eq!(&setup[0x228..0x22c], &0x20000u32.to_le_bytes());
    assert!(items.add_linux(&[0u8; 100], None, "", 256 << 20).is_err());
    assert!(items
        .add_linux(&bzimage(0x0201), None, "", 256 << 20)
        .is_err());
}

const ACPI_RESERVE_FOR_TEST: u64 = 0x28000;

use crate::testing::Rng;

#[test]
fn random_accesses_never_panic() {
    let mut d = dev();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let interesting = [0u64, 0x1000, RAM - 16, RAM - 1, RAM, u64::MAX - 7, 1 << 32];
    for _ in 0..20_000 {
        let r = rng.next();
        // Either region, at offsets past its end too.
        let (region, off) = ((r >> 30) as usize % 3, r % 12);
        let size = [1usize, 2, 4, 8][(r >> 8) as usize % 4];
        if r & (1 << 20) != 0 {
            let mut buf = vec![0u8; size];
            d.read(region, off, &mut buf);
        } else if r & (1 << 21) != 0 {
            // A well-formed descriptor with random fields at a random place.
            let at = if r & (1 << 22) != 0 {
                interesting[(r >> 23) as usize % interesting.len()]
            } else {
                rng.next() % RAM
            };
            let control = (rng.next() as u32 & 0x003f_001f) | ((rng.next() as u32 % 0x30) << 16);
            let len = (rng.next() % 0x3000) as u32;
            let buf = if rng.next() & 1 == 0 {
                rng.next() % RAM
            } else {
                rng.next()
            };
            let mut desc = Vec::new();
            desc.extend_from_slice(&control.to_be_bytes());
            desc.extend_from_slice(&len.to_be_bytes());
            desc.extend_from_slice(&buf.to_be_bytes());
            let _ = d.mem.write_slice(&desc, GuestAddress(at));
            d.dma(at);
        } else {
            let v = rng.next().to_le_bytes();
            d.write(region, off, &v[..size]);
        }
    }
    // Still answers.
    assert_eq!(read_io(&mut d, FW_CFG_SIGNATURE, 4), b"QEMU");
}
