//! The resolution passes, one group of tests each, on small machine files.

use std::path::Path;

use super::*;
use crate::config::reader::PciAddr;

fn spec(text: &str) -> MachineSpec {
    let (sources, r) = crate::check_str("t.toml", text, Path::new("/"));
    r.unwrap_or_else(|d| {
        let msgs: Vec<String> = d.iter().map(|d| d.render(&sources)).collect();
        panic!("{}", msgs.join("\n"))
    })
}

/// The first error's message and line:col.
fn error(text: &str) -> (String, String) {
    let (sources, r) = crate::check_str("t.toml", text, Path::new("/"));
    let d = r.expect_err("an error");
    let rendered = d[0].render(&sources);
    let at = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> t.toml:"))
        .unwrap_or("?")
        .to_string();
    (rendered, at)
}

fn dev<'a>(s: &'a MachineSpec, id: &str) -> &'a DeviceSpec {
    s.device(id).unwrap_or_else(|| panic!("no device {id}"))
}

// -- chipset: memory layout, chipset facts, claims ------------------------------------

#[test]
fn memory_layout_splits_around_the_hole() {
    let s = spec("[machine]\nboard = \"q35\"\nmemory = \"6GiB\"\n");
    assert_eq!((s.memory.below_4g, s.memory.above_4g), (2 << 30, 4 << 30));
    assert_eq!(s.memory.ram.len(), 2);
    let hole = s.memory.pci_hole.unwrap();
    assert_eq!((hole.base, hole.end()), (0xc000_0000, 0xfec0_0000));
    assert_eq!(s.memory.pci_hole64.unwrap().base, 8 << 30);
    assert_eq!(
        s.memory.reserved,
        vec![MmioRange {
            base: 0xb000_0000,
            len: 0x1000_0000
        }]
    );
    let m = spec("[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n");
    assert!(m.memory.pci_hole.is_none() && m.memory.reserved.is_empty());
}

#[test]
fn chipset_facts_come_from_the_board() {
    let pc = spec("[machine]\nboard = \"pc\"\n");
    let host = pc.chipset.pci.as_ref().unwrap();
    assert!(!host.express && host.ecam.is_none());
    assert_eq!(host.isa_bridge, PciAddr { slot: 1, func: 0 });
    assert_eq!(pc.chipset.reset_port, Some(0xcf9));
    let q35 = spec("[machine]\nboard = \"q35\"\n");
    let host = q35.chipset.pci.as_ref().unwrap();
    assert_eq!(host.ecam.map(|e| e.base), Some(0xb000_0000));
    assert_eq!(host.functions.len(), 2);
    assert!(spec("[machine]\nboard = \"microvm\"\n")
        .chipset
        .pci
        .is_none());
}

#[test]
fn the_cascade_irq_is_taken() {
    let (msg, at) = error("[[device]]\nid = \"com2\"\nkind = \"serial\"\nirq = 2\n");
    assert!(msg.contains("PIC cascade"), "{msg}");
    assert_eq!(at, "4:7");
}

#[test]
fn chipset_ports_are_taken() {
    let (msg, at) = error("[[device]]\nid = \"d\"\nkind = \"debugcon\"\nio = 0xcf8\n");
    assert!(msg.contains("PCI configuration ports"), "{msg}");
    assert_eq!(at, "4:6");
}

// -- plan: buses ------------------------------------------------------------------------

#[test]
fn devices_land_on_their_kinds_bus() {
    let s = spec("[machine]\nboard = \"q35\"\n");
    assert_eq!(dev(&s, "com1").bus, "isa");
    assert_eq!(dev(&s, "vga").bus, "pcie.0");
    assert_eq!(dev(&s, "ioapic").bus, "sysbus");
    let (msg, _) = error("[[device]]\nid = \"c\"\nkind = \"serial\"\nbus = \"pci.0\"\n");
    assert!(msg.contains("can't sit on"), "{msg}");
}

// -- PCI: slots and bus numbers -----------------------------------------------------

