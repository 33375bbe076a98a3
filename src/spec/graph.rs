//! `vmrun graph`: the bus and device tree as Graphviz DOT.

use std::fmt::Write as _;

use super::{DeviceSpec, MachineSpec};

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn device_label(d: &DeviceSpec) -> String {
    let mut l = format!("{}\\n{}", esc(&d.id), d.kind.name());
    if let Some(p) = &d.pci {
        let _ = write!(l, "\\n{:02x}:{}", p.bus_number, p.addr);
        if let Some(gsi) = p.gsi {
            let _ = write!(l, " → GSI {gsi}");
        }
    }
    if let (Some(io), None) = (d.io_base(), &d.pci) {
        let _ = write!(l, "\\nio {io:#x}");
    }
    if let (Some(irq), None) = (d.irq(), &d.pci) {
        let _ = write!(l, " irq {irq}");
    }
    if let (Some(m), None) = (d.mmio.first(), &d.pci) {
        let _ = write!(l, "\\nmmio {:#x}", m.base);
    }
    l
}

pub fn to_dot(spec: &MachineSpec) -> String {
    let board = spec.board.board();
    let mut o = String::new();
    let _ = writeln!(o, "digraph \"{}\" {{", esc(&spec.name));
    let _ = writeln!(
        o,
        "  rankdir=LR;\n  node [fontname=\"monospace\", fontsize=10];"
    );
    let _ = writeln!(
        o,
        "  \"machine\" [shape=box3d, label=\"{}\\nboard {} ({})\\n{} CPUs, {} MiB\"];",
        esc(&spec.name),
        board.name,
        board.title,
        spec.cpus.count(),
        spec.memory.size >> 20
    );
    for b in &spec.buses {
        let mut label = format!("{}\\n{}", esc(&b.id), b.kind.name());
        if let Some(n) = b.number {
            let _ = write!(label, " (bus {n})");
        }
        let _ = writeln!(
            o,
            "  \"bus:{}\" [shape=ellipse, label=\"{label}\"];",
            esc(&b.id)
        );
        match (&b.parent, b.addr) {
            (Some(p), Some(a)) => {
                let _ = writeln!(
                    o,
                    "  \"bus:{}\" -> \"bus:{}\" [label=\"{a}\"];",
                    esc(p),
                    esc(&b.id)
                );
            }
            _ => {
                let _ = writeln!(o, "  \"machine\" -> \"bus:{}\";", esc(&b.id));
            }
        }
    }
    for d in &spec.devices {
        let style = if d.from_board { ", style=dashed" } else { "" };
        let _ = writeln!(
            o,
            "  \"dev:{}\" [shape=box{style}, label=\"{}\"];",
            esc(&d.id),
            device_label(d)
        );
        let _ = writeln!(o, "  \"bus:{}\" -> \"dev:{}\";", esc(&d.bus), esc(&d.id));
    }
    o.push_str("}\n");
    o
}
