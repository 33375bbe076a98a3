//! The DSDT: the PCI root bus (its resources and `_PRT`), the ISA/LPC devices the
//! machine has, and the `_S5` sleep package, all from the resolved spec.
//!
//! ```text
//! Scope (\_SB) {
//!   Device (PCI0) {                      pc: PNP0A03; q35: PNP0A08, _CID PNP0A03
//!     _UID 0, _BBN 0, _CRS (buses, 0xCF8, I/O and MMIO windows), _PRT
//!     Device (ISA_) { _ADR 1.0 (PIIX3) / 1f.0 (ICH9 LPC); COMn, RTC_, KBD_, MOU_, FWCF }
//!   }
//! }                                      microvm: the ISA devices directly in \_SB
//! Name (\_S5, Package () { typ, typ, 0, 0 })
//! ```

use super::aml::{self, ResourceTemplate};
use crate::board::BoardKind;
use crate::spec::{DeviceKind, DeviceSpec, MachineSpec};

/// The 32-bit PCI MMIO window ends below the IOAPIC page (0xFEC00000).
const PCI_HOLE_END: u32 = 0xfebf_ffff;
/// On q35 the window starts after the ECAM window.
const Q35_HOLE_MIN: u64 = 0xc000_0000;
/// The 64-bit window: from the first GiB boundary above RAM, this large.
const PCI64_SIZE: u64 = 32 << 30;
const GIB: u64 = 1 << 30;
const FOUR_GIB: u64 = 4 << 30;

/// The whole DSDT, header included (checksum zero; the caller sums it).
pub fn dsdt(spec: &MachineSpec) -> Vec<u8> {
    let isa = isa_devices(spec);
    let mut body = Vec::new();
    match spec.board {
        BoardKind::Microvm => body.extend(aml::scope("\\_SB", &isa)),
        BoardKind::Pc | BoardKind::Q35 => {
            let isa_bridge = aml::device(
                "ISA",
                &[
                    vec![aml::name("_ADR", aml::integer(isa_bridge_adr(spec)))],
                    isa,
                ]
                .concat(),
            );
            body.extend(aml::scope("\\_SB", &[pci_root(spec, isa_bridge)]));
        }
    }
    if let Some(typ) = s5_typ(spec) {
        let t = u64::from(typ);
        body.extend(aml::name(
            "\\_S5",
            aml::package(&[
                aml::integer(t),
                aml::integer(t),
                aml::integer(0),
                aml::integer(0),
            ]),
        ));
    }
    super::tables::sdt(b"DSDT", 2, &body)
}

/// SLP_TYP for S5 from the machine's PM device.
fn s5_typ(spec: &MachineSpec) -> Option<u8> {
    spec.devices.iter().find_map(|d| match d.kind {
        DeviceKind::Pm { s5_typ } => Some(s5_typ),
        _ => None,
    })
}

/// _ADR of the ISA bridge: PIIX3 at 00:01.0, ICH9 LPC at 00:1f.0.
fn isa_bridge_adr(spec: &MachineSpec) -> u64 {
    if spec.board == BoardKind::Q35 {
        0x001f_0000
    } else {
        0x0001_0000
    }
}

/// `Device (PCI0)` with its resources and interrupt routing.
fn pci_root(spec: &MachineSpec, isa_bridge: Vec<u8>) -> Vec<u8> {
    let q35 = spec.board == BoardKind::Q35;
    let mut terms = Vec::new();
    if q35 {
        terms.push(aml::name("_HID", aml::eisa_id("PNP0A08")));
        terms.push(aml::name("_CID", aml::eisa_id("PNP0A03")));
    } else {
        terms.push(aml::name("_HID", aml::eisa_id("PNP0A03")));
    }
    terms.push(aml::name("_UID", aml::integer(0)));
    terms.push(aml::name("_BBN", aml::integer(0)));
    terms.push(aml::name("_CRS", pci_crs(spec)));
    terms.push(aml::name("_PRT", prt(spec)));
    terms.push(isa_bridge);
    aml::device("PCI0", &terms)
}

/// The 32-bit and 64-bit MMIO windows of the root bus: (min, max) each.
pub fn pci_windows(spec: &MachineSpec) -> ((u32, u32), (u64, u64)) {
    let mut low = spec.ram_below_4g;
    if spec.board == BoardKind::Q35 {
        low = low.max(Q35_HOLE_MIN);
    }
    let low = low.min(u64::from(PCI_HOLE_END) & !0xfffff) as u32;
    let high = (FOUR_GIB + spec.ram_above_4g).div_ceil(GIB) * GIB;
    ((low, PCI_HOLE_END), (high, high + PCI64_SIZE - 1))
}

fn pci_crs(spec: &MachineSpec) -> Vec<u8> {
    let ((lo_min, lo_max), (hi_min, hi_max)) = pci_windows(spec);
    ResourceTemplate::new()
        .word_bus(0, 255)
        .io(0xcf8, 8)
        .word_io(0x0000, 0x0cf7)
        .word_io(0x0d00, 0xffff)
        .dword_memory(0x000a_0000, 0x000b_ffff)
        .dword_memory(lo_min, lo_max)
        .qword_memory(hi_min, hi_max)
        .build()
}

/// The GSI that INTx (`pin` 0 = INTA) of root-bus `slot` raises, as `spec` routes it.
pub fn slot_gsi(spec: &MachineSpec, slot: u8, pin: u8) -> Option<u32> {
    let root = spec.board.board().pci.as_ref()?;
    let (slot, pin) = (usize::from(slot), usize::from(pin));
    let pirq = if root.express {
        (slot + pin) % 4
    } else {
        (slot + pin + 3) % 4
    };
    Some(root.pirq_gsi[pirq])
}

