//! Firmware boot: a BIOS image (SeaBIOS) mapped where a PC's flash chip answers, and
//! the boot CPU started at the reset vector.
//!
//! # Where the image goes
//!
//! * The whole image, read-only, ends at 4 GiB: `[4 GiB - size, 4 GiB)`. The CPU's first
//!   fetch is at 0xFFFF_FFF0 (CS base 0xFFFF_0000 + IP 0xFFF0, see
//!   [`BootEntry::ResetVector`]), i.e. 16 bytes below the top of the image. The builder
//!   maps it with `Vm::add_rom` (a `KVM_MEM_READONLY` memslot: reads are memory, writes
//!   exit as MMIO and are dropped).
//! * Its last 256 KiB (the whole image when it is smaller) at `0x10_0000 - len`, i.e.
//!   the whole PAM window 0xC0000-0xFFFFF for a 256 KiB or larger image, 0xE0000-0xFFFFF
//!   for SeaBIOS's 128 KiB `bios.bin`. SeaBIOS's first far jump goes to F000:E05B, and
//!   its 16-bit code and data live there for the rest of the run.
//!
//! Why 256 KiB and not the 128 KiB a chipset aliases at reset: SeaBIOS's
//! `bios-256k.bin` (the q35 image) links code from 0xD0000 up. On QEMU that part is
//! not visible below 1 MiB at reset either: SeaBIOS finds the i440FX/Q35 bridge, opens
//! the PAM registers and copies its `code32flat` section from the 4 GiB copy into
//! shadow RAM itself. With no bridge to find it skips that copy, and the first call
//! into 0xD0000 runs zeros (a triple fault right after "Running on KVM"). So vmrun
//! does the copy the firmware would have done, for the whole shadowable window.
//!
//! # What real hardware does differently (and what issue 5 changes)
//!
//! On a real i440FX / Q35 the legacy window 0xC0000-0xFFFFF is decoded by the host
//! bridge's PAM registers: at reset it forwards reads to the flash (an alias of the top
//! of the ROM) and writes to nowhere; firmware then flips the PAM bits to "read and write
//! DRAM", copies itself into that shadow RAM and finally write-protects it again.
//! vmrun has no host bridge yet (PCI config space arrives with issue 5), so here the first
//! MiB is one plain RAM memslot and this module simply writes the legacy copy into that
//! RAM: it is writable from the first instruction on, which SeaBIOS needs (it writes its
//! own variables there; without a bridge it logs "Unable to unlock ram - bridge not
//! found" and carries on). Issue 5 will put the PAM registers in the host bridge and make
//! 0xC0000-0xFFFFF switch between the ROM alias and shadow RAM as the guest programs
//! them, so a guest that write-protects its BIOS gets what it asked for.
//!
//! # What is not written
//!
//! Firmware builds its own boot structures: no zero page, no PVH start_info, no boot
//! GDT or page tables, no MP table and no BDA words are written for a firmware boot
//! (SeaBIOS writes the BDA, the EBDA and an MP table of its own, and takes the ACPI
//! tables, the e820 map and the payload from fw_cfg). Only the boot CPU is set up; the
//! APs stay in KVM's wait-for-SIPI state until the firmware starts them with INIT/SIPI.
//!
//! # Handing a kernel to the firmware
//!
//! With `[boot] firmware` and a kernel (or the probe, under `vmrun probe`), vmrun does
//! what QEMU's `-kernel` does with a BIOS ([`prepare_payload`]): an option ROM from
//! QEMU (Debian's `qemu-system-data`, looked up in [`OPTION_ROM_DIRS`]; no machine-file
//! key) is served as fw_cfg file `genroms/NAME` and named first in `bootorder`, so
//! SeaBIOS runs it as its boot device. A bzImage goes through `linuxboot_dma.bin`
//! (the fw_cfg device adds the setup/kernel/initrd/cmdline items); a PVH ELF is copied
//! into RAM here and `pvh.bin` enters it with a start_info built from int 15h e820, the
//! command line (`FW_CFG_CMDLINE_*`) and the entry (`FW_CFG_KERNEL_ENTRY`).

