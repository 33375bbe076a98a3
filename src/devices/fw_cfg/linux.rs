//! The items a firmware-driven Linux boot reads (QEMU's `-kernel` with a BIOS): the
//! real-mode setup code with its header patched the way a boot loader patches it, the
//! protected-mode kernel, the initrd and the command line, each with its load address
//! and size. A linuxboot option ROM (QEMU's `linuxboot_dma.bin`) copies them into place
//! and jumps to the setup code; SeaBIOS runs such a ROM when it finds it.
//!
//! Layout (boot protocol >= 2.02, LOADED_HIGH, as QEMU places a modern bzImage): setup
//! at 0x10000, command line at 0x20000, kernel at 1 MiB, the initrd as high as the
//! kernel's `initrd_addr_max` and the RAM below 4 GiB (minus room the firmware keeps
//! for ACPI tables) allow, page-aligned.

use super::*;

/// Where the setup code (the "real-mode kernel") is copied.
pub const LINUX_REAL_ADDR: u32 = 0x1_0000;
/// Where the command line is copied.
pub const LINUX_CMDLINE_ADDR: u32 = 0x2_0000;
/// Where the protected-mode kernel is copied.
pub const LINUX_PROT_ADDR: u32 = 0x10_0000;
/// RAM at the top of the low memory the firmware keeps for its ACPI tables (QEMU
/// reserves 128 KiB + 32 KiB on pc).
const ACPI_DATA_SIZE: u64 = 0x2_0000 + 0x8000;

const HDR_SETUP_SECTS: usize = 0x1f1;
const HDR_MAGIC: usize = 0x202;
const HDR_VERSION: usize = 0x206;
const HDR_TYPE_OF_LOADER: usize = 0x210;
const HDR_LOADFLAGS: usize = 0x211;
const HDR_RAMDISK_IMAGE: usize = 0x218;
const HDR_RAMDISK_SIZE: usize = 0x21c;
const HDR_HEAP_END_PTR: usize = 0x224;
const HDR_CMD_LINE_PTR: usize = 0x228;
const HDR_INITRD_ADDR_MAX: usize = 0x22c;
const LOADED_HIGH: u8 = 1;
const CAN_USE_HEAP: u8 = 0x80;
/// "undefined" boot loader with extended ID (QEMU uses the same).
const LOADER_ID: u8 = 0xb0;

/// A bzImage split the way the option ROM wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxImage {
    /// The setup sectors with the header patched (cmdline, heap, initrd).
    pub setup: Vec<u8>,
    /// The protected-mode kernel.
    pub kernel: Vec<u8>,
    /// Where the initrd goes (0 without one).
    pub initrd_addr: u32,
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

impl LinuxImage {
    /// Splits and patches `image`; `initrd_len` is the initrd's size (0 for none) and
    /// `ram_below_4g` the RAM the firmware sees below the PCI hole.
    pub fn split(image: &[u8], initrd_len: usize, ram_below_4g: u64) -> Result<Self, FwCfgError> {
        let bad = |s: &str| FwCfgError::Kernel(s.to_string());
        if image.len() < 0x400 || rd32(image, HDR_MAGIC) != 0x5372_6448 {
            return Err(bad("not a bzImage (no \"HdrS\" setup header)"));
        }
        let version = rd16(image, HDR_VERSION);
        if version < 0x0202 || image[HDR_LOADFLAGS] & LOADED_HIGH == 0 {
            return Err(bad("boot protocol before 2.02 or not loaded high (zImage)"));
        }
        let sects = match image[HDR_SETUP_SECTS] {
            0 => 4,
            n => n as usize,
        };
        let setup_len = (sects + 1) * 512;
        if image.len() <= setup_len {
            return Err(bad("the file ends inside the setup code"));
        }
        let mut setup = image[..setup_len].to_vec();
        let kernel = image[setup_len..].to_vec();
        setup[HDR_TYPE_OF_LOADER] = LOADER_ID;
        wr32(&mut setup, HDR_CMD_LINE_PTR, LINUX_CMDLINE_ADDR);
        if version >= 0x0201 {
            wr16(
                &mut setup,
                HDR_HEAP_END_PTR,
                (LINUX_CMDLINE_ADDR - LINUX_REAL_ADDR - 0x200) as u16,
            );
            setup[HDR_LOADFLAGS] |= CAN_USE_HEAP;
        }
        let mut initrd_addr = 0u32;
        if initrd_len > 0 {
            let mut max = if version >= 0x0203 {
                u64::from(rd32(image, HDR_INITRD_ADDR_MAX))
            } else {
                0x37ff_ffff
            };
            let top = ram_below_4g.saturating_sub(ACPI_DATA_SIZE);
            if max >= top {
                max = top.saturating_sub(1);
            }
            let len = initrd_len as u64;
            if len >= max || max - len < u64::from(LINUX_PROT_ADDR) + kernel.len() as u64 {
                return Err(bad("the initrd does not fit below initrd_addr_max"));
            }
            initrd_addr = ((max - len) & !0xfff) as u32;
            wr32(&mut setup, HDR_RAMDISK_IMAGE, initrd_addr);
            wr32(&mut setup, HDR_RAMDISK_SIZE, initrd_len as u32);
        }
        Ok(LinuxImage {
            setup,
            kernel,
            initrd_addr,
        })
    }
}

impl FwCfgItems {
    /// Adds the linuxboot items for a bzImage `image`, its initrd and command line.
    pub fn add_linux(
        &mut self,
        image: &[u8],
        initrd: Option<&[u8]>,
        cmdline: &str,
        ram_below_4g: u64,
    ) -> Result<(), FwCfgError> {
        let initrd = initrd.unwrap_or(&[]);
        let too_big = |name: &str, len: usize| FwCfgError::TooBig {
            name: name.to_string(),
            len,
        };
        let l = LinuxImage::split(image, initrd.len(), ram_below_4g)?;
        let klen = u32::try_from(l.kernel.len()).map_err(|_| too_big("kernel", l.kernel.len()))?;
        let ilen = u32::try_from(initrd.len()).map_err(|_| too_big("initrd", initrd.len()))?;
        let mut cmd = cmdline.as_bytes().to_vec();
        cmd.push(0);
        self.add_u32(FW_CFG_SETUP_ADDR, LINUX_REAL_ADDR);
        self.add_u32(FW_CFG_SETUP_SIZE, l.setup.len() as u32);
        self.add_item(FW_CFG_SETUP_DATA, l.setup);
        self.add_u32(FW_CFG_KERNEL_ADDR, LINUX_PROT_ADDR);
        self.add_u32(FW_CFG_KERNEL_SIZE, klen);
        self.add_item(FW_CFG_KERNEL_DATA, l.kernel);
        self.add_u32(FW_CFG_CMDLINE_ADDR, LINUX_CMDLINE_ADDR);
        self.add_u32(FW_CFG_CMDLINE_SIZE, cmd.len() as u32);
        self.add_item(FW_CFG_CMDLINE_DATA, cmd);
        self.add_u32(FW_CFG_INITRD_ADDR, l.initrd_addr);
        self.add_u32(FW_CFG_INITRD_SIZE, ilen);
        self.add_item(FW_CFG_INITRD_DATA, initrd.to_vec());
        Ok(())
    }
}
