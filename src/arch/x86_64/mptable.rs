//! Intel MultiProcessor Specification 1.4 tables.
//!
//! An OS without ACPI (or one told `acpi=off`) learns the CPUs, the IOAPIC and the
//! interrupt wiring from these. We write, in the EBDA (`layout::MPTABLE_START`):
//!
//! * the 16-byte MP floating pointer ("_MP_"), pointing at
//! * the MP configuration table ("PCMP") that follows it: one processor entry per CPU
//!   (the first APIC ID is the boot processor), bus entries (PCI as bus 0 when asked,
//!   then ISA), the IOAPIC, one I/O interrupt entry per ISA IRQ (IRQ 0 routed to IOAPIC
//!   pin 2 when `irq0_override` is set, the usual PC wiring, with source IRQ 2, the
//!   cascade, left out), PCI INTx entries (level, active low) when given, and the local
//!   interrupt entries LINT0 = ExtINT (to the BSP) and LINT1 = NMI (to all CPUs).
//!
//! Both structures carry a byte checksum that makes them sum to zero. The whole table must
//! fit in the 1 KiB EBDA, which limits it to a few dozen CPUs; larger machines need ACPI.

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::layout::{EBDA_END, IOAPIC_ADDR, LAPIC_ADDR, MPTABLE_START};

/// MP spec revision 1.4.
const SPEC_REV: u8 = 4;
/// Local APIC version as KVM's in-kernel LAPIC reports it.
const LAPIC_VERSION: u8 = 0x14;
/// IOAPIC version as KVM's in-kernel IOAPIC reports it.
const IOAPIC_VERSION: u8 = 0x11;
/// CPU signature: family 6 (what KVM's default CPUID model says, close enough for MP).
const CPU_SIGNATURE: u32 = 0x600;
/// CPUID.1:EDX feature flags: FPU and APIC.
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

/// Interrupt types of I/O and local interrupt entries.
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity/trigger "conforms to the bus".
const IRQ_FLAGS_DEFAULT: u16 = 0;
/// Active low (polarity 3), level triggered (trigger 3): PCI INTx.
const IRQ_FLAGS_PCI: u16 = 0x3 | (0x3 << 2);

/// Size of the floating pointer structure.
pub const FLOATING_POINTER_SIZE: u64 = 16;
/// Size of the configuration table header.
const HEADER_SIZE: usize = 44;

/// Errors building the MP table.
#[derive(Debug, Error)]
pub enum MpTableError {
    /// No CPU given.
    #[error("MP table needs at least one CPU")]
    NoCpus,
    /// 0xFF is the broadcast ID and cannot name a CPU (MP tables have 8-bit APIC IDs).
    #[error("APIC ID {0} cannot be described in an MP table (IDs must be below 255)")]
    ApicIdTooLarge(u32),
    /// The table does not fit in the EBDA.
    #[error("MP table for {cpus} CPUs needs {needed} bytes, the EBDA has room for {room}")]
    TooLarge {
        /// Number of CPUs asked for.
        cpus: usize,
        /// Bytes needed (floating pointer + configuration table).
        needed: u64,
        /// Bytes available.
        room: u64,
    },
    /// Writing guest memory failed.
    #[error("cannot write the MP table into guest memory")]
    Memory(#[from] GuestMemoryError),
}

/// One PCI INTx wire as routed to an IOAPIC pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIntx {
    /// PCI bus number (the MP bus ID of PCI bus 0 is 0).
    pub bus: u8,
    /// Device number (0..=31).
    pub device: u8,
    /// 0 = INTA# .. 3 = INTD#.
    pub pin: u8,
    /// IOAPIC input it arrives on.
    pub ioapic_pin: u8,
}

/// What goes into the MP table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpConfig {
    /// Local APIC IDs, boot processor first.
    pub apic_ids: Vec<u32>,
    /// IOAPIC ID (must not collide with a CPU's APIC ID).
    pub ioapic_id: u8,
    /// `Some`: the machine has PCI; a PCI bus entry and these INTx entries are listed.
    pub pci: Option<Vec<PciIntx>>,
    /// Route ISA IRQ 0 (PIT) to IOAPIC pin 2, like every PC chipset (the VMM's GSI routing
    /// and the MADT's interrupt source override must agree).
    pub irq0_override: bool,
}