use kvm_bindings::kvm_msr_entry;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::layout::{FIRMWARE_MAX_SIZE, FOUR_GIB, HIGH_MEMORY_START};
use crate::arch::x86_64::regs::{msr_index, BootEntry, MISC_ENABLE_FAST_STRING};

/// The legacy BIOS window below 1 MiB (0xC0000-0xFFFFF, the range the PAM registers
/// shadow) holds at most this much of the image.
pub const LEGACY_MAX: u64 = 256 * 1024;

/// Firmware images are whole 4 KiB pages.
const PAGE: u64 = 4096;

#[derive(Debug, Error)]
pub enum FirmwareError {
    #[error("the firmware image is empty")]
    Empty,
    #[error("the firmware image is {0} bytes; at most {FIRMWARE_MAX_SIZE} bytes fit below 4 GiB")]
    TooLarge(u64),
    #[error("the firmware image is {0} bytes, not a whole number of 4 KiB pages")]
    NotPageSized(u64),
    #[error("option ROM {name} not found (searched {searched}; Debian: apt install qemu-system-data, or set VMRUN_OPTION_ROM_DIR)")]
    NoOptionRom { name: String, searched: String },
    #[error("an initrd cannot go with a PVH kernel under firmware boot (QEMU's pvh.bin passes no modules); boot a bzImage, or boot directly")]
    PvhInitrd,
    #[error("the payload for the firmware: {0}")]
    Payload(String),
    #[error("cannot write the legacy BIOS copy at {addr:#x} (is there 1 MiB of RAM?)")]
    Legacy {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
}

/// Where a firmware image of a given size is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareLayout {
    /// Guest address of the read-only copy of the whole image (ends at 4 GiB).
    pub rom_base: u64,
    /// Image size in bytes.
    pub size: u64,
    /// Guest address of the legacy copy (ends at 1 MiB).
    pub legacy_base: u64,
    /// Offset in the image where the legacy copy starts.
    pub legacy_offset: u64,
}

impl FirmwareLayout {
    /// Placement of an image of `size` bytes.
    pub fn new(size: u64) -> Result<Self, FirmwareError> {
        if size == 0 {
            return Err(FirmwareError::Empty);
        }
        if size > FIRMWARE_MAX_SIZE {
            return Err(FirmwareError::TooLarge(size));
        }
        if !size.is_multiple_of(PAGE) {
            return Err(FirmwareError::NotPageSized(size));
        }
        let legacy = size.min(LEGACY_MAX);
        Ok(Self {
            rom_base: FOUR_GIB - size,
            size,
            legacy_base: HIGH_MEMORY_START - legacy,
            legacy_offset: size - legacy,
        })
    }

    /// Length of the legacy copy.
    pub fn legacy_len(&self) -> u64 {
        self.size - self.legacy_offset
    }
}

/// A firmware boot, ready for the builder: map `image` read-only at `layout.rom_base`
/// and start the boot CPU with `entry` and `msrs`.
#[derive(Clone, Debug)]
pub struct FirmwareSetup {
    pub layout: FirmwareLayout,
    /// Always [`BootEntry::ResetVector`].
    pub entry: BootEntry,
    /// MSR values at power-on.
    pub msrs: Vec<kvm_msr_entry>,
}

/// Checks `image`, writes its legacy copy into guest RAM below 1 MiB and says where the
/// whole image must be mapped. The caller maps the ROM (it owns the VM's memslots).
pub fn setup(mem: &GuestMemoryMmap, image: &[u8]) -> Result<FirmwareSetup, FirmwareError> {
    let layout = FirmwareLayout::new(image.len() as u64)?;
    let legacy = &image[layout.legacy_offset as usize..];
    mem.write_slice(legacy, GuestAddress(layout.legacy_base))
        .map_err(|source| FirmwareError::Legacy {
            addr: layout.legacy_base,
            source,
        })?;
    Ok(FirmwareSetup {
        layout,
        entry: BootEntry::ResetVector,
        msrs: reset_msrs(),
    })
}

