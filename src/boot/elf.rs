//! ELF kernels: an x86_64 `vmlinux`, or any ELF (32- or 64-bit) carrying a PVH entry.
//!
//! We load every `PT_LOAD` segment at its physical address (`p_paddr`), copy `p_filesz`
//! bytes and zero the rest up to `p_memsz` (the bss: guest RAM is not guaranteed to be
//! zero after a reset). `PT_NOTE` segments are scanned for the Xen note
//! `XEN_ELFNOTE_PHYS32_ENTRY` (type 18, name "Xen"), whose descriptor is the 32-bit
//! physical entry of the PVH boot ABI; when it is present the PVH entry wins over
//! `e_entry`. Without it the image must be an ELF64 for x86_64 and `e_entry` is the
//! Linux 64-bit entry (`startup_64`, a physical address in vmlinux).
//!
//! Validation is ours (it runs at `vmrun check`, before any guest memory exists), and so
//! is the loading of 32-bit PVH ELFs; ELF64 segments are copied by rust-vmm's
//! `linux-loader`, which reads only ELF64 and checks neither bounds against RAM nor
//! notes past the first PT_NOTE, so it runs after our checks.
//!
//! Every offset and size read from the file is bounds-checked: a malformed file is an
//! error, never a panic. Segments must land in RAM between 1 MiB (our boot structures
//! live below) and the top of RAM below the 32-bit hole.

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::arch::x86_64::layout::HIGH_MEMORY_START;

/// ELF machine: x86_64.
pub const EM_X86_64: u16 = 62;
/// ELF machine: i386.
pub const EM_386: u16 = 3;
/// Xen note carrying the PVH 32-bit entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Why an ELF cannot be booted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    /// No "\x7fELF" magic.
    #[error("no \\x7fELF magic")]
    NotElf,
    /// EI_CLASS neither 1 (32-bit) nor 2 (64-bit).
    #[error("unknown ELF class {0}")]
    Class(u8),
    /// Big-endian file.
    #[error("ELF is big-endian; x86 kernels are little-endian")]
    BigEndian,
    /// Wrong architecture.
    #[error("ELF machine {0} is not x86 (expected 62 = x86_64, or 3 = i386 for PVH)")]
    Machine(u16),
    /// Not an executable.
    #[error("ELF type {0} is not an executable (ET_EXEC)")]
    Type(u16),
    /// rust-vmm's linux-loader refused the image.
    #[error("loading the ELF: {0}")]
    Loader(String),
    /// Something in the headers points outside the file or has a wrong size.
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    /// A segment does not fit where it must be loaded.
    #[error(
        "ELF segment [{start:#x}, {end:#x}) is outside usable RAM [{:#x}, {ram_end:#x})",
        HIGH_MEMORY_START
    )]
    SegmentOutsideRam {
        /// Segment start.
        start: u64,
        /// Segment end.
        end: u64,
        /// Top of RAM below the 32-bit hole.
        ram_end: u64,
    },
    /// Nothing to load.
    #[error("ELF has no PT_LOAD segment")]
    NoLoadSegments,
    /// A 32-bit ELF can only be started through PVH.
    #[error("32-bit ELF without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): no way to enter it")]
    Elf32WithoutPvh,
    /// The PVH note's descriptor is too short or the address is above 4 GiB.
    #[error("invalid PVH entry note: {0}")]
    BadPvhNote(&'static str),
    /// Writing guest memory failed.
    #[error("cannot copy the ELF into guest memory: {0}")]
    Memory(String),
}

impl From<GuestMemoryError> for ElfError {
    fn from(e: GuestMemoryError) -> Self {
        ElfError::Memory(e.to_string())
    }
}

/// One loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Offset in the file.
    pub offset: u64,
    /// Physical load address.
    pub paddr: u64,
    /// Bytes taken from the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zeroed).
    pub memsz: u64,
}

/// A parsed ELF image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    /// ELFCLASS64?
    pub is_64: bool,
    /// `e_entry`.
    pub entry: u64,
    /// The PVH entry from the Xen note, if any.
    pub pvh_entry: Option<u32>,
    /// Loadable segments.
    pub segments: Vec<Segment>,
}

