//! The probe guest: a small C + assembly PVH image built from `firmware/` by
//! `build.rs` and embedded in the binary. Booted in a machine, it reports over
//! COM1 what the machine looks like from inside; the line format is the
//! contract documented in `firmware/README.md`.

/// The probe as an ELF64 image with a PVH (`XEN_ELFNOTE_PHYS32_ENTRY`) note,
/// linked to load at 1 MiB.
pub const PROBE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.elf"));

/// The embedded probe ELF image.
pub fn probe_elf() -> &'static [u8] {
    PROBE_ELF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn is_elf64_x86_64_executable() {
        let elf = probe_elf();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 2, "ELFCLASS64");
        assert_eq!(elf[5], 1, "little endian");
        assert_eq!(u16_at(elf, 16), 2, "ET_EXEC");
        assert_eq!(u16_at(elf, 18), 62, "EM_X86_64");
    }

    /// Walks the program headers: PT_LOAD segments start at 1 MiB and a
    /// PT_NOTE holds the Xen PVH entry note pointing into the first segment.
    #[test]
    fn has_pvh_entry_note_and_loads_at_1mib() {
        let elf = probe_elf();
        let phoff = u64_at(elf, 32) as usize;
        let phentsize = u16_at(elf, 54) as usize;
        let phnum = u16_at(elf, 56) as usize;
        let mut lowest_load = u64::MAX;
        let mut pvh_entry = None;
        for i in 0..phnum {
            let ph = &elf[phoff + i * phentsize..phoff + (i + 1) * phentsize];
            let (p_type, offset, paddr, filesz) = (
                u32_at(ph, 0),
                u64_at(ph, 8) as usize,
                u64_at(ph, 24),
                u64_at(ph, 32) as usize,
            );
            if p_type == 1 {
                lowest_load = lowest_load.min(paddr);
            }
            if p_type == 4 {
                let notes = &elf[offset..offset + filesz];
                let mut at = 0;
                while at + 12 <= notes.len() {
                    let namesz = u32_at(notes, at) as usize;
                    let descsz = u32_at(notes, at + 4) as usize;
                    let n_type = u32_at(notes, at + 8);
                    let name = &notes[at + 12..at + 12 + namesz];
                    let desc_at = at + 12 + namesz.div_ceil(4) * 4;
                    if name == b"Xen\0" && n_type == 18 {
                        pvh_entry = Some(match descsz {
                            4 => u32_at(notes, desc_at) as u64,
                            _ => u64_at(notes, desc_at),
                        });
                    }
                    at = desc_at + descsz.div_ceil(4) * 4;
                }
            }
        }
        assert_eq!(lowest_load, 0x10_0000);
        let entry = pvh_entry.expect("XEN_ELFNOTE_PHYS32_ENTRY note");
        assert!(
            (0x10_0000..0x1_0000_0000).contains(&entry),
            "entry {entry:#x}"
        );
    }
}