#[test]
fn pci_slots_and_bus_numbers() {
    let s = spec(
        "[machine]\nboard = \"q35\"\n[[bus]]\nid = \"rp1\"\nkind = \"pcie-root-port\"\naddr = \"1c.1\"\n\
         [[bus]]\nid = \"br\"\nkind = \"pci-bridge\"\nparent = \"rp1\"\n\
         [[bus]]\nid = \"rp0\"\nkind = \"pcie-root-port\"\naddr = \"1c.0\"\n\
         [[device]]\nid = \"n\"\nkind = \"nic\"\nbus = \"br\"\n\
         [[device]]\nid = \"m\"\nkind = \"nic\"\n",
    );
    let num = |id: &str| s.buses.iter().find(|b| b.id == id).and_then(|b| b.number);
    // Depth-first in address order, whatever the declaration order.
    assert_eq!(
        (num("rp0"), num("rp1"), num("br")),
        (Some(1), Some(2), Some(3))
    );
    // Bridges after their parents, root ports numbered in that order.
    let order: Vec<&str> = s.buses.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(order[3..], ["rp0", "rp1", "br"]);
    assert_eq!(s.buses[3].port, Some(0));
    let n = dev(&s, "n").pci.as_ref().unwrap();
    assert_eq!((n.bus_number, n.addr.slot), (3, 0));
    // First free slot on the root: 01 is the VGA, so 02.
    assert_eq!(dev(&s, "m").pci.as_ref().unwrap().addr.slot, 2);
}

#[test]
fn a_root_port_has_one_slot() {
    let (msg, _) = error(
        "[machine]\nboard = \"q35\"\n[[bus]]\nid = \"rp\"\nkind = \"pcie-root-port\"\n\
         [[device]]\nid = \"a\"\nkind = \"nic\"\nbus = \"rp\"\n\
         [[device]]\nid = \"b\"\nkind = \"nic\"\nbus = \"rp\"\n",
    );
    assert!(msg.contains("no free slot"), "{msg}");
}

// -- ISA: ports and IRQs --------------------------------------------------------------

#[test]
fn serial_ports_take_com_ports_in_order() {
    let s = spec(
        "[[device]]\nid = \"a\"\nkind = \"serial\"\n[[device]]\nid = \"b\"\nkind = \"serial\"\nio = 0x3e8\n\
         [[device]]\nid = \"c\"\nkind = \"serial\"\n",
    );
    let at = |id| (dev(&s, id).io_base(), dev(&s, id).irq());
    assert_eq!(at("com1"), (Some(0x3f8), Some(4)));
    assert_eq!(at("a"), (Some(0x2f8), Some(3)));
    assert_eq!(at("b"), (Some(0x3e8), Some(4)));
    assert_eq!(at("c"), (Some(0x2e8), Some(3)));
}

#[test]
fn isa_regions_follow_the_base() {
    let s = spec("[machine]\nboard = \"q35\"\n[[device]]\nid = \"pm\"\nio = 0xb000\n");
    let pm = dev(&s, "pm");
    assert_eq!(
        pm.io,
        vec![IoRange {
            base: 0xb000,
            len: 0x80
        }]
    );
    assert_eq!(pm.irqs, vec![9]);
    let i = dev(&s, "i8042");
    assert_eq!(
        i.io,
        vec![
            IoRange { base: 0x60, len: 1 },
            IoRange { base: 0x64, len: 1 }
        ]
    );
    assert_eq!(i.irqs, vec![1, 12]);
    let f = dev(&s, "fw_cfg");
    assert_eq!(
        f.io,
        vec![
            IoRange {
                base: 0x510,
                len: 2
            },
            IoRange {
                base: 0x514,
                len: 8
            }
        ]
    );
}

#[test]
fn fixed_devices_cant_move() {
    let (msg, at) = error("[[device]]\nid = \"rtc\"\nio = 0x170\n");
    assert!(msg.contains("fixed at 0x70"), "{msg}");
    assert_eq!(at, "3:6");
}

// -- MMIO -----------------------------------------------------------------------------

#[test]
fn virtio_mmio_windows() {
    let s = spec(
        "[machine]\nboard = \"microvm\"\n[[device]]\nid = \"a\"\nkind = \"nic\"\n\
         [[device]]\nid = \"b\"\nkind = \"nic\"\nmmio = 0xfeb00000\n",
    );
    assert_eq!(dev(&s, "b").mmio[0].base, 0xfeb0_0000);
    assert_eq!(
        dev(&s, "a").mmio[0].base,
        0xfeb0_0200,
        "the explicit one is claimed first"
    );
    let (msg, at) = error(
        "[machine]\nboard = \"microvm\"\n[[device]]\nid = \"a\"\nkind = \"nic\"\nmmio = 0x10000000000\n",
    );
    assert!(msg.contains("outside the guest's address space"), "{msg}");
    assert_eq!(at, "6:8");
}