impl ElfImage {
    /// Lowest and one-past-highest physical address the segments occupy.
    pub fn extent(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.paddr.saturating_add(s.memsz))
            .max()
            .unwrap_or(0);
        (lo, hi)
    }
}

/// True if `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

fn bytes<const N: usize>(b: &[u8], at: u64) -> Result<[u8; N], ElfError> {
    let at = usize::try_from(at).map_err(|_| ElfError::Malformed("offset past the file"))?;
    b.get(at..at.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Malformed(
            "header or note past the end of the file",
        ))
}
fn u16_at(b: &[u8], at: u64) -> Result<u16, ElfError> {
    Ok(u16::from_le_bytes(bytes(b, at)?))
}
fn u32_at(b: &[u8], at: u64) -> Result<u32, ElfError> {
    Ok(u32::from_le_bytes(bytes(b, at)?))
}
fn u64_at(b: &[u8], at: u64) -> Result<u64, ElfError> {
    Ok(u64::from_le_bytes(bytes(b, at)?))
}

/// Parses the ELF header, program headers and PVH note.
pub fn parse(image: &[u8]) -> Result<ElfImage, ElfError> {
    if !is_elf(image) {
        return Err(ElfError::NotElf);
    }
    let class = *image.get(4).ok_or(ElfError::NotElf)?;
    let is_64 = match class {
        1 => false,
        2 => true,
        c => return Err(ElfError::Class(c)),
    };
    if image.get(5) != Some(&1) {
        return Err(ElfError::BigEndian);
    }
    let e_type = u16_at(image, 16)?;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::Type(e_type));
    }
    let machine = u16_at(image, 18)?;
    let (entry, phoff, phentsize, phnum, want_phentsize) = if is_64 {
        (
            u64_at(image, 24)?,
            u64_at(image, 32)?,
            u16_at(image, 54)?,
            u16_at(image, 56)?,
            56,
        )
    } else {
        (
            u64::from(u32_at(image, 24)?),
            u64::from(u32_at(image, 28)?),
            u16_at(image, 42)?,
            u16_at(image, 44)?,
            32,
        )
    };
    let machine_ok = if is_64 {
        machine == EM_X86_64
    } else {
        machine == EM_386 || machine == EM_X86_64
    };
    if !machine_ok {
        return Err(ElfError::Machine(machine));
    }
    if phnum > 0 && phentsize != want_phentsize {
        return Err(ElfError::Malformed("program header entry size"));
    }

    let mut segments = Vec::new();
    let mut pvh_entry = None;
    for i in 0..u64::from(phnum) {
        let ph = phoff
            .checked_add(i * u64::from(want_phentsize))
            .ok_or(ElfError::Malformed("program header offset"))?;
        let p_type = u32_at(image, ph)?;
        let (offset, paddr, filesz, memsz) = if is_64 {
            (
                u64_at(image, ph + 8)?,
                u64_at(image, ph + 24)?,
                u64_at(image, ph + 32)?,
                u64_at(image, ph + 40)?,
            )
        } else {
            (
                u64::from(u32_at(image, ph + 4)?),
                u64::from(u32_at(image, ph + 12)?),
                u64::from(u32_at(image, ph + 16)?),
                u64::from(u32_at(image, ph + 20)?),
            )
        };
        let end = offset
            .checked_add(filesz)
            .ok_or(ElfError::Malformed("segment size overflows"))?;
        if end > image.len() as u64 {
            return Err(ElfError::Malformed(
                "segment extends past the end of the file",
            ));
        }
        match p_type {
            PT_LOAD if memsz > 0 => {
                if filesz > memsz {
                    return Err(ElfError::Malformed("segment p_filesz larger than p_memsz"));
                }
                segments.push(Segment {
                    offset,
                    paddr,
                    filesz,
                    memsz,
                });
            }
            PT_NOTE if pvh_entry.is_none() => {
                pvh_entry = find_pvh_note(&image[offset as usize..end as usize])?;
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegments);
    }
    if !is_64 && pvh_entry.is_none() {
        return Err(ElfError::Elf32WithoutPvh);
    }
    Ok(ElfImage {
        is_64,
        entry,
        pvh_entry,
        segments,
    })
}