/// The MSRs the builder sets for a firmware boot: the power-on values (TSC 0, MTRRs
/// disabled, so everything is uncacheable until the firmware programs them, as SeaBIOS
/// does), fast strings on as QEMU's reset leaves them.
pub fn reset_msrs() -> Vec<kvm_msr_entry> {
    let m = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        m(msr_index::IA32_TSC, 0),
        m(msr_index::IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        m(msr_index::IA32_MTRR_DEF_TYPE, 0),
        m(msr_index::IA32_SYSENTER_CS, 0),
        m(msr_index::IA32_SYSENTER_ESP, 0),
        m(msr_index::IA32_SYSENTER_EIP, 0),
    ]
}

/// Where option ROMs ([`PVH_ROM`], [`LINUX_ROM`]) are looked up, in this order: the
/// directory named by `VMRUN_OPTION_ROM_DIR` if set, then Debian's `qemu-system-data`
/// (`/usr/share/qemu`), then the upstream QEMU install prefix.
pub const OPTION_ROM_DIRS: &[&str] = &[
    "/usr/share/qemu",
    "/usr/local/share/qemu",
    "/usr/share/seabios",
];
/// QEMU's option ROM that enters a PVH ELF already in RAM (reads the entry point and
/// the command line from fw_cfg, the memory map from int 15h e820).
pub const PVH_ROM: &str = "pvh.bin";
/// QEMU's option ROM that copies a bzImage's setup, kernel, command line and initrd
/// from fw_cfg (DMA) and enters the setup code.
pub const LINUX_ROM: &str = "linuxboot_dma.bin";