/// `_PRT`: every slot's INTA-D to a GSI, directly (no link devices).
fn prt(spec: &MachineSpec) -> Vec<u8> {
    let mut entries = Vec::new();
    for slot in 1..32u8 {
        for pin in 0..4u8 {
            let Some(gsi) = slot_gsi(spec, slot, pin) else {
                continue;
            };
            entries.push(aml::package(&[
                aml::integer((u64::from(slot) << 16) | 0xffff),
                aml::integer(pin.into()),
                aml::integer(0),
                aml::integer(gsi.into()),
            ]));
        }
    }
    // A Package holds at most 255 elements; 31 slots x 4 pins = 124.
    aml::package(&entries)
}

fn sta_present() -> Vec<u8> {
    aml::name("_STA", aml::integer(0x0f))
}

/// The legacy devices of the machine, in a stable order.
fn isa_devices(spec: &MachineSpec) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut serials: Vec<&DeviceSpec> = spec.devices_of("serial").collect();
    serials.sort_by_key(|d| d.io);
    for (i, d) in serials.iter().enumerate() {
        let (Some(io), Some(irq)) = (d.io, d.irq) else {
            continue;
        };
        let uid = i + 1;
        let name = if uid <= 9 {
            format!("COM{uid}")
        } else {
            format!("S{uid:03X}")
        };
        out.push(aml::device(
            &name,
            &[
                aml::name("_HID", aml::eisa_id("PNP0501")),
                aml::name("_UID", aml::integer(uid as u64)),
                sta_present(),
                aml::name(
                    "_CRS",
                    ResourceTemplate::new()
                        .io(io, 8)
                        .irq_no_flags(irq as u8)
                        .build(),
                ),
            ],
        ));
    }
    if let Some(d) = spec.devices_of("rtc").next() {
        let io = d.io.unwrap_or(0x70);
        out.push(aml::device(
            "RTC",
            &[
                aml::name("_HID", aml::eisa_id("PNP0B00")),
                aml::name(
                    "_CRS",
                    ResourceTemplate::new()
                        .io(io, 2)
                        .irq_no_flags(d.irq.unwrap_or(8) as u8)
                        .build(),
                ),
            ],
        ));
    }
    if let Some(d) = spec.devices_of("i8042").next() {
        let io = d.io.unwrap_or(0x60);
        out.push(aml::device(
            "KBD",
            &[
                aml::name("_HID", aml::eisa_id("PNP0303")),
                sta_present(),
                aml::name(
                    "_CRS",
                    ResourceTemplate::new()
                        .io(io, 1)
                        .io(io + 4, 1)
                        .irq_no_flags(d.irq.unwrap_or(1) as u8)
                        .build(),
                ),
            ],
        ));
        out.push(aml::device(
            "MOU",
            &[
                aml::name("_HID", aml::eisa_id("PNP0F13")),
                sta_present(),
                aml::name("_CRS", ResourceTemplate::new().irq_no_flags(12).build()),
            ],
        ));
    }
    if let Some(d) = spec.devices_of("fw_cfg").next() {
        let io = d.io.unwrap_or(0x510);
        out.push(aml::device(
            "FWCF",
            &[
                aml::name("_HID", aml::string("QEMU0002")),
                aml::name("_STA", aml::integer(0x0b)),
                aml::name("_CRS", ResourceTemplate::new().io(io, 0x0c).build()),
            ],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(board: &str) -> MachineSpec {
        let text = format!("[machine]\nboard = \"{board}\"\nmemory = \"512MiB\"\n");
        let (_, r) = crate::check_str("t.toml", &text, std::path::Path::new("/"));
        r.expect("valid machine")
    }

    #[test]
    fn prt_matches_spec_routing() {
        let pc = spec("pc");
        // pc: PIRQ (slot + pin + 2) % 4 with pin 1-based, to [10, 10, 11, 11].
        assert_eq!(slot_gsi(&pc, 2, 0), Some(10)); // (2 + 1 + 2) % 4 = 1
        assert_eq!(slot_gsi(&pc, 3, 0), Some(11));
        let q35 = spec("q35");
        assert_eq!(slot_gsi(&q35, 1, 0), Some(17));
        assert_eq!(slot_gsi(&q35, 3, 1), Some(16));
        assert_eq!(slot_gsi(&spec("microvm"), 1, 0), None);
    }

    #[test]
    fn windows() {
        let ((lo, hi32), (lo64, _)) = pci_windows(&spec("pc"));
        assert_eq!((lo, hi32, lo64), (0x2000_0000, 0xfebf_ffff, 4 << 30));
        let ((lo, _), _) = pci_windows(&spec("q35"));
        assert_eq!(lo, 0xc000_0000);
    }

    #[test]
    fn dsdt_has_s5_and_devices() {
        let d = dsdt(&spec("q35"));
        let has = |n: &[u8]| d.windows(n.len()).any(|w| w == n);
        assert!(has(b"_S5_\x12\x08\x04\x0a\x07\x0a\x07\x00\x00"));
        assert!(has(b"PCI0") && has(b"COM1") && has(b"FWCF") && has(b"_PRT"));
        let m = dsdt(&spec("microvm"));
        assert!(!m.windows(4).any(|w| w == b"PCI0"));
    }
}