/// Walks the notes of one PT_NOTE segment (`Elf_Nhdr` then name and descriptor, each
/// padded to 4 bytes) looking for the Xen PHYS32_ENTRY note.
fn find_pvh_note(notes: &[u8]) -> Result<Option<u32>, ElfError> {
    let pad4 = |n: u64| (n + 3) & !3;
    let mut at = 0u64;
    while at + 12 <= notes.len() as u64 {
        let namesz = u64::from(u32_at(notes, at)?);
        let descsz = u64::from(u32_at(notes, at + 4)?);
        let n_type = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at + pad4(namesz);
        let next = desc_at + pad4(descsz);
        if next > notes.len() as u64 {
            return Err(ElfError::Malformed("note extends past its segment"));
        }
        let name = &notes[name_at as usize..(name_at + namesz) as usize];
        if n_type == XEN_ELFNOTE_PHYS32_ENTRY && name == b"Xen\0" {
            let entry = match descsz {
                4 => u64::from(u32_at(notes, desc_at)?),
                8 => u64_at(notes, desc_at)?,
                _ => return Err(ElfError::BadPvhNote("descriptor is not 4 or 8 bytes")),
            };
            let entry = u32::try_from(entry)
                .map_err(|_| ElfError::BadPvhNote("entry point above 4 GiB"))?;
            return Ok(Some(entry));
        }
        at = next;
    }
    Ok(None)
}

/// Copies the segments of `elf` into guest memory; `ram_end` is the top of RAM below
/// the 32-bit hole. Returns the extent `[lowest, highest)` the kernel occupies.
pub fn load(
    mem: &GuestMemoryMmap,
    image: &[u8],
    elf: &ElfImage,
    ram_end: u64,
) -> Result<(u64, u64), ElfError> {
    for s in &elf.segments {
        let end = s.paddr.saturating_add(s.memsz);
        if s.paddr < HIGH_MEMORY_START || end > ram_end {
            return Err(ElfError::SegmentOutsideRam {
                start: s.paddr,
                end,
                ram_end,
            });
        }
    }
    if elf.is_64 {
        load_with_linux_loader(mem, image, elf)?;
    } else {
        for s in &elf.segments {
            // Bounds were checked by `parse`.
            let data = &image[s.offset as usize..(s.offset + s.filesz) as usize];
            mem.write_slice(data, GuestAddress(s.paddr))?;
        }
    }
    for s in &elf.segments {
        zero(mem, s.paddr + s.filesz, s.memsz - s.filesz)?;
    }
    Ok(elf.extent())
}

/// ELF64 segments go in through rust-vmm's linux-loader (PT_LOAD at `p_paddr`, the PVH
/// note), after [`parse`] validated every header and [`load`] the placement (which
/// linux-loader leaves to the caller). Its view of the PVH entry must agree with ours.
fn load_with_linux_loader(
    mem: &GuestMemoryMmap,
    image: &[u8],
    elf: &ElfImage,
) -> Result<(), ElfError> {
    use linux_loader::loader::{elf::Elf, elf::PvhBootCapability, KernelLoader};
    let mut reader = std::io::Cursor::new(image);
    let r = Elf::load(mem, None, &mut reader, None).map_err(|e| ElfError::Loader(e.to_string()))?;
    let theirs = match r.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(a) => u32::try_from(a.0).ok(),
        _ => None,
    };
    // linux-loader looks at the last PT_NOTE only; ours finds the note in any of them.
    if theirs.is_some() && theirs != elf.pvh_entry {
        return Err(ElfError::BadPvhNote("the PVH notes disagree"));
    }
    Ok(())
}