#[test]
fn the_vga_decodes_its_legacy_ranges() {
    let s = spec("[machine]\nboard = \"pc\"\n");
    let v = dev(&s, "vga");
    assert_eq!(
        v.io[0],
        IoRange {
            base: 0x3b0,
            len: 0x30
        }
    );
    assert_eq!(
        v.mmio[0],
        MmioRange {
            base: 0xa_0000,
            len: 0x2_0000
        }
    );
    let p = v.pci.as_ref().unwrap();
    assert_eq!((p.pin, p.gsi), (0, None), "no interrupt pin");
}

// -- GSIs -------------------------------------------------------------------------------

#[test]
fn gsis_virtio_and_pci_routing() {
    let s = spec("[machine]\nboard = \"microvm\"\n[[device]]\nid = \"a\"\nkind = \"disk\"\npath = \"/dev/null\"\nreadonly = true\n");
    assert_eq!(dev(&s, "a").irqs, vec![16]);
    let s = spec(
        "[machine]\nboard = \"pc\"\n[[bus]]\nid = \"br\"\nkind = \"pci-bridge\"\naddr = \"04.0\"\n\
         [[device]]\nid = \"n\"\nkind = \"nic\"\nbus = \"br\"\naddr = \"01.0\"\n",
    );
    // INTA of 01.0 behind a bridge at 04.0 is INTB at slot 4: PIRQ (4 + 1 + 3) % 4 = A.
    assert_eq!(dev(&s, "n").pci.as_ref().unwrap().gsi, Some(10));
}

#[test]
fn the_mouse_irq_is_taken() {
    let (msg, at) = error("[[device]]\nid = \"c\"\nkind = \"serial\"\nio = 0x100\nirq = 12\n");
    assert!(msg.contains("device `i8042`"), "{msg}");
    assert_eq!(at, "5:7");
}

// -- properties -----------------------------------------------------------------------

#[test]
fn interrupt_controllers_cant_be_switched_off() {
    let (msg, at) = error("[[device]]\nid = \"ioapic\"\nenabled = false\n");
    assert!(msg.contains("can't be switched off"), "{msg}");
    assert_eq!(at, "3:11");
}

#[test]
fn typed_kinds() {
    let s = spec(
        "[machine]\nboard = \"q35\"\ncpus = 3\n[[device]]\nid = \"rtc\"\nclock = \"localtime\"\n",
    );
    assert_eq!(
        dev(&s, "rtc").kind,
        DeviceKind::Rtc {
            clock: RtcClock::Localtime
        }
    );
    assert_eq!(
        s.ioapic().map(|(_, id)| id),
        Some(3),
        "after the last CPU's APIC ID, 2"
    );
    let (_, l) = s.pm().unwrap();
    assert_eq!((l.gpe0_offset, l.s5_typ), (0x20, 7));
    for board in ["pc", "q35"] {
        let s = spec(&format!(
            "[machine]\nboard = \"{board}\"\n[[device]]\nid = \"n\"\nkind = \"nic\"\nmodel = \"e1000\"\n"
        ));
        assert!(
            matches!(
                dev(&s, "n").kind,
                DeviceKind::Nic {
                    model: NicModel::E1000,
                    ..
                }
            ),
            "{board}"
        );
        assert!(dev(&s, "n").pci.is_some(), "{board}: on PCI");
    }
    let (msg, _) = error(
        "[machine]\nboard = \"microvm\"\n[[device]]\nid = \"n\"\nkind = \"nic\"\nmodel = \"e1000\"\n",
    );
    assert!(msg.contains("is a PCI card"), "{msg}");
}

#[test]
fn control_qmp_is_a_path_relative_to_the_file() {
    let s = spec("[control]\nqmp = \"run/m.sock\"\n");
    assert_eq!(s.control.qmp.as_deref(), Some(Path::new("/run/m.sock")));
    assert_eq!(spec("").control.qmp, None);
    let shown = show::to_toml(&s);
    assert!(
        shown.contains("[control]\nqmp = \"/run/m.sock\""),
        "{shown}"
    );
    let (msg, _) = error("[control]\nqmpp = \"x\"\n");
    assert!(msg.contains("did you mean `qmp`"), "{msg}");
}
