//! bzImage: the Linux/x86 boot protocol's setup header and protected-mode kernel.
//!
//! A bzImage starts with the real-mode setup code (`setup_sects` 512-byte sectors after
//! the boot sector; 0 means 4), whose setup header sits at 0x1F1 and is recognised by
//! `boot_flag` 0xAA55 at 0x1FE and the "HdrS" magic at 0x202. The protected-mode kernel
//! follows the setup code and is what we copy into guest memory: we boot through the
//! 64-bit entry (load address + 0x200) and never run the setup code.
//!
//! Checks we own (Documentation/arch/x86/boot.rst):
//!
//! * protocol >= 2.06. The 64-bit entry exists in every x86_64 bzImage, but 2.06 is the
//!   first protocol that states `cmdline_size`, which we need to tell the user their
//!   command line is too long instead of letting the kernel truncate it silently.
//!   Older images (2.02 from 2.4-era kernels) are refused with that reason.
//! * protocol >= 2.12: `xloadflags` must have XLF_KERNEL_64, or the image has no 64-bit
//!   entry (a 32-bit kernel); between 2.06 and 2.11 the flag does not exist yet and we
//!   trust the 64-bit entry (all x86_64 kernels of that era have it).
//! * `loadflags` LOADED_HIGH: the kernel runs at 1 MiB or above (a zImage is refused).
//! * the load address: `pref_address` (2.10+) when it is free, else, for a relocatable
//!   kernel, the lowest `kernel_alignment`-aligned address in high memory; 1 MiB for
//!   pre-2.10 kernels. The kernel then needs `init_size` bytes (2.10+) from there, which
//!   must fit in RAM below the 32-bit hole.
//! * `syssize` (2.04+) must not claim more payload than the file holds (truncated image).
//!
//! The header is read into rust-vmm linux-loader's `setup_header` (the kernel's own
//! struct, zero past the image's protocol version). Loading stays ours: linux-loader's
//! `BzImage::load` places the kernel at `code32_start` or a caller's offset and knows
//! neither `pref_address`, `init_size`, the relocation rule nor the version gates above,
//! and it can't run at `vmrun check` time, before guest memory exists.

use linux_loader::loader::bootparam::setup_header;
use thiserror::Error;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::arch::x86_64::layout::HIGH_MEMORY_START;

/// Offset of the setup header in the image and in the zero page.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Size of `struct setup_header` as of protocol 2.15.
pub const SETUP_HEADER_SIZE: usize = std::mem::size_of::<setup_header>();
/// "HdrS".
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// The boot sector signature.
pub const BOOT_FLAG: u16 = 0xaa55;
/// Offset of the 64-bit entry point from the protected-mode kernel's load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// loadflags: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 1 << 0;
/// loadflags: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// xloadflags: the kernel has the 64-bit entry at +0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// Oldest protocol we boot.
pub const MIN_PROTOCOL: u16 = 0x0206;

/// Why an image cannot be booted as a bzImage.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BzImageError {
    /// The file ends inside the setup header or setup code.
    #[error("bzImage is truncated: {what} needs {needed} bytes, the file has {len}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// File size.
        len: u64,
    },
    /// The jump at 0x200 says the header ends before its own version field.
    #[error("bzImage setup header is malformed: the jump at 0x200 ends it at {0:#x}, before the version field")]
    MalformedHeader(usize),
    /// "HdrS" present but the boot sector signature is not.
    #[error("bzImage boot_flag is {0:#06x}, expected 0xaa55 (corrupt setup header)")]
    BadBootFlag(u16),
    /// Protocol older than [`MIN_PROTOCOL`].
    #[error(
        "bzImage boot protocol {}.{:02} is too old: 64-bit boot needs 2.06 or newer \
         (the first version that states cmdline_size)",
        .0 >> 8, .0 & 0xff
    )]
    ProtocolTooOld(u16),
    /// Protocol 2.12+ without XLF_KERNEL_64.
    #[error("bzImage has no 64-bit entry point (xloadflags {0:#x} lacks XLF_KERNEL_64): a 32-bit kernel?")]
    No64BitEntry(u16),
    /// A zImage (loaded at 0x10000).
    #[error("zImage kernels (loadflags without LOADED_HIGH) are not supported; build a bzImage")]
    NotLoadedHigh,
    /// kernel_alignment is not a power of two.
    #[error("bzImage kernel_alignment {0:#x} is not a power of two")]
    BadAlignment(u32),
    /// The kernel does not fit below the 32-bit hole.
    #[error(
        "kernel needs {size:#x} bytes (init_size) at {addr:#x}, but RAM below 4 GiB ends at {ram_end:#x}"
    )]
    DoesNotFit {
        /// Load address tried.
        addr: u64,
        /// Bytes needed.
        size: u64,
        /// Top of low RAM.
        ram_end: u64,
    },
    /// Copy into guest memory failed.
    #[error("cannot copy the kernel into guest memory: {0}")]
    Memory(String),
}