/// Where the table landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpTableInfo {
    /// Floating pointer address.
    pub floating_pointer: u64,
    /// Configuration table address.
    pub config_table: u64,
    /// Configuration table length.
    pub config_len: u64,
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// Builds the configuration table bytes (header included, checksum set).
fn config_table(cfg: &MpConfig) -> Result<Vec<u8>, MpTableError> {
    let bsp = *cfg.apic_ids.first().ok_or(MpTableError::NoCpus)?;
    let mut body: Vec<u8> = Vec::new();
    let mut entries: u16 = 0;

    for (i, &id) in cfg.apic_ids.iter().enumerate() {
        let id8 = u8::try_from(id)
            .ok()
            .filter(|&v| v != 0xff)
            .ok_or(MpTableError::ApicIdTooLarge(id))?;
        let flags = if i == 0 { 0b11 } else { 0b01 }; // EN, BP
        body.extend_from_slice(&[ENTRY_PROCESSOR, id8, LAPIC_VERSION, flags]);
        body.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        body.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        body.extend_from_slice(&[0; 8]);
        entries += 1;
    }

    let (pci_bus_id, isa_bus_id) = if cfg.pci.is_some() { (0, 1) } else { (0, 0) };
    if cfg.pci.is_some() {
        body.extend_from_slice(&[ENTRY_BUS, pci_bus_id]);
        body.extend_from_slice(b"PCI   ");
        entries += 1;
    }
    body.extend_from_slice(&[ENTRY_BUS, isa_bus_id]);
    body.extend_from_slice(b"ISA   ");
    entries += 1;

    body.extend_from_slice(&[ENTRY_IOAPIC, cfg.ioapic_id, IOAPIC_VERSION, 1]);
    body.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    entries += 1;

    let mut io_int = |kind: u8, flags: u16, bus: u8, irq: u8, pin: u8| {
        body.push(ENTRY_IO_INTERRUPT);
        body.push(kind);
        body.extend_from_slice(&flags.to_le_bytes());
        body.extend_from_slice(&[bus, irq, cfg.ioapic_id, pin]);
        entries += 1;
    };
    for irq in 0..16u8 {
        let pin = match irq {
            0 if cfg.irq0_override => 2,
            2 if cfg.irq0_override => continue,
            _ => irq,
        };
        io_int(INT_TYPE_INT, IRQ_FLAGS_DEFAULT, isa_bus_id, irq, pin);
    }
    for p in cfg.pci.iter().flatten() {
        let src = ((p.device & 0x1f) << 2) | (p.pin & 3);
        io_int(INT_TYPE_INT, IRQ_FLAGS_PCI, p.bus, src, p.ioapic_pin);
    }

    // LINT0 = ExtINT to the boot processor, LINT1 = NMI to every local APIC.
    let bsp8 = bsp as u8; // validated above
    for (kind, dest, lint) in [(INT_TYPE_EXTINT, bsp8, 0u8), (INT_TYPE_NMI, 0xff, 1)] {
        body.push(ENTRY_LOCAL_INTERRUPT);
        body.push(kind);
        body.extend_from_slice(&IRQ_FLAGS_DEFAULT.to_le_bytes());
        body.extend_from_slice(&[isa_bus_id, 0, dest, lint]);
        entries += 1;
    }

    let len = HEADER_SIZE + body.len();
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(b"PCMP");
    t.extend_from_slice(&(len as u16).to_le_bytes());
    t.push(SPEC_REV);
    t.push(0); // checksum, below
    t.extend_from_slice(b"VMRUN   ");
    t.extend_from_slice(b"VMRUN MPTAB ");
    t.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    t.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    t.extend_from_slice(&entries.to_le_bytes());
    t.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    t.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    t.push(0); // extended table checksum
    t.push(0); // reserved
    t.extend_from_slice(&body);
    t[7] = checksum(&t);
    Ok(t)
}