/// Finds option ROM `name` (see [`OPTION_ROM_DIRS`]).
pub fn find_option_rom(name: &str) -> Result<std::path::PathBuf, FirmwareError> {
    let env = std::env::var_os("VMRUN_OPTION_ROM_DIR").map(std::path::PathBuf::from);
    let dirs: Vec<std::path::PathBuf> = env
        .into_iter()
        .chain(OPTION_ROM_DIRS.iter().map(std::path::PathBuf::from))
        .collect();
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| FirmwareError::NoOptionRom {
            name: name.to_string(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A kernel handed to the firmware as a bootable payload, the way QEMU's `-kernel`
/// does with a BIOS: an option ROM the firmware loads from fw_cfg (`genroms/NAME`,
/// first in `bootorder`), plus the fw_cfg items that ROM reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// File name of the option ROM (under [`OPTION_ROM_DIRS`]).
    pub rom: &'static str,
    /// Fixed fw_cfg items `(key, data)` to add (empty for a bzImage: the fw_cfg device
    /// adds the linuxboot items itself from the spec).
    pub items: Vec<(u16, Vec<u8>)>,
    /// The `bootorder` file that puts the ROM first (NUL-terminated, as QEMU ends it).
    pub bootorder: String,
    /// `[start, end)` the kernel occupies in guest RAM, for a PVH kernel.
    pub loaded: Option<(u64, u64)>,
}

impl Payload {
    /// The fw_cfg file the ROM is served as.
    pub fn rom_file(&self) -> String {
        format!("genroms/{}", self.rom)
    }
}

/// Prepares `kernel` for a firmware boot. A bzImage is left to the linuxboot ROM; a PVH
/// ELF is copied into guest RAM now (as QEMU's ELF loader does: pvh.bin loads nothing
/// itself), below `ram_end`, and its entry, placement and command line become fw_cfg
/// items. QEMU's pvh.bin passes no modules, so an initrd is refused for a PVH kernel.
pub fn prepare_payload(
    mem: &GuestMemoryMmap,
    kernel: &[u8],
    has_initrd: bool,
    cmdline: &str,
    ram_end: u64,
) -> Result<Payload, FirmwareError> {
    use crate::boot::linux::{load_kernel, KernelKind};
    use crate::devices::fw_cfg::{
        FW_CFG_CMDLINE_DATA, FW_CFG_CMDLINE_SIZE, FW_CFG_KERNEL_ADDR, FW_CFG_KERNEL_ENTRY,
        FW_CFG_KERNEL_SIZE,
    };
    if crate::boot::bzimage::is_bzimage(kernel) {
        return Ok(Payload {
            rom: LINUX_ROM,
            items: Vec::new(),
            bootorder: format!("/rom@genroms/{LINUX_ROM}\0"),
            loaded: None,
        });
    }
    if has_initrd {
        return Err(FirmwareError::PvhInitrd);
    }
    if cmdline.contains('\0') {
        return Err(FirmwareError::Payload(
            "the command line contains a NUL".into(),
        ));
    }
    let k = load_kernel(mem, kernel, ram_end)
        .map_err(|e| FirmwareError::Payload(crate::error_chain(&e)))?;
    if k.kind != KernelKind::Pvh {
        return Err(FirmwareError::Payload(
            "an ELF kernel needs a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) for firmware boot"
                .into(),
        ));
    }
    let u32_of = |v: u64, what: &str| {
        u32::try_from(v)
            .map_err(|_| FirmwareError::Payload(format!("{what} {v:#x} is above 4 GiB")))
    };
    let mut cmd = cmdline.as_bytes().to_vec();
    cmd.push(0);
    let items = vec![
        (
            FW_CFG_KERNEL_ENTRY,
            u32_of(k.entry, "the PVH entry")?.to_le_bytes().to_vec(),
        ),
        (
            FW_CFG_KERNEL_ADDR,
            u32_of(k.load_addr, "the load address")?
                .to_le_bytes()
                .to_vec(),
        ),
        (
            FW_CFG_KERNEL_SIZE,
            u32_of(k.end - k.load_addr, "the kernel size")?
                .to_le_bytes()
                .to_vec(),
        ),
        (
            FW_CFG_CMDLINE_SIZE,
            (cmd.len() as u32).to_le_bytes().to_vec(),
        ),
        (FW_CFG_CMDLINE_DATA, cmd),
    ];
    Ok(Payload {
        rom: PVH_ROM,
        items,
        bootorder: format!("/rom@genroms/{PVH_ROM}\0"),
        loaded: Some((k.load_addr, k.end)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn layout_of_common_sizes() {
        // SeaBIOS bios.bin: 128 KiB, all of it at 0xE0000.
        let l = FirmwareLayout::new(128 * 1024).unwrap();
        assert_eq!(l.rom_base, 0xfffe_0000);
        assert_eq!((l.legacy_base, l.legacy_offset), (0xe_0000, 0));
        assert_eq!(l.legacy_len(), 0x2_0000);
        // bios-256k.bin: all of it at 0xC0000 (its code starts at 0xD0000).
        let l = FirmwareLayout::new(256 * 1024).unwrap();
        assert_eq!(l.rom_base, 0xfffc_0000);
        assert_eq!((l.legacy_base, l.legacy_offset), (0xc_0000, 0));
        // A 2 MiB image: its top 256 KiB.
        let l = FirmwareLayout::new(2 << 20).unwrap();
        assert_eq!(
            (l.legacy_base, l.legacy_offset),
            (0xc_0000, (2 << 20) - 0x4_0000)
        );
        // A 64 KiB image: 0xF0000-0xFFFFF.
        let l = FirmwareLayout::new(64 * 1024).unwrap();
        assert_eq!(
            (l.rom_base, l.legacy_base, l.legacy_len()),
            (0xffff_0000, 0xf_0000, 0x1_0000)
        );
        // The largest image ends at 4 GiB and starts at 4 GiB - 16 MiB.
        let l = FirmwareLayout::new(FIRMWARE_MAX_SIZE).unwrap();
        assert_eq!(l.rom_base, 0xff00_0000);
        assert_eq!(l.legacy_offset, FIRMWARE_MAX_SIZE - LEGACY_MAX);
    }

    #[test]
    fn bad_sizes() {
        assert!(matches!(FirmwareLayout::new(0), Err(FirmwareError::Empty)));
        assert!(matches!(
            FirmwareLayout::new(FIRMWARE_MAX_SIZE + PAGE),
            Err(FirmwareError::TooLarge(_))
        ));
        assert!(matches!(
            FirmwareLayout::new(4097),
            Err(FirmwareError::NotPageSized(4097))
        ));
    }

    fn ram(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

    #[test]
    fn legacy_copy_is_the_top_of_the_image() {
        let mem = ram(2 << 20);
        let mut image = vec![0u8; 512 * 1024];
        for (i, b) in image.iter_mut().enumerate() {
            *b = (i / 4096) as u8 | 1;
        }
        // The reset vector's far jump sits 16 bytes below the end.
        let n = image.len();
        image[n - 16] = 0xea;
        let s = setup(&mem, &image).unwrap();
        assert_eq!(s.entry, BootEntry::ResetVector);
        let mut got = vec![0u8; 256 * 1024];
        mem.read_slice(&mut got, GuestAddress(0xc_0000)).unwrap();
        assert_eq!(got[..], image[256 * 1024..]);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xf_fff0)).unwrap(), 0xea);
        // Nothing else below 1 MiB is touched.
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xb_ffff)).unwrap(), 0);
    }

    #[test]
    fn no_low_ram_is_an_error() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x8_0000)]).unwrap();
        assert!(mem.last_addr().0 < 0xe_0000);
        let e = setup(&mem, &vec![0u8; 4096]).unwrap_err();
        assert!(
            matches!(e, FirmwareError::Legacy { addr: 0xf_f000, .. }),
            "{e}"
        );
    }

    fn item(p: &Payload, key: u16) -> &[u8] {
        &p.items.iter().find(|(k, _)| *k == key).unwrap().1
    }

    #[test]
    fn pvh_payload_is_loaded_and_described() {
        use crate::boot::testimg::{elf, pvh_note, Seg};
        use crate::devices::fw_cfg::*;
        let mem = ram(4 << 20);
        let code = vec![0x90u8; 0x1800];
        let img = elf(
            true,
            62,
            0x20_0000,
            &[Seg {
                paddr: 0x10_0000,
                data: code.clone(),
                memsz: 0x3000,
            }],
            &[pvh_note(0x10_0040)],
        );
        let p = prepare_payload(&mem, &img, false, "cpus=2 x", 4 << 20).unwrap();
        assert_eq!(p.rom, PVH_ROM);
        assert_eq!(p.rom_file(), "genroms/pvh.bin");
        assert_eq!(p.bootorder, "/rom@genroms/pvh.bin\0");
        assert_eq!(p.loaded, Some((0x10_0000, 0x10_3000)));
        assert_eq!(item(&p, FW_CFG_KERNEL_ENTRY), 0x10_0040u32.to_le_bytes());
        assert_eq!(item(&p, FW_CFG_KERNEL_ADDR), 0x10_0000u32.to_le_bytes());
        assert_eq!(item(&p, FW_CFG_KERNEL_SIZE), 0x3000u32.to_le_bytes());
        assert_eq!(item(&p, FW_CFG_CMDLINE_SIZE), 9u32.to_le_bytes());
        assert_eq!(item(&p, FW_CFG_CMDLINE_DATA), b"cpus=2 x\0");
        let mut got = vec![0u8; code.len()];
        mem.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(got, code);
        // pvh.bin hands over no modules.
        assert!(matches!(
            prepare_payload(&mem, &img, true, "", 4 << 20),
            Err(FirmwareError::PvhInitrd)
        ));
        // An ELF without the PVH note has no 32-bit entry the ROM could jump to.
        let plain = elf(
            true,
            62,
            0x10_0000,
            &[Seg {
                paddr: 0x10_0000,
                data: code,
                memsz: 0x2000,
            }],
            &[],
        );
        let e = prepare_payload(&mem, &plain, false, "", 4 << 20).unwrap_err();
        assert!(e.to_string().contains("PVH entry note"), "{e}");
        assert!(prepare_payload(&mem, b"junk", false, "", 4 << 20).is_err());
    }

    #[test]
    fn bzimage_payload_uses_linuxboot() {
        let mem = ram(4 << 20);
        let img = crate::boot::testimg::BzImageSpec::default().build();
        let p = prepare_payload(&mem, &img, true, "console=ttyS0", 4 << 20).unwrap();
        assert_eq!(p.rom, LINUX_ROM);
        assert!(p.items.is_empty());
        assert_eq!(p.loaded, None);
        assert_eq!(p.bootorder, "/rom@genroms/linuxboot_dma.bin\0");
    }

    #[test]
    fn option_rom_lookup_names_what_it_searched() {
        let e = find_option_rom("no-such-rom.bin").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/usr/share/qemu") && msg.contains("qemu-system-data"),
            "{msg}"
        );
    }

    /// The RAM sizes SeaBIOS computes from our CMOS when fw_cfg has no `etc/e820`
    /// (its `qemu_preinit` / `qemu_cfg_e820` arithmetic), and the boot-order bytes.
    #[test]
    fn seabios_reads_cmos_ram_sizes() {
        use crate::devices::cmos::{BootDevice, Cmos, CmosLayout, HostWallClock};
        use crate::devices::{BusDevice, NoIrq};
        const MIB: u64 = 1 << 20;
        let cmos = |below: u64, above: u64| {
            let layout = CmosLayout {
                ram_below_4g: below,
                ram_above_4g: above,
                cpus: 4,
                boot_order: vec![BootDevice::Disk],
            };
            Cmos::new(&layout, Box::new(HostWallClock), std::sync::Arc::new(NoIrq))
        };
        let rd = |c: &mut Cmos, i: u8| {
            c.write(0, 0, &[i]);
            let mut b = [0u8];
            c.read(0, 1, &mut b);
            u64::from(b[0])
        };
        // (below 4 GiB, above 4 GiB): pc 10 MiB, pc 512 MiB, q35 5 GiB, pc 3.5 GiB + 1 GiB.
        for (below, above) in [
            (10 * MIB, 0),
            (512 * MIB, 0),
            (2048 * MIB, 3072 * MIB),
            (3584 * MIB, 1024 * MIB),
        ] {
            let mut c = cmos(below, above);
            let ext2 = (rd(&mut c, 0x34) << 16) | (rd(&mut c, 0x35) << 24);
            let ram = if ext2 != 0 {
                ext2 + 16 * MIB
            } else {
                ((rd(&mut c, 0x30) << 10) | (rd(&mut c, 0x31) << 18)) + MIB
            };
            assert_eq!(ram, below, "RamSize for {below:#x}");
            let high =
                (rd(&mut c, 0x5b) << 16) | (rd(&mut c, 0x5c) << 24) | (rd(&mut c, 0x5d) << 32);
            assert_eq!(high, above, "RamSizeOver4G for {above:#x}");
            assert_eq!(rd(&mut c, 0x5f) + 1, 4, "CPU count");
            // Boot order: hard disk first (0x3d low nibble = 2), no floppy signature
            // check (0x38 bit 0), as SeaBIOS's boot_init decodes them.
            assert_eq!(rd(&mut c, 0x3d) & 0xf, 2);
            assert_eq!(rd(&mut c, 0x38) & 1, 1);
        }
    }

    #[test]
    fn reset_state_msrs_disable_mtrrs() {
        let m = reset_msrs();
        let def = m
            .iter()
            .find(|e| e.index == msr_index::IA32_MTRR_DEF_TYPE)
            .unwrap();
        assert_eq!(def.data, 0);
    }
}