impl From<GuestMemoryError> for BzImageError {
    fn from(e: GuestMemoryError) -> Self {
        BzImageError::Memory(e.to_string())
    }
}

/// The parts of the setup header loading depends on, plus the raw header bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// Raw bytes from 0x1F1 to the end of this version's header (as the protocol says to
    /// copy them into the zero page).
    pub raw: Vec<u8>,
    /// Protocol version (major << 8 | minor).
    pub version: u16,
    /// Number of setup sectors (0 already turned into 4).
    pub setup_sects: u64,
    /// loadflags.
    pub loadflags: u8,
    /// Protected-mode payload size from `syssize` (2.04+), in bytes.
    pub syssize: Option<u64>,
    /// Highest address the initrd may end at (inclusive); 0x37FFFFFF before 2.03.
    pub initrd_addr_max: u32,
    /// Kernel alignment (2.05+), `relocatable_kernel` (2.05+).
    pub kernel_alignment: u32,
    /// Whether the kernel may be loaded anywhere aligned.
    pub relocatable: bool,
    /// Extended load flags (2.12+).
    pub xloadflags: u16,
    /// Maximum command line length without the NUL (255 before 2.06).
    pub cmdline_size: u32,
    /// Preferred load address (2.10+; 1 MiB otherwise).
    pub pref_address: u64,
    /// Linear memory the kernel needs from its load address (2.10+).
    pub init_size: Option<u64>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// True if `image` carries the "HdrS" setup header magic at 0x202.
pub fn is_bzimage(image: &[u8]) -> bool {
    image.len() >= 0x206 && le32(image, 0x202) == HDRS_MAGIC
}

/// Reads and checks the setup header of `image`.
pub fn parse_header(image: &[u8]) -> Result<SetupHeader, BzImageError> {
    let truncated = |what, needed: usize| BzImageError::Truncated {
        what,
        needed: needed as u64,
        len: image.len() as u64,
    };
    if image.len() < 0x206 {
        return Err(truncated("the setup header", 0x206));
    }
    // The header ends at 0x202 + the byte operand of the jump at 0x200.
    let hdr_end = (0x202 + usize::from(image[0x201])).min(SETUP_HEADER_OFFSET + SETUP_HEADER_SIZE);
    if hdr_end < 0x208 {
        return Err(BzImageError::MalformedHeader(hdr_end));
    }
    if image.len() < hdr_end {
        return Err(truncated("the setup header", hdr_end));
    }
    // linux-loader's `setup_header` (the kernel's struct), zero past this version's
    // header, which is what the protocol says a field it does not have reads as.
    let raw = image[SETUP_HEADER_OFFSET..hdr_end].to_vec();
    let mut h = setup_header::default();
    h.as_mut_slice()[..raw.len()].copy_from_slice(&raw);
    // Copies of the packed fields.
    let (magic, boot_flag, version) = ({ h.header }, { h.boot_flag }, { h.version });
    if magic != HDRS_MAGIC {
        return Err(truncated("the HdrS magic", 0x206));
    }
    if boot_flag != BOOT_FLAG {
        return Err(BzImageError::BadBootFlag(boot_flag));
    }
    if version < MIN_PROTOCOL {
        return Err(BzImageError::ProtocolTooOld(version));
    }
    let loadflags = h.loadflags;
    if loadflags & LOADED_HIGH == 0 {
        return Err(BzImageError::NotLoadedHigh);
    }
    let xloadflags = if version >= 0x020c { h.xloadflags } else { 0 };
    if version >= 0x020c && xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BzImageError::No64BitEntry(xloadflags));
    }
    let setup_sects = match h.setup_sects {
        0 => 4,
        n => u64::from(n),
    };
    let kernel_alignment = h.kernel_alignment;
    let relocatable = h.relocatable_kernel != 0;
    if relocatable && !kernel_alignment.is_power_of_two() {
        return Err(BzImageError::BadAlignment(kernel_alignment));
    }
    let (pref_address, init_size) = if version >= 0x020a {
        (h.pref_address, Some(u64::from(h.init_size)))
    } else {
        (HIGH_MEMORY_START, None)
    };
    let hdr = SetupHeader {
        raw,
        version,
        setup_sects,
        loadflags,
        syssize: Some(u64::from(h.syssize) * 16),
        initrd_addr_max: h.initrd_addr_max,
        kernel_alignment,
        relocatable,
        xloadflags,
        cmdline_size: h.cmdline_size,
        pref_address,
        init_size,
    };
    let setup_end = (hdr.setup_sects + 1) * 512;
    if (image.len() as u64) <= setup_end {
        return Err(truncated("the setup code", setup_end as usize + 1));
    }
    if let Some(sys) = hdr.syssize {
        if setup_end + sys > image.len() as u64 {
            return Err(truncated(
                "the protected-mode kernel (syssize)",
                (setup_end + sys) as usize,
            ));
        }
    }
    Ok(hdr)
}

