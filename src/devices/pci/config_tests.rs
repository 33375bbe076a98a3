use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::devices::pci::ROM_BAR;

fn ids() -> PciIds {
    PciIds {
        vendor: 0x1af4,
        device: 0x1042,
        class: 0x010000,
        revision: 1,
        subsystem_vendor: 0x1af4,
        subsystem: 0x0002,
    }
}

fn w32(c: &mut PciConfig, off: u16, v: u32) {
    c.write(off, &v.to_le_bytes());
}

#[test]
fn header_fields_are_read_only() {
    let mut c = PciConfig::new(ids());
    assert_eq!(c.u32(0), 0x1042_1af4);
    assert_eq!(c.u32(8), 0x0100_0001);
    assert_eq!(c.u32(0x2c), 0x0002_1af4);
    w32(&mut c, 0, 0xdead_beef);
    w32(&mut c, 8, 0xdead_beef);
    w32(&mut c, 0x2c, 0xdead_beef);
    assert_eq!(c.u32(0), 0x1042_1af4);
    assert_eq!(c.u32(8), 0x0100_0001);
    assert_eq!(c.u32(0x2c), 0x0002_1af4);
    // Command: only the defined bits stick.
    c.write(COMMAND, &0xffffu16.to_le_bytes());
    assert_eq!(c.command(), 0x0547);
    // Interrupt line is writable, pin is not.
    c.set_interrupt_pin(1);
    c.write(INTERRUPT_LINE, &[11, 3]);
    assert_eq!(c.u16(INTERRUPT_LINE), 0x010b);
    // Past the end: 0xff, writes dropped.
    let mut b = [0u8; 4];
    c.read(254, &mut b);
    assert_eq!(b, [0, 0, 0xff, 0xff]);
    c.write(255, &[1, 2, 3]);
}

#[test]
fn status_w1c() {
    let mut c = PciConfig::new(ids());
    c.set_u16(STATUS, 0xf910);
    c.write(STATUS, &0x0000u16.to_le_bytes());
    assert_eq!(c.u16(STATUS), 0xf910);
    c.write(STATUS, &0x8100u16.to_le_bytes());
    assert_eq!(c.u16(STATUS), 0x7810);
    c.write(STATUS, &0xffffu16.to_le_bytes());
    assert_eq!(c.u16(STATUS), 0x0010);
}

#[test]
fn bar_sizing() {
    let mut c = PciConfig::new(ids());
    c.add_bar(0, BarDef::io(0x20)).unwrap();
    c.add_bar(1, BarDef::mem32(0x1000)).unwrap();
    c.add_bar(2, BarDef::mem64(0x4000).prefetchable()).unwrap();
    assert_eq!(c.add_bar(3, BarDef::io(4)), Err(PciConfigError::BadBar(3)));
    assert_eq!(
        c.add_bar(5, BarDef::mem64(16)),
        Err(PciConfigError::BadBar(5))
    );
    assert_eq!(c.u32(0x10), 1);
    assert_eq!(c.u32(0x14), 0);
    assert_eq!(c.u32(0x18), 0xc);
    for off in [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24] {
        w32(&mut c, off, 0xffff_ffff);
    }
    assert_eq!(c.u32(0x10), 0xffff_ffe1);
    assert_eq!(c.u32(0x14), 0xffff_f000);
    assert_eq!(c.u32(0x18), 0xffff_c00c);
    assert_eq!(c.u32(0x1c), 0xffff_ffff);
    assert_eq!(c.u32(0x20), 0);
    assert_eq!(c.u32(0x24), 0);
    // Program them; nothing decodes until the command register says so.
    w32(&mut c, 0x10, 0xc000);
    w32(&mut c, 0x14, 0xfebf_1234);
    w32(&mut c, 0x18, 0);
    w32(&mut c, 0x1c, 0x8);
    let r = c.bar_regions();
    assert_eq!(r.len(), 3);
    assert_eq!((r[0].base, r[0].size, r[0].enabled), (0xc000, 0x20, false));
    assert_eq!((r[1].base, r[1].size), (0xfebf_1000, 0x1000));
    assert_eq!(
        (r[2].base, r[2].kind, r[2].prefetchable),
        (0x8_0000_0000, BarKind::Mem64, true)
    );
    c.write(COMMAND, &[CMD_IO as u8]);
    let r = c.bar_regions();
    assert!(r[0].enabled && !r[1].enabled && !r[2].enabled);
    c.write(COMMAND, &[(CMD_IO | CMD_MEMORY) as u8]);
    assert!(c.bar_regions().iter().all(|r| r.enabled));
}

