//! ACPI tables built from the resolved [`MachineSpec`], in the two forms a guest gets
//! them:
//!
//! * direct boot: [`write_direct`] places the RSDP and the tables in guest RAM (the
//!   F-segment, where Linux's and the probe's RSDP scans look) with every pointer and
//!   checksum final; the boot module passes the RSDP address in the zero page and PVH
//!   start_info;
//! * firmware boot: [`AcpiTables::fw_cfg_files`] gives `etc/acpi/tables`,
//!   `etc/acpi/rsdp` and `etc/table-loader` for fw_cfg; the firmware allocates them and
//!   patches pointers and checksums as the loader script says ([`loader`]).
//!
//! Tables: RSDP (rev 2) → XSDT and RSDT → FADT (→ FACS, DSDT), MADT, MCFG (q35).
//! The tables file is laid out FACS (64-byte aligned) first, then the others; its
//! pointers hold offsets into itself until relocated.
//!
//! Why our own AML writer rather than the rust-vmm `acpi_tables` crate: a static DSDT
//! needs a dozen AML constructs (~300 lines here, unit-tested byte for byte), the crate
//! would add a pre-1.0 dependency whose table structs we would still have to wrap for
//! the table-loader form, and owning the bytes keeps `iasl -d` output under our control.

pub mod aml;
pub mod dsdt;
pub mod loader;
pub mod tables;

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::arch::x86_64::e820::{E820Entry, E820Type};
use crate::spec::MachineSpec;
use loader::Command;

/// fw_cfg file names of the firmware-boot form.
pub const TABLES_FILE: &str = "etc/acpi/tables";
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
pub const LOADER_FILE: &str = "etc/table-loader";

/// Where direct boot puts the tables: the F-segment (reserved in e820, inside the
/// 0xE0000-0xFFFFF RSDP scan range).
pub const DIRECT_BASE: u64 = 0xf_0000;
pub const DIRECT_END: u64 = 0x10_0000;

#[derive(Debug, Error)]
pub enum AcpiError {
    #[error("the ACPI tables ({size} bytes) do not fit in {room} bytes at {base:#x}")]
    TooLarge { size: u64, room: u64, base: u64 },
    #[error("writing the ACPI tables to guest memory")]
    Memory(#[from] GuestMemoryError),
}

/// The byte sum of `bytes`.
pub fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Which file a pointer or checksum lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Tables,
    Rsdp,
}

impl File {
    fn name(self) -> &'static str {
        match self {
            File::Tables => TABLES_FILE,
            File::Rsdp => RSDP_FILE,
        }
    }
}

/// A pointer field (in `file`, at `offset`, `size` bytes) to something in the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    pub file: File,
    pub offset: usize,
    pub size: u8,
}

/// A checksum byte at `offset` making `[start, start + len)` of `file` sum to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    pub file: File,
    pub offset: usize,
    pub start: usize,
    pub len: usize,
}

/// One table in the tables file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub sig: [u8; 4],
    pub offset: usize,
    pub len: usize,
}

/// Every table of a machine, with pointers as offsets into `tables`.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    pub rsdp: Vec<u8>,
    pub tables: Vec<u8>,
    pub entries: Vec<TableEntry>,
    pub pointers: Vec<Pointer>,
    pub checksums: Vec<Checksum>,
}

/// Tables file alignment (the FACS needs 64).
const TABLES_ALIGN: usize = 64;

impl AcpiTables {
    fn push(&mut self, table: Vec<u8>, align: usize) -> usize {
        let off = self.tables.len().next_multiple_of(align);
        self.tables.resize(off, 0);
        let mut sig = [0u8; 4];
        sig.copy_from_slice(&table[..4]);
        self.entries.push(TableEntry {
            sig,
            offset: off,
            len: table.len(),
        });
        if &sig != b"FACS" {
            self.checksums.push(Checksum {
                file: File::Tables,
                offset: off + 9,
                start: off,
                len: table.len(),
            });
        }
        self.tables.extend(table);
        off
    }

    /// Writes pointer `p` with value `target` (an offset into the tables file).
    fn point(&mut self, p: Pointer, target: usize) {
        self.pointers.push(p);
        let buf = match p.file {
            File::Tables => &mut self.tables,
            File::Rsdp => &mut self.rsdp,
        };
        let s = usize::from(p.size);
        buf[p.offset..p.offset + s].copy_from_slice(&(target as u64).to_le_bytes()[..s]);
    }

    /// The bytes of a table by signature (the first one).
    pub fn table(&self, sig: &[u8; 4]) -> Option<&[u8]> {
        let e = self.entries.iter().find(|e| &e.sig == sig)?;
        Some(&self.tables[e.offset..e.offset + e.len])
    }

    /// The loader script for the firmware form.
    pub fn loader_commands(&self) -> Vec<Command> {
        let mut c = vec![
            Command::Allocate {
                file: TABLES_FILE.into(),
                align: TABLES_ALIGN as u32,
                zone: loader::ZONE_HIGH,
            },
            Command::Allocate {
                file: RSDP_FILE.into(),
                align: 16,
                zone: loader::ZONE_FSEG,
            },
        ];
        for p in &self.pointers {
            c.push(Command::AddPointer {
                dest: p.file.name().into(),
                src: TABLES_FILE.into(),
                offset: p.offset as u32,
                size: p.size,
            });
        }
        for k in &self.checksums {
            c.push(Command::AddChecksum {
                file: k.file.name().into(),
                offset: k.offset as u32,
                start: k.start as u32,
                length: k.len as u32,
            });
        }
        c
    }

