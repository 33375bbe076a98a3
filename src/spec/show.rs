//! `vmrun show`: the resolved spec as a machine file — defaults expanded, every
//! resource explicit, buses and devices sorted by id — so it diffs cleanly and reads
//! back to the same spec.

use std::fmt::Write as _;
use std::path::Path;

use super::{
    mac_string, ArtifactSpec, CharBackend, DeviceKind, DeviceSpec, FwCfgData, MachineSpec,
    NicBackend, RtcClock,
};
use crate::config::units::format_size;

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

fn artifact(a: &ArtifactSpec) -> String {
    match &a.sha256 {
        Some(h) => format!("{{ path = {}, sha256 = {} }}", qp(&a.path), q(h)),
        None => qp(&a.path),
    }
}

pub fn to_toml(spec: &MachineSpec) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# The resolved machine: every default expanded and every resource assigned."
    );
    let _ = writeln!(o, "[machine]");
    let _ = writeln!(o, "name = {}", q(&spec.name));
    let _ = writeln!(o, "board = {}", q(spec.board.board().name));
    let _ = writeln!(
        o,
        "memory = {}  # {} below 4 GiB, {} above",
        q(&format_size(spec.memory.size)),
        format_size(spec.memory.below_4g),
        format_size(spec.memory.above_4g)
    );
    let c = &spec.cpus;
    let _ = writeln!(
        o,
        "cpus = {}\nsockets = {}\ncores = {}\nthreads = {}",
        c.count(),
        c.sockets,
        c.cores,
        c.threads
    );
    let _ = writeln!(o, "defaults = false");
    let b = &spec.boot;
    if b.kernel.is_some() || b.firmware.is_some() || !b.cmdline.is_empty() || b.snapshot.is_some() {
        let _ = writeln!(o, "\n[boot]");
        if let Some(k) = &b.kernel {
            let _ = writeln!(o, "kernel = {}", artifact(k));
        }
        if let Some(i) = &b.initrd {
            let _ = writeln!(o, "initrd = {}", artifact(i));
        }
        if b.kernel.is_some() || !b.cmdline.is_empty() {
            let _ = writeln!(o, "cmdline = {}", q(&b.cmdline));
        }
        if let Some(f) = &b.firmware {
            let _ = writeln!(o, "firmware = {}", artifact(f));
        }
        if let Some(s) = &b.snapshot {
            let _ = writeln!(o, "snapshot = {}", artifact(s));
        }
    }
    if let Some(p) = &spec.control.qmp {
        let _ = writeln!(o, "\n[control]\nqmp = {}", q(&p.display().to_string()));
    }
    let mut buses: Vec<_> = spec.buses.iter().filter(|b| b.parent.is_some()).collect();
    buses.sort_by(|a, b| a.id.cmp(&b.id));
    for bus in buses {
        let _ = writeln!(
            o,
            "\n[[bus]]\nid = {}\nkind = {}",
            q(&bus.id),
            q(bus.kind.name())
        );
        if let Some(p) = &bus.parent {
            let _ = writeln!(o, "parent = {}", q(p));
        }
        if let Some(a) = bus.addr {
            let _ = write!(o, "addr = {}", q(&a.to_string()));
            if let Some(n) = bus.number {
                let _ = write!(o, "  # secondary bus {n}");
            }
            o.push('\n');
        }
    }
    for d in &spec.devices {
        device(&mut o, d);
    }
    o
}