/// Zeroes `len` bytes of guest memory at `addr`. Pages that already read as zero (all
/// of fresh guest RAM) are left alone: reading an untouched page maps the kernel's
/// shared zero page, writing it would allocate a page for nothing and grow the VMM's
/// resident memory by the size of every bss.
pub fn zero(mem: &GuestMemoryMmap, addr: u64, len: u64) -> Result<(), GuestMemoryError> {
    const CHUNK: u64 = 4096;
    let zeros = [0u8; CHUNK as usize];
    let mut buf = [0u8; CHUNK as usize];
    let mut done = 0;
    while done < len {
        // Chunks end at page boundaries so a chunk never straddles two pages.
        let at = addr + done;
        let n = (len - done).min(CHUNK - at % CHUNK);
        let chunk = &mut buf[..n as usize];
        mem.read_slice(chunk, GuestAddress(at))?;
        if chunk.iter().any(|&b| b != 0) {
            mem.write_slice(&zeros[..n as usize], GuestAddress(at))?;
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::testimg::{elf, pvh_note, Note, Seg};

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap()
    }

    fn seg(paddr: u64, len: usize, memsz: u64) -> Seg {
        Seg {
            paddr,
            data: vec![0xab; len],
            memsz,
        }
    }

    #[test]
    fn plain_elf64_loads_and_zeroes_bss() {
        let img = elf(
            true,
            EM_X86_64,
            0x20_0000,
            &[seg(0x20_0000, 0x100, 0x2000)],
            &[],
        );
        let e = parse(&img).unwrap();
        assert_eq!((e.is_64, e.entry, e.pvh_entry), (true, 0x20_0000, None));
        let m = mem();
        m.write_slice(&[0xffu8; 16], GuestAddress(0x20_1000))
            .unwrap();
        assert_eq!(load(&m, &img, &e, 8 << 20).unwrap(), (0x20_0000, 0x20_2000));
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x20_00ff)).unwrap(), 0xab);
        assert_eq!(
            m.read_obj::<u64>(GuestAddress(0x20_1000)).unwrap(),
            0,
            "bss zeroed"
        );
    }

    #[test]
    fn pvh_note_wins_and_other_notes_are_skipped() {
        let other = Note {
            name: b"GNU\0".to_vec(),
            n_type: 3,
            desc: vec![1, 2, 3, 4, 5],
        };
        let img = elf(
            true,
            EM_X86_64,
            0x100_0000,
            &[seg(0x10_0000, 16, 16)],
            &[other, pvh_note(0x10_0004)],
        );
        assert_eq!(parse(&img).unwrap().pvh_entry, Some(0x10_0004));
    }

    #[test]
    fn elf32_needs_pvh() {
        let img = elf(
            false,
            EM_386,
            0x10_0000,
            &[seg(0x10_0000, 16, 16)],
            &[pvh_note(0x10_0000)],
        );
        let e = parse(&img).unwrap();
        assert_eq!((e.is_64, e.pvh_entry), (false, Some(0x10_0000)));
        let img = elf(false, EM_386, 0x10_0000, &[seg(0x10_0000, 16, 16)], &[]);
        assert_eq!(parse(&img).unwrap_err(), ElfError::Elf32WithoutPvh);
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        assert_eq!(parse(b"garbage").unwrap_err(), ElfError::NotElf);
        let good = elf(
            true,
            EM_X86_64,
            0x20_0000,
            &[seg(0x20_0000, 64, 64)],
            &[pvh_note(1)],
        );
        assert_eq!(
            parse(&elf(true, 183, 0, &[seg(0x20_0000, 1, 1)], &[])).unwrap_err(),
            ElfError::Machine(183)
        );
        let mut be = good.clone();
        be[5] = 2;
        assert_eq!(parse(&be).unwrap_err(), ElfError::BigEndian);
        // Every truncation of a valid file fails cleanly.
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_err(), "prefix {n}");
        }
        let bad_note = Note {
            name: b"Xen\0".to_vec(),
            n_type: 18,
            desc: vec![1, 2],
        };
        let img = elf(true, EM_X86_64, 0, &[seg(0x20_0000, 1, 1)], &[bad_note]);
        assert!(matches!(parse(&img).unwrap_err(), ElfError::BadPvhNote(_)));
        let img = elf(true, EM_X86_64, 0, &[seg(0x20_0000, 8, 4)], &[]);
        assert!(matches!(parse(&img).unwrap_err(), ElfError::Malformed(_)));
        let img = elf(true, EM_X86_64, 0, &[], &[]);
        assert_eq!(parse(&img).unwrap_err(), ElfError::NoLoadSegments);
    }

    #[test]
    fn segments_must_land_in_high_ram() {
        for paddr in [0x8000u64, 0x7f_f000] {
            let img = elf(true, EM_X86_64, paddr, &[seg(paddr, 16, 0x2000)], &[]);
            let e = parse(&img).unwrap();
            assert!(matches!(
                load(&mem(), &img, &e, 8 << 20).unwrap_err(),
                ElfError::SegmentOutsideRam { .. }
            ));
        }
    }
}