    /// The fw_cfg files of the firmware form: (name, contents).
    pub fn fw_cfg_files(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (TABLES_FILE, self.tables.clone()),
            (RSDP_FILE, self.rsdp.clone()),
            (LOADER_FILE, loader::encode(&self.loader_commands())),
        ]
    }

    /// (rsdp, tables) with the tables at `tables_addr`: pointers moved, checksums redone.
    pub fn relocate(&self, tables_addr: u64) -> (Vec<u8>, Vec<u8>) {
        let mut rsdp = self.rsdp.clone();
        let mut tables = self.tables.clone();
        for p in &self.pointers {
            let buf = match p.file {
                File::Tables => &mut tables,
                File::Rsdp => &mut rsdp,
            };
            let s = usize::from(p.size);
            let mut v = [0u8; 8];
            v[..s].copy_from_slice(&buf[p.offset..p.offset + s]);
            let moved = u64::from_le_bytes(v) + tables_addr;
            buf[p.offset..p.offset + s].copy_from_slice(&moved.to_le_bytes()[..s]);
        }
        for k in &self.checksums {
            let buf = match k.file {
                File::Tables => &mut tables,
                File::Rsdp => &mut rsdp,
            };
            buf[k.offset] = 0;
            buf[k.offset] = sum(&buf[k.start..k.start + k.len]).wrapping_neg();
        }
        (rsdp, tables)
    }
}

/// Builds every table of `spec`.
pub fn build(spec: &MachineSpec) -> AcpiTables {
    let mut a = AcpiTables {
        rsdp: tables::rsdp(),
        tables: Vec::new(),
        entries: Vec::new(),
        pointers: Vec::new(),
        checksums: Vec::new(),
    };
    let facs = a.push(tables::facs(), TABLES_ALIGN);
    let dsdt = a.push(dsdt::dsdt(spec), 16);
    let fadt = a.push(tables::fadt(spec), 16);
    let ptr = |offset, size| Pointer {
        file: File::Tables,
        offset,
        size,
    };
    // FIRMWARE_CTRL only (X_FIRMWARE_CTRL must stay 0 when it is set); both DSDT fields.
    a.point(ptr(fadt + tables::FADT_FIRMWARE_CTRL, 4), facs);
    a.point(ptr(fadt + tables::FADT_DSDT, 4), dsdt);
    a.point(ptr(fadt + tables::FADT_X_DSDT, 8), dsdt);
    let mut listed = vec![fadt, a.push(tables::madt(spec), 16)];
    if let Some(ecam) = spec.chipset.pci.as_ref().and_then(|h| h.ecam) {
        listed.push(a.push(tables::mcfg(ecam.base), 16));
    }
    let xsdt = a.push(tables::sdt(b"XSDT", 1, &vec![0u8; 8 * listed.len()]), 16);
    let rsdt = a.push(tables::sdt(b"RSDT", 1, &vec![0u8; 4 * listed.len()]), 16);
    for (i, &t) in listed.iter().enumerate() {
        a.point(ptr(xsdt + 36 + 8 * i, 8), t);
        a.point(ptr(rsdt + 36 + 4 * i, 4), t);
    }
    let rp = |offset, size| Pointer {
        file: File::Rsdp,
        offset,
        size,
    };
    a.point(rp(tables::RSDP_RSDT, 4), rsdt);
    a.point(rp(tables::RSDP_XSDT, 8), xsdt);
    // The v1 checksum first: the extended one covers it.
    for (offset, len) in [(tables::RSDP_CHECKSUM, 20), (tables::RSDP_EXT_CHECKSUM, 36)] {
        a.checksums.push(Checksum {
            file: File::Rsdp,
            offset,
            start: 0,
            len,
        });
    }
    let (rsdp, t) = a.relocate(0);
    a.rsdp = rsdp;
    a.tables = t;
    a
}

/// Where direct boot put the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectTables {
    pub rsdp: u64,
    /// What the e820 map must say about the range.
    pub e820: Vec<E820Entry>,
}

/// Writes the RSDP at `base` and the tables after it (64-byte aligned), up to `end`.
pub fn write_direct(
    mem: &GuestMemoryMmap,
    acpi: &AcpiTables,
    base: u64,
    end: u64,
) -> Result<DirectTables, AcpiError> {
    let tables_addr = (base + acpi.rsdp.len() as u64).next_multiple_of(TABLES_ALIGN as u64);
    let top = tables_addr + acpi.tables.len() as u64;
    if top > end {
        return Err(AcpiError::TooLarge {
            size: top - base,
            room: end.saturating_sub(base),
            base,
        });
    }
    let (rsdp, tables) = acpi.relocate(tables_addr);
    mem.write_slice(&rsdp, GuestAddress(base))?;
    mem.write_slice(&tables, GuestAddress(tables_addr))?;
    let in_bios_area = base >= DIRECT_BASE && end <= DIRECT_END;
    let kind = if in_bios_area {
        E820Type::Reserved
    } else {
        E820Type::Acpi
    };
    let size = (top - base).next_multiple_of(4096);
    Ok(DirectTables {
        rsdp: base,
        e820: vec![E820Entry::new(base, size.min(end - base), kind)],
    })
}

#[cfg(test)]
mod tests;