#[test]
fn rom_bar() {
    let mut c = PciConfig::new(ids());
    c.set_rom(vec![0x55, 0xaa, 3]);
    w32(&mut c, ROM_ADDRESS, 0xffff_ffff);
    assert_eq!(c.u32(ROM_ADDRESS), 0xffff_f801);
    w32(&mut c, ROM_ADDRESS, 0xfeb0_0000);
    c.write(COMMAND, &[CMD_MEMORY as u8]);
    let r = c.bar_regions();
    assert_eq!(r[0].bar, ROM_BAR);
    assert!(!r[0].enabled);
    w32(&mut c, ROM_ADDRESS, 0xfeb0_0001);
    let r = c.bar_regions();
    assert_eq!(
        (r[0].base, r[0].size, r[0].enabled),
        (0xfeb0_0000, 2048, true)
    );
    let mut b = [0u8; 4];
    c.rom_read(1, &mut b);
    assert_eq!(b, [0xaa, 3, 0xff, 0xff]);
    c.rom_read(u64::MAX, &mut b);
    assert_eq!(b, [0xff; 4]);
}

#[test]
fn capability_list() {
    let mut c = PciConfig::new(ids());
    assert_eq!(c.u16(STATUS) & STATUS_CAP_LIST, 0);
    let a = c.add_capability(CAP_ID_VENDOR, &[14, 1, 2, 3, 4]).unwrap();
    let b = c.add_capability(CAP_ID_MSIX, &[0; 10]).unwrap();
    assert_eq!(a, 0x40);
    assert_eq!(b, 0x48);
    assert_eq!(c.u8(CAP_PTR), 0x40);
    assert_eq!(c.u16(0x40), 0x4809);
    assert_eq!(c.u16(0x48), 0x0011);
    assert_ne!(c.u16(STATUS) & STATUS_CAP_LIST, 0);
    assert_eq!(c.find_capability(CAP_ID_MSIX), Some(0x48));
    assert_eq!(c.find_capability(CAP_ID_EXP), None);
    // Read-only until opened.
    c.write(0x4a, &[0xff, 0xff]);
    assert_eq!(c.u16(0x4a), 0);
    c.set_wmask(0x4a, &[0x00, 0xc0]);
    c.write(0x4a, &[0xff, 0xff]);
    assert_eq!(c.u16(0x4a), 0xc000);
    assert!(c.add_capability(1, &[0; 200]).is_err());
    // Extended capabilities need PCIe.
    assert_eq!(
        c.add_ext_capability(1, 1, &[]),
        Err(PciConfigError::NotPcie)
    );
    let mut e = PciConfig::new_pcie(ids());
    assert_eq!(e.add_ext_capability(0x0b, 1, &[0; 4]).unwrap(), 0x100);
    assert_eq!(e.add_ext_capability(0x0d, 1, &[]).unwrap(), 0x108);
    assert_eq!(e.u32(0x100), 0x1081_000b);
}

#[derive(Default)]
struct Line(AtomicBool);
impl crate::devices::IrqLine for Line {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::SeqCst);
    }
}

#[test]
fn intx_and_disable() {
    let mut c = PciConfig::new(ids());
    let line = Arc::new(Line::default());
    c.set_intx_line(line.clone());
    c.set_intx(true);
    assert!(line.0.load(Ordering::SeqCst));
    assert_ne!(c.u16(STATUS) & STATUS_INTERRUPT, 0);
    c.write(COMMAND, &CMD_INTX_DISABLE.to_le_bytes());
    assert!(!line.0.load(Ordering::SeqCst));
    assert_ne!(c.u16(STATUS) & STATUS_INTERRUPT, 0);
    c.write(COMMAND, &[0, 0]);
    assert!(line.0.load(Ordering::SeqCst));
    c.set_intx(false);
    assert!(!line.0.load(Ordering::SeqCst));
    assert_eq!(c.u16(STATUS) & STATUS_INTERRUPT, 0);
}

#[test]
fn bridge_header() {
    let mut c = PciConfig::new_bridge(
        PciIds {
            vendor: 0x1b36,
            device: 1,
            class: 0x060400,
            ..Default::default()
        },
        false,
    );
    assert_eq!(c.header_type(), 1);
    w32(&mut c, PRIMARY_BUS, 0x00_05_01_00);
    assert_eq!(c.u32(PRIMARY_BUS), 0x00_05_01_00);
    c.write(IO_BASE, &[0xff, 0xff]);
    assert_eq!(c.u16(IO_BASE), 0xf0f0);
    w32(&mut c, MEMORY_BASE, 0xffff_ffff);
    assert_eq!(c.u32(MEMORY_BASE), 0xfff0_fff0);
    w32(&mut c, PREF_MEMORY_BASE, 0);
    assert_eq!(c.u32(PREF_MEMORY_BASE), 0x0001_0001);
    c.set_multifunction(true);
    assert_eq!(c.u8(HEADER_TYPE), 0x81);
}