/// Where a configuration table too large for the EBDA goes: the top of the reserved
/// BIOS area, clear of its start (where other tables may live).
const LARGE_TABLE_END: u64 = super::layout::BIOS_AREA_END;

/// Writes the floating pointer at [`MPTABLE_START`] and the configuration table after it
/// in the EBDA; a table too large for the 1 KiB EBDA (about 35 CPUs and more) goes at the
/// top of the reserved BIOS area instead (the floating pointer may point anywhere).
pub fn write_mptable(mem: &GuestMemoryMmap, cfg: &MpConfig) -> Result<MpTableInfo, MpTableError> {
    let table = config_table(cfg)?;
    let needed = FLOATING_POINTER_SIZE + table.len() as u64;
    let room = EBDA_END - MPTABLE_START;
    let config_addr = if needed <= room {
        MPTABLE_START + FLOATING_POINTER_SIZE
    } else {
        let big_room = LARGE_TABLE_END - super::layout::BIOS_AREA_START;
        if table.len() as u64 > big_room / 2 {
            return Err(MpTableError::TooLarge {
                cpus: cfg.apic_ids.len(),
                needed,
                room: big_room / 2,
            });
        }
        (LARGE_TABLE_END - table.len() as u64) & !0xf
    };

    let mut fp = [0u8; FLOATING_POINTER_SIZE as usize];
    fp[..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&(config_addr as u32).to_le_bytes());
    fp[8] = 1; // length in 16-byte paragraphs
    fp[9] = SPEC_REV;
    // fp[11] = 0: a configuration table is present (no default configuration);
    // fp[12] bit 7 = 0: virtual wire mode, no IMCR.
    fp[10] = checksum(&fp);

    mem.write_slice(&fp, GuestAddress(MPTABLE_START))?;
    mem.write_slice(&table, GuestAddress(config_addr))?;
    Ok(MpTableInfo {
        floating_pointer: MPTABLE_START,
        config_table: config_addr,
        config_len: table.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    fn cfg(cpus: u32, pci: Option<Vec<PciIntx>>) -> MpConfig {
        MpConfig {
            apic_ids: (0..cpus).collect(),
            ioapic_id: cpus as u8,
            pci,
            irq0_override: true,
        }
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    /// Entries parsed back from guest memory, as (type, raw bytes).
    fn parse(mem: &GuestMemoryMmap) -> Vec<(u8, Vec<u8>)> {
        // Find the floating pointer the way Linux does: scan the EBDA on 16-byte bounds.
        let mut ebda = vec![0u8; 1024];
        mem.read_slice(&mut ebda, GuestAddress(0x9fc00)).unwrap();
        let at = (0..1024)
            .step_by(16)
            .find(|&i| &ebda[i..i + 4] == b"_MP_")
            .unwrap();
        let fp = &ebda[at..at + 16];
        assert_eq!(sum(fp), 0, "floating pointer checksum");
        assert_eq!((fp[8], fp[9], fp[11]), (1, 4, 0));
        let cfg_addr = u32::from_le_bytes(fp[4..8].try_into().unwrap()) as u64;
        let mut hdr = [0u8; 44];
        mem.read_slice(&mut hdr, GuestAddress(cfg_addr)).unwrap();
        assert_eq!(&hdr[..4], b"PCMP");
        let len = u16::from_le_bytes([hdr[4], hdr[5]]) as usize;
        let count = u16::from_le_bytes([hdr[34], hdr[35]]) as usize;
        assert_eq!(
            u32::from_le_bytes(hdr[36..40].try_into().unwrap()),
            0xfee0_0000
        );
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(cfg_addr)).unwrap();
        assert_eq!(sum(&table), 0, "config table checksum");
        let mut out = Vec::new();
        let mut off = 44;
        while off < len {
            let size = if table[off] == ENTRY_PROCESSOR { 20 } else { 8 };
            out.push((table[off], table[off..off + size].to_vec()));
            off += size;
        }
        assert_eq!(off, len);
        assert_eq!(out.len(), count);
        out
    }

    #[test]
    fn two_cpus_isa_only() {
        let m = mem();
        write_mptable(&m, &cfg(2, None)).unwrap();
        let e = parse(&m);
        let cpus: Vec<_> = e.iter().filter(|x| x.0 == 0).collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!((cpus[0].1[1], cpus[0].1[3]), (0, 3), "BSP enabled + BP");
        assert_eq!((cpus[1].1[1], cpus[1].1[3]), (1, 1));
        let buses: Vec<_> = e.iter().filter(|x| x.0 == 1).collect();
        assert_eq!(buses.len(), 1);
        assert_eq!(&buses[0].1[2..8], b"ISA   ");
        let ioapic = e.iter().find(|x| x.0 == 2).unwrap();
        assert_eq!(ioapic.1[1], 2);
        assert_eq!(
            u32::from_le_bytes(ioapic.1[4..8].try_into().unwrap()),
            0xfec0_0000
        );
        let ints: Vec<_> = e
            .iter()
            .filter(|x| x.0 == 3)
            .map(|x| (x.1[5], x.1[7]))
            .collect();
        assert_eq!(ints.len(), 15);
        assert_eq!(ints[0], (0, 2), "IRQ0 -> pin 2");
        assert!(!ints.iter().any(|&(irq, _)| irq == 2));
        assert!(ints[1..].iter().all(|&(irq, pin)| irq == pin));
        let lints: Vec<_> = e
            .iter()
            .filter(|x| x.0 == 4)
            .map(|x| (x.1[1], x.1[6], x.1[7]))
            .collect();
        assert_eq!(lints, vec![(3, 0, 0), (1, 0xff, 1)]);
    }

    #[test]
    fn pci_bus_and_intx() {
        let m = mem();
        let pci = vec![PciIntx {
            bus: 0,
            device: 3,
            pin: 0,
            ioapic_pin: 11,
        }];
        write_mptable(&m, &cfg(1, Some(pci))).unwrap();
        let e = parse(&m);
        let buses: Vec<_> = e
            .iter()
            .filter(|x| x.0 == 1)
            .map(|x| (x.1[1], x.1[2..8].to_vec()))
            .collect();
        assert_eq!(
            buses,
            vec![(0, b"PCI   ".to_vec()), (1, b"ISA   ".to_vec())]
        );
        let pci_int = e.iter().filter(|x| x.0 == 3).find(|x| x.1[4] == 0).unwrap();
        assert_eq!(
            (pci_int.1[2], pci_int.1[5], pci_int.1[7]),
            (0x0f, 3 << 2, 11)
        );
        assert!(
            e.iter()
                .filter(|x| x.0 == 3 && x.1[5] == 4)
                .all(|x| x.1[4] == 1),
            "ISA on bus 1"
        );
    }

    #[test]
    fn without_override_all_16_irqs_identity() {
        let m = mem();
        let mut c = cfg(1, None);
        c.irq0_override = false;
        write_mptable(&m, &c).unwrap();
        let ints: Vec<_> = parse(&m)
            .iter()
            .filter(|x| x.0 == 3)
            .map(|x| (x.1[5], x.1[7]))
            .collect();
        assert_eq!(ints, (0..16).map(|i| (i, i)).collect::<Vec<_>>());
    }

    #[test]
    fn errors() {
        let m = mem();
        assert!(matches!(
            write_mptable(&m, &cfg(0, None)),
            Err(MpTableError::NoCpus)
        ));
        let mut c = cfg(2, None);
        c.apic_ids[1] = 255;
        assert!(matches!(
            write_mptable(&m, &c),
            Err(MpTableError::ApicIdTooLarge(255))
        ));
        assert!(write_mptable(&m, &cfg(32, None)).is_ok());
    }

    #[test]
    fn large_tables_move_to_the_bios_area() {
        let m = mem();
        let info = write_mptable(&m, &cfg(200, None)).unwrap();
        assert!(
            info.config_table >= 0xf_0000 && info.config_table + info.config_len <= 0x10_0000,
            "{info:?}"
        );
        let entries = parse(&m);
        assert_eq!(
            entries.iter().filter(|e| e.0 == ENTRY_PROCESSOR).count(),
            200
        );
    }
}
