//! The fixed-layout ACPI tables: FADT, FACS, MADT, MCFG, and the XSDT/RSDT/RSDP that
//! point to them. Each builder returns the table's bytes with a zero checksum; the
//! caller ([`super::Layout`]) places them, fills the pointers and sums them.
//! Layouts: ACPI 6.5 sections 5.2.5 (RSDP), 5.2.7/5.2.8 (RSDT/XSDT), 5.2.9 (FADT),
//! 5.2.10 (FACS), 5.2.12 (MADT); PCI Firmware spec 3.x (MCFG).

use crate::spec::{Kind, MachineSpec};

/// OEM ID in every header.
pub const OEM_ID: &[u8; 6] = b"VMRUN ";
/// OEM table ID in every header.
pub const OEM_TABLE_ID: &[u8; 8] = b"VMRUNPC ";
const CREATOR_ID: &[u8; 4] = b"VMRN";

/// Where the FADT keeps its pointers (offsets in the table).
pub const FADT_FIRMWARE_CTRL: usize = 36;
pub const FADT_DSDT: usize = 40;
pub const FADT_X_FIRMWARE_CTRL: usize = 132;
pub const FADT_X_DSDT: usize = 140;
pub const FADT_LEN: usize = 276;

/// The 36-byte system description table header, then `body`; length filled in.
pub fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = (36 + body.len()) as u32;
    let mut t = Vec::with_capacity(len as usize);
    t.extend_from_slice(sig);
    t.extend(len.to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, filled in later
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend(1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(CREATOR_ID);
    t.extend(1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t
}

/// The FACS: 64 bytes, no checksum, 64-byte aligned.
pub fn facs() -> Vec<u8> {
    let mut t = vec![0u8; 64];
    t[0..4].copy_from_slice(b"FACS");
    t[4..8].copy_from_slice(&64u32.to_le_bytes());
    t[32] = 2; // version
    t
}

/// The PM block of a machine: where the FADT points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmBlock {
    pub base: u16,
    pub sci: u16,
    pub gpe0_offset: u16,
    pub gpe0_len: u8,
}

impl PmBlock {
    pub fn of(spec: &MachineSpec) -> Option<Self> {
        let (pm, layout) = spec.pm()?;
        Some(PmBlock {
            base: pm.io_base()?,
            sci: pm.irq()? as u16,
            gpe0_offset: layout.gpe0_offset,
            gpe0_len: layout.gpe0_len as u8,
        })
    }
}

/// A Generic Address Structure in system I/O space.
fn gas_io(addr: u64, bits: u8, access: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    if addr != 0 {
        g[0] = 1; // SystemIO
        g[1] = bits;
        g[3] = access;
        g[4..12].copy_from_slice(&addr.to_le_bytes());
    }
    g
}

// FADT flags (5.2.9, table 5.10).
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PROC_C1: u32 = 1 << 2;
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_RTC_S4: u32 = 1 << 7;
const FADT_RESET_REG_SUP: u32 = 1 << 10;
// IA-PC boot architecture flags (table 5.11).
const BOOT_LEGACY_DEVICES: u16 = 1 << 0;
const BOOT_8042: u16 = 1 << 1;
const BOOT_VGA_NOT_PRESENT: u16 = 1 << 2;

/// The FADT (revision 6.5). The power button is a fixed feature (PWR_BUTTON clear),
/// ACPI is already enabled (SMI_CMD 0; the PM device starts with SCI_EN set).
pub fn fadt(spec: &MachineSpec) -> Vec<u8> {
    let mut b = vec![0u8; FADT_LEN - 36];
    let mut put =
        |off: usize, bytes: &[u8]| b[off - 36..off - 36 + bytes.len()].copy_from_slice(bytes);
    let pm = PmBlock::of(spec);
    let has = |k: Kind| spec.has(k);
    let pc_like = spec.chipset.pci.is_some();

    put(44, &[1]); // INT_MODEL (ACPI 1.0 field): APIC
    if let Some(pm) = pm {
        let base = u32::from(pm.base);
        put(46, &pm.sci.to_le_bytes());
        put(56, &base.to_le_bytes()); // PM1a_EVT_BLK
        put(64, &(base + 4).to_le_bytes()); // PM1a_CNT_BLK
        put(76, &(base + 8).to_le_bytes()); // PM_TMR_BLK
        put(80, &(base + u32::from(pm.gpe0_offset)).to_le_bytes()); // GPE0_BLK
        put(88, &[4, 2, 0, 4, pm.gpe0_len]); // PM1_EVT, PM1_CNT, PM2_CNT, PM_TMR, GPE0 lengths
        put(148, &gas_io(base.into(), 32, 2)); // X_PM1a_EVT_BLK
        put(172, &gas_io((base + 4).into(), 16, 2)); // X_PM1a_CNT_BLK
        put(208, &gas_io((base + 8).into(), 32, 3)); // X_PM_TMR_BLK
        put(
            220,
            &gas_io(
                (base + u32::from(pm.gpe0_offset)).into(),
                pm.gpe0_len * 8,
                1,
            ),
        ); // X_GPE0_BLK
    }
    put(96, &0x0fffu16.to_le_bytes()); // P_LVL2_LAT: C2 not supported
    put(98, &0x0fffu16.to_le_bytes()); // P_LVL3_LAT: C3 not supported
    if has(Kind::Rtc) {
        put(108, &[0x32]); // CENTURY: CMOS index of the century byte
    }
    let mut boot = 0u16;
    if pc_like {
        boot |= BOOT_LEGACY_DEVICES;
    }
    if has(Kind::I8042) {
        boot |= BOOT_8042;
    }
    if !has(Kind::Vga) {
        boot |= BOOT_VGA_NOT_PRESENT;
    }
    put(109, &boot.to_le_bytes());
    let mut flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RTC_S4;
    if let Some(port) = spec.chipset.reset_port {
        // The chipset's reset control register: write 0x06 to it.
        flags |= FADT_RESET_REG_SUP;
        put(116, &gas_io(port.into(), 8, 1));
        put(128, &[0x06]);
    }
    put(112, &flags.to_le_bytes());
    put(131, &[5]); // FADT minor version: 6.5
    sdt(b"FACP", 6, &b)
}

/// Processor UID, APIC ID pairs, in vCPU order.
pub fn apic_ids(spec: &MachineSpec) -> Vec<u32> {
    (0..spec.cpus.count())
        .map(|i| spec.cpus.apic_id(i))
        .collect()
}

/// MADT flags: PCAT_COMPAT (dual 8259s present).
const MADT_PCAT_COMPAT: u32 = 1;
/// MPS INTI flags: active high, level triggered.
const INTI_LEVEL_HIGH: u16 = 0x0d;

/// The MADT: one (x2)APIC entry per CPU, the IOAPIC, the IRQ0 → GSI2 and SCI
/// overrides, and LINT1 = NMI on every processor.
pub fn madt(spec: &MachineSpec) -> Vec<u8> {
    let ids = apic_ids(spec);
    let mut b = Vec::new();
    b.extend((spec.chipset.lapic_base as u32).to_le_bytes());
    let pcat = spec.has(Kind::Pic) && spec.chipset.pci.is_some();
    b.extend((if pcat { MADT_PCAT_COMPAT } else { 0 }).to_le_bytes());
    let mut x2 = false;
    for (uid, &id) in ids.iter().enumerate() {
        if id < 255 && uid < 255 {
            b.extend([0, 8, uid as u8, id as u8]);
            b.extend(1u32.to_le_bytes()); // enabled
        } else {
            x2 = true;
            b.extend([9, 16, 0, 0]);
            b.extend(id.to_le_bytes());
            b.extend(1u32.to_le_bytes());
            b.extend((uid as u32).to_le_bytes());
        }
    }
    if let Some((window, id)) = spec.ioapic() {
        b.extend([1, 12, id, 0]);
        b.extend((window.base as u32).to_le_bytes());
    }
    b.extend(0u32.to_le_bytes()); // GSI base
    let mut iso = |src: u8, gsi: u32, flags: u16| {
        b.extend([2, 10, 0, src]);
        b.extend(gsi.to_le_bytes());
        b.extend(flags.to_le_bytes());
    };
    if spec.has(Kind::Pit) {
        iso(0, 2, 0);
    }
    if let Some(pm) = PmBlock::of(spec) {
        iso(pm.sci as u8, pm.sci.into(), INTI_LEVEL_HIGH);
    }
    // Local APIC NMI: all processors, LINT1, flags "conforming".
    b.extend([4, 6, 0xff, 0, 0, 1]);
    if x2 {
        b.extend([0x0a, 12, 0, 0]);
        b.extend(u32::MAX.to_le_bytes());
        b.extend([1, 0, 0, 0]);
    }
    sdt(b"APIC", 5, &b)
}

/// Number of interrupt source overrides a MADT built from `spec` carries.
pub fn madt_overrides(spec: &MachineSpec) -> usize {
    usize::from(spec.has(Kind::Pit)) + usize::from(PmBlock::of(spec).is_some())
}

/// The MCFG (q35 only): one ECAM window at `base`, segment 0, buses 0-255.
pub fn mcfg(base: u64) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b.extend(base.to_le_bytes());
    b.extend(0u16.to_le_bytes());
    b.extend([0, 255]);
    b.extend(0u32.to_le_bytes());
    sdt(b"MCFG", 1, &b)
}

/// A 20-byte v1 part + v2 extension RSDP with zero pointers and checksums.
pub fn rsdp() -> Vec<u8> {
    let mut r = vec![0u8; 36];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = 2;
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r
}

/// Offsets in the RSDP.
pub const RSDP_CHECKSUM: usize = 8;
pub const RSDP_RSDT: usize = 16;
pub const RSDP_XSDT: usize = 24;
pub const RSDP_EXT_CHECKSUM: usize = 32;