/// Where a bzImage went in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImageLoad {
    /// Load address of the protected-mode kernel.
    pub load_addr: u64,
    /// End of the memory the kernel claims (load + max(init_size, payload)).
    pub end: u64,
    /// 64-bit entry point.
    pub entry: u64,
}

fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

/// Chooses the load address and copies the protected-mode kernel there. `ram_end` is
/// the top of RAM below the 32-bit hole.
pub fn load(
    mem: &GuestMemoryMmap,
    image: &[u8],
    hdr: &SetupHeader,
    ram_end: u64,
) -> Result<BzImageLoad, BzImageError> {
    let payload = &image[((hdr.setup_sects + 1) * 512) as usize..];
    let need = hdr.init_size.unwrap_or(0).max(payload.len() as u64);
    let fits = |addr: u64| addr >= HIGH_MEMORY_START && addr.saturating_add(need) <= ram_end;

    let preferred = hdr.pref_address;
    let addr = if fits(preferred) {
        preferred
    } else if hdr.relocatable {
        let align = u64::from(hdr.kernel_alignment.max(1));
        let lowest = align_up(HIGH_MEMORY_START, align);
        if fits(lowest) {
            lowest
        } else {
            return Err(BzImageError::DoesNotFit {
                addr: lowest,
                size: need,
                ram_end,
            });
        }
    } else {
        return Err(BzImageError::DoesNotFit {
            addr: preferred,
            size: need,
            ram_end,
        });
    };
    mem.write_slice(payload, GuestAddress(addr))?;
    Ok(BzImageLoad {
        load_addr: addr,
        end: addr + need,
        entry: addr + ENTRY_64_OFFSET,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::testimg::BzImageSpec;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap()
    }

    #[test]
    fn protocol_2_15_header_fields() {
        let img = BzImageSpec::default().build();
        assert!(is_bzimage(&img));
        let h = parse_header(&img).unwrap();
        assert_eq!(h.version, 0x020f);
        assert_eq!(h.raw.len(), 0x26c - 0x1f1, "copied up to the jump target");
        assert_eq!(
            (h.setup_sects, h.pref_address, h.init_size),
            (2, 0x100_0000, Some(0x40_0000))
        );
        assert_eq!(
            (h.cmdline_size, h.xloadflags, h.relocatable),
            (2047, 3, true)
        );
    }

    #[test]
    fn protocol_2_02_is_rejected_with_the_reason() {
        let img = BzImageSpec {
            version: 0x0202,
            ..Default::default()
        }
        .build();
        let err = parse_header(&img).unwrap_err();
        assert_eq!(err, BzImageError::ProtocolTooOld(0x0202));
        assert!(err.to_string().contains("2.02 is too old"), "{err}");
        assert!(err.to_string().contains("2.06"), "{err}");
    }

    #[test]
    fn protocol_2_10_loads_at_pref_address_without_xloadflags() {
        let img = BzImageSpec {
            version: 0x020a,
            xloadflags: 0,
            ..Default::default()
        }
        .build();
        let h = parse_header(&img).unwrap();
        assert_eq!(h.xloadflags, 0);
        let l = load(&mem(), &img, &h, 64 << 20).unwrap();
        assert_eq!(
            l,
            BzImageLoad {
                load_addr: 0x100_0000,
                end: 0x140_0000,
                entry: 0x100_0200
            }
        );
    }

    #[test]
    fn protocol_2_06_loads_at_1mib() {
        let img = BzImageSpec {
            version: 0x0206,
            ..Default::default()
        }
        .build();
        let h = parse_header(&img).unwrap();
        assert_eq!((h.pref_address, h.init_size), (0x10_0000, None));
        let m = mem();
        let l = load(&m, &img, &h, 64 << 20).unwrap();
        assert_eq!((l.load_addr, l.end), (0x10_0000, 0x10_3000));
        let mut b = [0u8; 4];
        m.read_slice(&mut b, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(b, [0, 1, 2, 3], "payload starts after (setup_sects+1)*512");
    }

    #[test]
    fn xloadflags_without_kernel_64_is_a_32_bit_kernel() {
        let img = BzImageSpec {
            version: 0x020c,
            xloadflags: 0x2,
            ..Default::default()
        }
        .build();
        assert_eq!(
            parse_header(&img).unwrap_err(),
            BzImageError::No64BitEntry(2)
        );
    }

    #[test]
    fn setup_sects_zero_means_four() {
        let img = BzImageSpec {
            setup_sects: 0,
            ..Default::default()
        }
        .build();
        assert_eq!(parse_header(&img).unwrap().setup_sects, 4);
    }

    #[test]
    fn malformed_headers() {
        let mut img = BzImageSpec::default().build();
        img[0x1fe] = 0;
        assert_eq!(
            parse_header(&img).unwrap_err(),
            BzImageError::BadBootFlag(0xaa00)
        );
        let img = BzImageSpec {
            loadflags: 0,
            ..Default::default()
        }
        .build();
        assert_eq!(parse_header(&img).unwrap_err(), BzImageError::NotLoadedHigh);
        let img = BzImageSpec {
            kernel_alignment: 0x30_0000,
            ..Default::default()
        }
        .build();
        assert_eq!(
            parse_header(&img).unwrap_err(),
            BzImageError::BadAlignment(0x30_0000)
        );
        let mut img = BzImageSpec::default().build();
        img[0x201] = 2;
        assert_eq!(
            parse_header(&img).unwrap_err(),
            BzImageError::MalformedHeader(0x204)
        );
        let img = BzImageSpec::default().build();
        let err = parse_header(&img[..img.len() - 16]).unwrap_err();
        assert!(matches!(err, BzImageError::Truncated { .. }), "{err}");
        assert!(matches!(
            parse_header(&img[..0x300]).unwrap_err(),
            BzImageError::Truncated { .. }
        ));
    }

    #[test]
    fn relocation_and_fit() {
        let spec = BzImageSpec {
            init_size: 0x80_0000,
            ..Default::default()
        };
        let img = spec.build();
        let h = parse_header(&img).unwrap();
        // pref_address 16 MiB + 8 MiB does not fit in 20 MiB: relocate to 2 MiB (alignment).
        let l = load(&mem(), &img, &h, 20 << 20).unwrap();
        assert_eq!(l.load_addr, 0x20_0000);
        let err = load(&mem(), &img, &h, 8 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                BzImageError::DoesNotFit {
                    size: 0x80_0000,
                    ..
                }
            ),
            "{err}"
        );
        let fixed = BzImageSpec {
            relocatable: false,
            init_size: 0x80_0000,
            ..Default::default()
        }
        .build();
        let h = parse_header(&fixed).unwrap();
        assert!(matches!(
            load(&mem(), &fixed, &h, 20 << 20).unwrap_err(),
            BzImageError::DoesNotFit {
                addr: 0x100_0000,
                ..
            }
        ));
    }
}
