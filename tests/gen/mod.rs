//! A generator of valid machine files: from a seed, a random machine that `vmrun check`
//! accepts, written into a directory with everything it names (disk images, fw_cfg
//! files, the base file it extends). It covers every board, memory sizes below and
//! above 4 GiB, CPU topologies, PCI bridges and PCIe root ports nested, every device
//! kind with and without explicit `io`/`irq`/`addr`/`mmio`, serial backends file, null
//! and socket (never stdio: the tests run without a terminal), NICs with backend none,
//! raw disks, fw_cfg files, overrides and removals of board defaults, and `extends`.
//!
//! COM1 always goes to a file, so a probe booted on the machine can be read back, and
//! the PM block is always there, so the probe can power off. Used by tests/generated.rs
//! (check accepts every file), tests/schema.rs (every file validates) and
//! tests/contract.rs (every file boots).
#![allow(dead_code)]

mod layout;
mod toml;

use std::path::{Path, PathBuf};

use layout::{Isa, Pci};
use toml::{Entry, File};

/// xorshift64*: deterministic, so a failure names a reproducible seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One generated machine.
pub struct Generated {
    /// The machine file to check or run.
    pub path: PathBuf,
    /// Every machine file written (the top one and the one it extends).
    pub files: Vec<PathBuf>,
    /// Where COM1's output goes.
    pub com1_log: PathBuf,
    pub board: &'static str,
    /// Number of vCPUs.
    pub cpus: u32,
}