fn device(o: &mut String, d: &DeviceSpec) {
    let _ = writeln!(
        o,
        "\n[[device]]\nid = {}\nkind = {}\nbus = {}",
        q(&d.id),
        q(d.kind.name()),
        q(&d.bus)
    );
    if let Some(p) = &d.pci {
        let intx = match p.gsi {
            Some(gsi) => format!(", INT{} → GSI {gsi}", (b'A' + p.pin - 1) as char),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "addr = {}  # {:02x}:{}{intx}",
            q(&p.addr.to_string()),
            p.bus_number,
            p.addr
        );
    }
    let isa = d.bus == "isa";
    if let (Some(io), true) = (d.io_base(), isa) {
        let ranges: Vec<String> =
            d.io.iter()
                .map(|r| {
                    if r.len == 1 {
                        format!("{:#x}", r.base)
                    } else {
                        format!("{:#x}-{:#x}", r.base, r.base + (r.len - 1))
                    }
                })
                .collect();
        let _ = writeln!(o, "io = {io:#x}  # ports {}", ranges.join(", "));
    }
    let sysbus_virtio = d.bus_kind_is_sysbus()
        && matches!(d.kind, DeviceKind::Nic { .. } | DeviceKind::Disk { .. });
    if let (Some(irq), true) = (d.irq(), isa || sysbus_virtio) {
        let more: Vec<String> = d.irqs.iter().skip(1).map(u32::to_string).collect();
        if more.is_empty() {
            let _ = writeln!(o, "irq = {irq}");
        } else {
            let _ = writeln!(o, "irq = {irq}  # also {}", more.join(", "));
        }
    }
    if let (Some(m), true) = (d.mmio.first(), sysbus_virtio) {
        let _ = writeln!(o, "mmio = {:#x}  # {:#x} bytes", m.base, m.len);
    }
    match &d.kind {
        DeviceKind::Serial { backend, log } => {
            chardev(o, backend);
            if let Some(l) = log {
                let _ = writeln!(o, "log = {}", qp(l));
            }
        }
        DeviceKind::Debugcon { backend } => chardev(o, backend),
        DeviceKind::Rtc { clock } => {
            let name = match clock {
                RtcClock::Utc => "utc",
                RtcClock::Localtime => "localtime",
            };
            let _ = writeln!(o, "clock = {}", q(name));
        }
        DeviceKind::FwCfg { files } => {
            let items: Vec<String> = files
                .iter()
                .map(|(name, data)| match data {
                    FwCfgData::File(p) => format!("{{ name = {}, path = {} }}", q(name), qp(p)),
                    FwCfgData::Inline(s) => format!("{{ name = {}, string = {} }}", q(name), q(s)),
                })
                .collect();
            let _ = writeln!(o, "files = [{}]", items.join(", "));
        }
        DeviceKind::Vga { vram } => {
            let _ = writeln!(o, "vram = {}", q(&format_size(*vram)));
        }
        DeviceKind::Nic {
            model,
            mac,
            backend,
        } => {
            let _ = writeln!(
                o,
                "model = {}\nmac = {}",
                q(model.name()),
                q(&mac_string(mac))
            );
            match backend {
                NicBackend::None => {
                    let _ = writeln!(o, "backend = \"none\"");
                }
                NicBackend::Tap(name) => {
                    let _ = writeln!(o, "backend = \"tap\"");
                    if let Some(n) = name {
                        let _ = writeln!(o, "tap = {}", q(n));
                    }
                }
                NicBackend::Switch(p) => {
                    let _ = writeln!(o, "backend = \"switch\"\nswitch = {}", qp(p));
                }
                NicBackend::Dgram { local, remote } => {
                    let (l, r) = (local.to_string(), remote.to_string());
                    let _ = writeln!(
                        o,
                        "backend = \"dgram\"\nlocal = {}\nremote = {}",
                        q(&l),
                        q(&r)
                    );
                }
            }
        }
        DeviceKind::Disk {
            path,
            readonly,
            format,
            overlay,
        } => {
            let _ = writeln!(
                o,
                "path = {}\nreadonly = {readonly}\nformat = {}",
                qp(path),
                q(format.name())
            );
            if *overlay {
                let _ = writeln!(o, "overlay = true");
            }
        }
        DeviceKind::I8042
        | DeviceKind::Pm { .. }
        | DeviceKind::Pit
        | DeviceKind::Pic
        | DeviceKind::Ioapic { .. } => {}
    }
}

impl DeviceSpec {
    fn bus_kind_is_sysbus(&self) -> bool {
        self.bus == "sysbus"
    }
}

fn chardev(o: &mut String, b: &CharBackend) {
    let (name, path) = match b {
        CharBackend::Stdio => ("stdio", None),
        CharBackend::Stderr => ("stderr", None),
        CharBackend::File(p) => ("file", Some(p)),
        CharBackend::Socket(p) => ("socket", Some(p)),
        CharBackend::Pty => ("pty", None),
        CharBackend::Null => ("null", None),
    };
    let _ = writeln!(o, "backend = {}", q(name));
    if let Some(p) = path {
        let _ = writeln!(o, "path = {}", qp(p));
    }
}
