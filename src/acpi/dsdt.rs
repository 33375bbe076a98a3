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
use crate::spec::{DeviceSpec, Kind, MachineSpec, PciHost};

/// The whole DSDT, header included (checksum zero; the caller sums it).
pub fn dsdt(spec: &MachineSpec) -> Vec<u8> {
    let isa = isa_devices(spec);
    let mut body = Vec::new();
    match &spec.chipset.pci {
        None => body.extend(aml::scope("\\_SB", &isa)),
        Some(host) => {
            let adr = u64::from(host.isa_bridge.slot) << 16 | u64::from(host.isa_bridge.func);
            let isa_bridge = aml::device(
                "ISA",
                &[vec![aml::name("_ADR", aml::integer(adr))], isa].concat(),
            );
            body.extend(aml::scope("\\_SB", &[pci_root(spec, host, isa_bridge)]));
        }
    }
    if let Some((_, pm)) = spec.pm() {
        let typ = pm.s5_typ;
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

/// `Device (PCI0)` with its resources and interrupt routing.
fn pci_root(spec: &MachineSpec, host: &PciHost, isa_bridge: Vec<u8>) -> Vec<u8> {
    let mut terms = Vec::new();
    if host.express {
        terms.push(aml::name("_HID", aml::eisa_id("PNP0A08")));
        terms.push(aml::name("_CID", aml::eisa_id("PNP0A03")));
    } else {
        terms.push(aml::name("_HID", aml::eisa_id("PNP0A03")));
    }
    terms.push(aml::name("_UID", aml::integer(0)));
    terms.push(aml::name("_BBN", aml::integer(0)));
    terms.push(aml::name("_CRS", pci_crs(spec, host)));
    terms.push(aml::name("_PRT", prt(host)));
    terms.push(isa_bridge);
    aml::device("PCI0", &terms)
}

fn pci_crs(spec: &MachineSpec, host: &PciHost) -> Vec<u8> {
    let ports = host.config_ports;
    let mut t = ResourceTemplate::new()
        .word_bus(0, 255)
        .io(ports.base, ports.len as u8)
        .word_io(0x0000, ports.base - 1)
        .word_io(0x0d00, 0xffff)
        .dword_memory(0x000a_0000, 0x000b_ffff);
    if let Some(h) = spec.memory.pci_hole {
        t = t.dword_memory(h.base as u32, (h.end() - 1) as u32);
    }
    if let Some(h) = spec.memory.pci_hole64 {
        t = t.qword_memory(h.base, h.end() - 1);
    }
    t.build()
}

/// `_PRT`: every slot's INTA-D to a GSI, directly (no link devices).
fn prt(host: &PciHost) -> Vec<u8> {
    let mut entries = Vec::new();
    for slot in 1..32u8 {
        for pin in 0..4u8 {
            let gsi = host.routing.gsi(slot, pin);
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

/// `_CRS` of an ISA device: its I/O regions and IRQs as the spec has them.
fn isa_crs(d: &DeviceSpec, ports: usize, irqs: usize) -> Vec<u8> {
    let mut t = ResourceTemplate::new();
    for r in d.io.iter().take(ports) {
        t = t.io(r.base, r.len.min(255) as u8);
    }
    for &irq in d.irqs.iter().take(irqs) {
        t = t.irq_no_flags(irq as u8);
    }
    t.build()
}

/// A named ISA device with `_HID` and `_CRS` (and `_STA` present when asked).
fn isa_device(name: &str, hid: Vec<u8>, extra: Vec<Vec<u8>>, crs: Vec<u8>) -> Vec<u8> {
    let mut terms = vec![aml::name("_HID", hid)];
    terms.extend(extra);
    terms.push(aml::name("_CRS", crs));
    aml::device(name, &terms)
}

/// The legacy devices of the machine, in a stable order.
fn isa_devices(spec: &MachineSpec) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut serials: Vec<&DeviceSpec> = spec.devices_of(Kind::Serial).collect();
    serials.sort_by_key(|d| d.io_base());
    for (i, d) in serials.iter().enumerate() {
        let uid = i + 1;
        let name = if uid <= 9 {
            format!("COM{uid}")
        } else {
            format!("S{uid:03X}")
        };
        let extra = vec![aml::name("_UID", aml::integer(uid as u64)), sta_present()];
        out.push(isa_device(
            &name,
            aml::eisa_id("PNP0501"),
            extra,
            isa_crs(d, 1, 1),
        ));
    }
    if let Some(d) = spec.devices_of(Kind::Rtc).next() {
        out.push(isa_device(
            "RTC",
            aml::eisa_id("PNP0B00"),
            vec![],
            isa_crs(d, 1, 1),
        ));
    }
    if let Some(d) = spec.devices_of(Kind::I8042).next() {
        let kbd = isa_crs(d, 2, 1);
        out.push(isa_device(
            "KBD",
            aml::eisa_id("PNP0303"),
            vec![sta_present()],
            kbd,
        ));
        let mouse = d.irqs.get(1).map_or_else(
            || ResourceTemplate::new().build(),
            |&irq| ResourceTemplate::new().irq_no_flags(irq as u8).build(),
        );
        out.push(isa_device(
            "MOU",
            aml::eisa_id("PNP0F13"),
            vec![sta_present()],
            mouse,
        ));
    }
    if let Some(d) = spec.devices_of(Kind::FwCfg).next() {
        // One range over the selector/data pair and the DMA address, as QEMU's.
        let crs = match (d.io.first(), d.io.last()) {
            (Some(a), Some(b)) => ResourceTemplate::new()
                .io(a.base, (b.base + b.len - a.base) as u8)
                .build(),
            _ => ResourceTemplate::new().build(),
        };
        let sta = vec![aml::name("_STA", aml::integer(0x0b))];
        out.push(isa_device("FWCF", aml::string("QEMU0002"), sta, crs));
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

    fn slot_gsi(spec: &MachineSpec, slot: u8, pin: u8) -> Option<u32> {
        spec.chipset.pci.as_ref().map(|h| h.routing.gsi(slot, pin))
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
        let pc = spec("pc");
        let (h, h64) = (pc.memory.pci_hole.unwrap(), pc.memory.pci_hole64.unwrap());
        assert_eq!(
            (h.base, h.end(), h64.base),
            (0x2000_0000, 0xfec0_0000, 4 << 30)
        );
        let h = spec("q35").memory.pci_hole.unwrap();
        assert_eq!(h.base, 0xc000_0000);
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