impl Generated {
    /// Every file's name and text, for failure messages.
    pub fn dump(&self) -> String {
        self.files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                format!("==> {} <==\n{text}", f.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Loads and checks a machine file: the spec, or every diagnostic rendered.
pub fn check(path: &Path) -> Result<vmrun::spec::MachineSpec, String> {
    let (sources, r) = vmrun::load_and_check(path).map_err(|e| vmrun::error_chain(&e))?;
    r.map_err(|d| {
        d.iter()
            .map(|d| d.render(&sources))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// What the generator is building: the top file's tables, before any `extends` split.
struct Gen<'a> {
    rng: Rng,
    dir: &'a Path,
    board: &'static str,
    machine: Vec<(String, String)>,
    entries: Vec<Entry>,
    isa: Isa,
    pci: Option<Pci>,
    /// virtio-mmio slots and GSIs still free (microvm).
    mmio_slots: Vec<u64>,
    mmio_gsis: Vec<u32>,
    files_made: usize,
}

/// Writes a random valid machine for `seed` into `dir` (created if missing).
pub fn generate(seed: u64, dir: &Path) -> Generated {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(seed);
    let board = rng.pick(&["pc", "q35", "microvm"]);
    let mut g = Gen {
        pci: Pci::for_board(board),
        rng,
        dir,
        board,
        machine: Vec::new(),
        entries: Vec::new(),
        isa: Isa::for_board(board),
        mmio_slots: (0..32).map(|i| 0xfeb0_0000 + i * 0x200).collect(),
        mmio_gsis: (16..24).collect(),
        files_made: 0,
    };
    let cpus = g.machine_table(seed);
    let defaults = !g.rng.chance(10);
    if !defaults {
        g.machine.push(("defaults".into(), "false".into()));
    }
    let com1_log = dir.join("com1.log");
    g.com1(defaults, &com1_log);
    g.board_devices(defaults);
    g.buses();
    for i in 0..g.rng.below(4) {
        g.serial(i + 2);
    }
    if g.rng.chance(30) {
        g.debugcon();
    }
    for i in 0..g.rng.below(4) {
        g.nic(i);
    }
    for i in 0..g.rng.below(4) {
        g.disk(i);
    }
    g.rng.0 ^= seed;
    let top = File {
        machine: g.machine,
        entries: g.entries,
    };
    let name = if g.rng.chance(50) {
        "m.toml"
    } else {
        "gen.toml"
    };
    let path = dir.join(name);
    let mut files = vec![path.clone()];
    if g.rng.chance(25) {
        let (base, top) = top.split(&mut g.rng);
        let base_path = dir.join("base.toml");
        std::fs::write(&base_path, base.render(None)).unwrap();
        std::fs::write(&path, top.render(Some("base.toml"))).unwrap();
        files.push(base_path);
    } else {
        std::fs::write(&path, top.render(None)).unwrap();
    }
    Generated {
        path,
        files,
        com1_log,
        board,
        cpus,
    }
}

impl Gen<'_> {
    /// A file in the machine's directory, named relative (as the machine file would
    /// write it) or absolute.
    fn path_value(&mut self, name: &str) -> String {
        if self.rng.chance(50) {
            toml::string(name)
        } else {
            toml::string(&self.dir.join(name).display().to_string())
        }
    }

    fn new_file(&mut self, stem: &str, ext: &str) -> String {
        self.files_made += 1;
        format!("{stem}{}.{ext}", self.files_made)
    }

    fn machine_table(&mut self, seed: u64) -> u32 {
        let m = &mut self.machine;
        if self.rng.chance(70) {
            m.push(("name".into(), toml::string(&format!("gen-{seed}"))));
        }
        if self.board != "pc" || self.rng.chance(50) {
            m.push(("board".into(), toml::string(self.board)));
        }
        let sizes: &[&str] = &[
            "16MiB",
            "64MiB",
            "128MiB",
            "256 MiB",
            "512MiB",
            "1GiB",
            "1536MiB",
            "2GiB",
            "3GiB",
            "3584MiB",
            "4GiB",
            "5GiB",
            "6GiB",
            "262144KiB",
            "8MiB",
        ];
        let mut mem = self.rng.pick(sizes);
        if mem == "8MiB" && self.board != "microvm" {
            mem = "32MiB";
        }
        if self.rng.chance(85) {
            m.push(("memory".into(), toml::string(mem)));
        }
        let sockets = self.rng.pick(&[1u32, 1, 2]);
        let cores = self.rng.pick(&[1u32, 1, 2, 3, 4]);
        let threads = self.rng.pick(&[1u32, 1, 2]);
        let cpus = sockets * cores * threads;
        let int = |v: u32| v.to_string();
        match self.rng.below(5) {
            0 => return 1,
            1 => m.push(("cpus".into(), int(cpus))),
            2 => {
                m.push(("cpus".into(), int(cpus)));
                m.push(("sockets".into(), int(sockets)));
                m.push(("threads".into(), int(threads)));
            }
            3 => {
                m.push(("sockets".into(), int(sockets)));
                m.push(("cores".into(), int(cores)));
                m.push(("threads".into(), int(threads)));
            }
            _ => {
                m.push(("cpus".into(), int(cpus)));
                m.push(("sockets".into(), int(sockets)));
                m.push(("cores".into(), int(cores)));
                m.push(("threads".into(), int(threads)));
            }
        }
        cpus
    }

    fn com1(&mut self, defaults: bool, log: &Path) {
        let mut e = Entry::device("com1", (!defaults).then_some("serial"));
        e.set("backend", toml::string("file"));
        e.set("path", toml::string(&log.display().to_string()));
        // Declared (defaults = false), COM1 is pinned: an `extends` split may put
        // another serial port first, which would take 0x3f8 automatically.
        if !defaults || self.rng.chance(10) {
            e.set("io", "0x3f8".into());
        }
        if self.rng.chance(20) {
            e.set("irq", "4".into());
        }
        self.isa.take_com(0x3f8);
        self.entries.push(e);
    }

    /// Overrides, removals and (without defaults) re-declarations of the board's
    /// devices.
    fn board_devices(&mut self, defaults: bool) {
        let pc_like = self.board != "microvm";
        // The PM block stays: the probe powers off through it.
        let pm_bases: &[u16] = &[0x600, 0x700, 0x800];
        let mut pm = Entry::device("pm", (!defaults).then_some("pm"));
        if self.rng.chance(25) {
            pm.set("io", toml::hex(self.rng.pick(pm_bases) as u64));
        }
        if self.rng.chance(15) {
            pm.set("irq", "9".into());
        }
        self.push_if_keys(pm, !defaults);
        let fixed: &[(&str, u16, u8, bool)] = &[
            ("rtc", 0x70, 8, pc_like),
            ("i8042", 0x60, 1, pc_like),
            ("pit", 0x40, 0, true),
        ];
        for &(id, io, irq, on_board) in fixed {
            if !on_board {
                continue;
            }
            let present = if defaults {
                !self.rng.chance(10)
            } else {
                self.rng.chance(60)
            };
            let mut e = Entry::device(id, (!defaults).then_some(id));
            if defaults && !present {
                e.set("enabled", "false".into());
                self.entries.push(e);
                continue;
            }
            if !present {
                continue;
            }
            if self.rng.chance(20) {
                e.set("io", toml::hex(io as u64));
            }
            if self.rng.chance(20) {
                e.set("irq", irq.to_string());
            }
            if id == "rtc" && self.rng.chance(30) {
                let c = self.rng.pick(&["utc", "localtime"]);
                e.set("clock", toml::string(c));
            }
            self.push_if_keys(e, !defaults);
        }
        if pc_like {
            self.fw_cfg(defaults);
            self.vga(defaults);
        }
        if self.rng.chance(10) {
            let id = self.rng.pick(&["pic", "ioapic"]);
            let mut e = Entry::device(id, Some(id));
            if id == "pic" && self.rng.chance(50) {
                e.set("io", "0x20".into());
            }
            self.entries.push(e);
        }
    }

    /// An override with no keys but its id is noise; a declaration always goes in.
    fn push_if_keys(&mut self, e: Entry, declared: bool) {
        if declared || !e.keys.is_empty() || self.rng.chance(10) {
            self.entries.push(e);
        }
    }

    fn fw_cfg(&mut self, defaults: bool) {
        let present = defaults || self.rng.chance(60);
        if !present {
            return;
        }
        let mut e = Entry::device("fw_cfg", (!defaults).then_some("fw_cfg"));
        if self.rng.chance(15) {
            e.set("io", "0x510".into());
        }
        let n = self.rng.below(4);
        let mut files = Vec::new();
        for i in 0..n {
            let name = toml::string(&format!("opt/gen/file{i}"));
            if self.rng.chance(50) {
                let s = toml::string(&format!("contents of file {i}"));
                files.push(format!("{{ name = {name}, string = {s} }}"));
            } else {
                let f = self.new_file("fwcfg", "bin");
                std::fs::write(self.dir.join(&f), format!("file {i}\n")).unwrap();
                let p = self.path_value(&f);
                files.push(format!("{{ name = {name}, path = {p} }}"));
            }
        }
        if !files.is_empty() {
            e.set("files", format!("[{}]", files.join(", ")));
        }
        self.push_if_keys(e, !defaults);
    }

    fn vga(&mut self, defaults: bool) {
        let default_slot = if self.board == "pc" { 2 } else { 1 };
        let present = if defaults {
            !self.rng.chance(15)
        } else {
            self.rng.chance(40)
        };
        let mut e = Entry::device("vga", (!defaults).then_some("vga"));
        if !present {
            if defaults {
                e.set("enabled", "false".into());
                self.entries.push(e);
            }
            return;
        }
        let pci = self.pci.as_mut().expect("pc and q35 have PCI");
        if defaults && self.rng.chance(70) {
            pci.claim(0, default_slot);
        } else if let Some(a) = pci.place(&mut self.rng, 0, true) {
            e.set("addr", a);
        }
        if self.rng.chance(40) {
            let v = self.rng.pick(&["1MiB", "4MiB", "8MiB", "16MiB", "32MiB"]);
            e.set("vram", toml::string(v));
        }
        self.push_if_keys(e, !defaults);
    }

    fn buses(&mut self) {
        let Some(pci) = self.pci.as_mut() else {
            return;
        };
        for i in 0..self.rng.below(4) {
            let root_port = pci.express && self.rng.chance(60);
            let parent = if root_port {
                Some(0)
            } else {
                pci.pick_bus(&mut self.rng)
            };
            let Some(parent) = parent else { continue };
            let id = format!("{}{i}", if root_port { "rp" } else { "br" });
            let mut e = Entry::bus(
                &id,
                if root_port {
                    "pcie-root-port"
                } else {
                    "pci-bridge"
                },
            );
            if parent != 0 || self.rng.chance(30) {
                e.set("parent", toml::string(&pci.buses[parent].id));
            }
            let explicit = root_port || self.rng.chance(50);
            if let Some(a) = pci.place(&mut self.rng, parent, explicit) {
                e.set("addr", a);
            }
            pci.add_bus(&id, root_port);
            self.entries.push(e);
        }
    }

    fn serial(&mut self, n: usize) {
        let mut e = Entry::device(&format!("com{n}"), Some("serial"));
        match self.rng.below(3) {
            0 => {}
            1 => {
                if let Some(p) = self.isa.pick_com(&mut self.rng) {
                    e.set("io", toml::hex(p as u64));
                    if self.rng.chance(30) {
                        e.set("irq", self.rng.pick(&[3u8, 4]).to_string());
                    }
                }
            }
            _ => {
                if let Some(p) = self.isa.pick_port(&mut self.rng, 8) {
                    e.set("io", toml::hex(p as u64));
                    e.set("irq", self.rng.pick(&[3u8, 4]).to_string());
                }
            }
        }
        // Without `io` the port is the first free COM port.
        if !e.has("io") && !self.isa.take_any_com() {
            return;
        }
        self.char_backend(&mut e, &["file", "null", "socket"]);
        if self.rng.chance(15) {
            let f = self.new_file("serial-log", "txt");
            let p = self.path_value(&f);
            e.set("log", p);
        }
        self.entries.push(e);
    }

    fn char_backend(&mut self, e: &mut Entry, backends: &[&'static str]) {
        let b = self.rng.pick(backends);
        if b != "null" || self.rng.chance(50) {
            e.set("backend", toml::string(b));
        }
        if b == "file" || b == "socket" {
            let f = self.new_file(if b == "file" { "out" } else { "s" }, b);
            let p = self.path_value(&f);
            e.set("path", p);
        }
    }

    fn debugcon(&mut self) {
        let mut e = Entry::device("dbg", Some("debugcon"));
        if self.rng.chance(50) {
            if let Some(p) = self.isa.pick_port(&mut self.rng, 1) {
                e.set("io", toml::hex(p as u64));
            }
        } else {
            self.isa.take(0x402, 1);
        }
        self.char_backend(&mut e, &["file", "null"]);
        self.entries.push(e);
    }

    /// `bus` and `addr` of a PCI device, or `bus`, `mmio` and `irq` of a virtio-mmio one.
    fn place_virtio(&mut self, e: &mut Entry) -> bool {
        if let Some(pci) = self.pci.as_mut() {
            let Some(bus) = pci.pick_bus(&mut self.rng) else {
                return false;
            };
            if bus != 0 || self.rng.chance(20) {
                e.set("bus", toml::string(&pci.buses[bus].id));
            }
            let explicit = self.rng.chance(40);
            if let Some(a) = pci.place(&mut self.rng, bus, explicit) {
                e.set("addr", a);
            }
            return true;
        }
        if self.rng.chance(20) {
            e.set("bus", toml::string("sysbus"));
        }
        if self.rng.chance(40) {
            let i = self.rng.below(self.mmio_slots.len());
            let base = self.mmio_slots.remove(i);
            e.set("mmio", toml::hex(base));
        }
        if self.rng.chance(30) {
            let i = self.rng.below(self.mmio_gsis.len());
            let gsi = self.mmio_gsis.remove(i);
            e.set("irq", gsi.to_string());
        }
        true
    }

    fn nic(&mut self, n: usize) {
        let mut e = Entry::device(&format!("net{n}"), Some("nic"));
        if !self.place_virtio(&mut e) {
            return;
        }
        if self.rng.chance(20) {
            e.set("model", toml::string("virtio-net"));
        }
        if self.rng.chance(40) {
            // 02:... is locally administered and never a derived 52:54:00:... address.
            let mac = format!("02:00:00:00:{:02x}:{:02x}", n, self.rng.below(256));
            e.set("mac", toml::string(&mac));
        }
        if self.rng.chance(30) {
            e.set("backend", toml::string("none"));
        }
        self.entries.push(e);
    }

    fn disk(&mut self, n: usize) {
        let mut e = Entry::device(&format!("disk{n}"), Some("disk"));
        if !self.place_virtio(&mut e) {
            return;
        }
        let f = self.new_file("disk", "img");
        let sectors = self.rng.pick(&[8u64, 64, 2048]);
        std::fs::write(self.dir.join(&f), vec![0u8; (sectors * 512) as usize]).unwrap();
        let p = self.path_value(&f);
        e.set("path", p);
        if self.rng.chance(30) {
            e.set("readonly", self.rng.pick(&["true", "false"]).into());
        }
        if self.rng.chance(20) {
            e.set("format", toml::string("raw"));
        }
        self.entries.push(e);
    }
}
