//! The PCI root: the bus tree (root bus, bridges, functions), config cycles through
//! configuration mechanism #1 (ports 0xCF8/0xCFC, [`PciPorts`]) and ECAM ([`Ecam`]),
//! BAR decoding, and INTx lines shared per GSI.
//!
//! Config cycles follow the bus numbers the guest programmed in the bridges: a cycle
//! for bus N goes through the bridge whose [secondary, subordinate] holds N, like
//! hardware, so the guest's enumeration decides the numbers (the spec's numbers are
//! what SeaBIOS and Linux pick for the same tree). Devices are added by the spec's bus
//! number, which names the bus in the tree whatever the guest does later.
//!
//! BAR accesses: the vCPU exit path asks the port/MMIO [`crate::vmm::bus::Bus`] first
//! and, when nothing there decodes the address, [`PciRoot::io_read`] and friends. They
//! binary-search a sorted table of the BARs that decode now: enabled in the function's
//! command register, inside the windows of every bridge above it, not overlapping an
//! earlier BAR. The table is rebuilt after config writes to a header (offset < 0x40).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use thiserror::Error;

use super::bridge::PciBridge;
use super::{PciDevice, PlainFunction, SharedPciDevice};
use crate::config::reader::PciAddr;
use crate::devices::IrqLine;
use crate::spec::{BusKind, ChipsetFunction, MachineSpec, PciPlacement};

/// Makes the interrupt line for a GSI (the VMM's `KVM_IRQ_LINE`).
pub type IrqFactory = Box<dyn Fn(u32) -> Arc<dyn IrqLine> + Send + Sync>;

/// The size of an ECAM window for 256 buses.
pub const ECAM_SIZE: u64 = 0x1000_0000;
/// Configuration mechanism #1: address at 0xCF8, data at 0xCFC-0xCFF, reset at 0xCF9.
pub const CONFIG_PORTS: u64 = 0xcf8;
pub const CONFIG_PORTS_LEN: u64 = 8;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciError {
    #[error("PCI bus number {0} is not in the topology")]
    NoBus(u8),
    #[error("PCI address {bus:02x}:{slot:02x}.{func} is taken")]
    Taken { bus: u8, slot: u8, func: u8 },
    #[error("PCI address {slot:02x}.{func} is not a valid device/function")]
    BadAddr { slot: u8, func: u8 },
    #[error("bridge `{0}`: its parent bus, address or bus number is unknown")]
    BadBridge(String),
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means another vCPU panicked inside the device; its state is
    // still its own, so go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Function {
    dev: SharedPciDevice,
    /// The root's own function (chipset, bridge), saved in the root's snapshot
    /// section; a device added with [`PciRoot::add_device`] saves its own.
    own: bool,
    /// For a bridge: the bridge itself and the index of its secondary bus.
    bridge: Option<(Arc<Mutex<PciBridge>>, usize)>,
}

#[derive(Default)]
struct BusNode {
    /// By devfn (slot << 3 | function).
    slots: BTreeMap<u8, Function>,
}

#[derive(Default)]
struct Topology {
    /// Index 0 is the root bus.
    buses: Vec<BusNode>,
    /// Spec bus number → index in `buses`.
    spec_bus: HashMap<u8, usize>,
    gsis: HashMap<u32, Arc<GsiOr>>,
}

struct Decode {
    base: u64,
    end: u64,
    bar: u8,
    dev: SharedPciDevice,
}

#[derive(Default)]
struct DecodeMap {
    io: Vec<Decode>,
    mem: Vec<Decode>,
}

/// One GSI shared by several INTx sources: high while any source is.
struct GsiOr {
    line: Arc<dyn IrqLine>,
    /// (asserted sources bitmap, next source bit).
    state: Mutex<(u64, u32)>,
}

/// A function's INTx line: one source of a [`GsiOr`].
struct IntxLine {
    gsi: Arc<GsiOr>,
    bit: u64,
}

impl IrqLine for IntxLine {
    fn set_level(&self, high: bool) {
        let mut st = lock(&self.gsi.state);
        let was = st.0 != 0;
        if high {
            st.0 |= self.bit;
        } else {
            st.0 &= !self.bit;
        }
        let now = st.0 != 0;
        if was != now {
            self.gsi.line.set_level(now);
        }
    }
}

/// The PCI root complex / host bridge's view of everything below it.
pub struct PciRoot {
    topo: Mutex<Topology>,
    map: RwLock<DecodeMap>,
    irq: IrqFactory,
}

fn devfn(addr: PciAddr) -> Result<u8, PciError> {
    if addr.slot >= 32 || addr.func >= 8 {
        return Err(PciError::BadAddr {
            slot: addr.slot,
            func: addr.func,
        });
    }
    Ok(addr.slot << 3 | addr.func)
}

impl PciRoot {
    /// A root bus (number 0) with nothing on it.
    pub fn new(irq: IrqFactory) -> Self {
        let topo = Topology {
            buses: vec![BusNode::default()],
            spec_bus: HashMap::from([(0, 0)]),
            gsis: HashMap::new(),
        };
        Self {
            topo: Mutex::new(topo),
            map: RwLock::new(DecodeMap::default()),
            irq,
        }
    }

    /// The root for `spec`'s board with its chipset functions and the spec's bridges;
    /// `None` for a board without PCI (microvm).
    ///
    /// `pc`: i440FX 00.0, PIIX3 ISA 01.0, PIIX4 PM 01.3 (IDE 01.1 and USB 01.2 absent).
    /// `q35`: Q35 host 00.0, ICH9 LPC 1f.0 (SATA 1f.2 and SMBus 1f.3 absent).
    pub fn from_spec(spec: &MachineSpec, irq: IrqFactory) -> Result<Option<Self>, PciError> {
        let Some(host) = &spec.chipset.pci else {
            return Ok(None);
        };
        let pm_base = spec.pm().and_then(|(d, _)| d.io_base()).unwrap_or(0);
        let root = Self::new(irq);
        let plain = |c| Arc::new(Mutex::new(PlainFunction(c))) as SharedPciDevice;
        for &(addr, f) in &host.functions {
            let config = match f {
                ChipsetFunction::I440fxHost => super::i440fx::i440fx(),
                ChipsetFunction::Piix3Isa => super::piix::piix3_isa(),
                ChipsetFunction::Piix4Pm => super::piix::piix4_pm(pm_base),
                ChipsetFunction::Q35Host => super::q35::q35_host(host.ecam.map_or(0, |e| e.base)),
                ChipsetFunction::Ich9Lpc => super::ich9::ich9_lpc(pm_base),
            };
            root.add_function(0, addr, plain(config))?;
        }
        // Bridges come in bus-number order, so a parent is always in place first.
        for b in &spec.buses {
            let bridge = match (b.kind, b.port) {
                (BusKind::PciBridge, _) => PciBridge::conventional(),
                (BusKind::PcieRootPort, Some(port)) => PciBridge::pcie_root_port(port),
                _ => continue,
            };
            let bad = || PciError::BadBridge(b.id.clone());
            let parent = b
                .parent
                .as_ref()
                .and_then(|p| spec.buses.iter().find(|x| &x.id == p))
                .ok_or_else(bad)?;
            let parent_number = parent.number.ok_or_else(bad)?;
            let addr = b.addr.ok_or_else(bad)?;
            let number = b.number.ok_or_else(bad)?;
            root.add_bridge(parent_number, addr, bridge, number)?;
        }
        Ok(Some(root))
    }

    fn insert(&self, bus: u8, addr: PciAddr, f: Function) -> Result<(), PciError> {
        let d = devfn(addr)?;
        let mut t = lock(&self.topo);
        let idx = *t.spec_bus.get(&bus).ok_or(PciError::NoBus(bus))?;
        let node = t.buses.get_mut(idx).ok_or(PciError::NoBus(bus))?;
        if node.slots.contains_key(&d) {
            return Err(PciError::Taken {
                bus,
                slot: addr.slot,
                func: addr.func,
            });
        }
        node.slots.insert(d, f);
        // Function 0 of a slot with more functions says so (multi-function bit), or
        // scans stop at it.
        let slot = d & !7;
        if (1..8).any(|f| node.slots.contains_key(&(slot | f))) {
            if let Some(f0) = node.slots.get(&slot) {
                lock(&f0.dev).config_mut().set_multifunction(true);
            }
        }
        self.rebuild(&t);
        Ok(())
    }

    /// Puts a function without an interrupt (chipset functions) on the bus the spec
    /// numbers `bus`.
    pub fn add_function(
        &self,
        bus: u8,
        addr: PciAddr,
        dev: SharedPciDevice,
    ) -> Result<(), PciError> {
        self.insert(
            bus,
            addr,
            Function {
                dev,
                own: true,
                bridge: None,
            },
        )
    }

    /// Puts a device at its spec placement and hands it its INTx line (the
    /// placement's GSI, shared with the other functions there) if its interrupt pin
    /// register is not 0.
    pub fn add_device(&self, p: &PciPlacement, dev: SharedPciDevice) -> Result<(), PciError> {
        let pin = lock(&dev).config().interrupt_pin();
        self.insert(
            p.bus_number,
            p.addr,
            Function {
                dev: dev.clone(),
                own: false,
                bridge: None,
            },
        )?;
        if let (true, Some(gsi)) = (pin != 0, p.gsi) {
            let line = self.intx_line(gsi);
            lock(&dev).set_intx_line(line);
        }
        Ok(())
    }

    fn intx_line(&self, gsi: u32) -> Arc<dyn IrqLine> {
        let mut t = lock(&self.topo);
        let g = t
            .gsis
            .entry(gsi)
            .or_insert_with(|| {
                Arc::new(GsiOr {
                    line: (self.irq)(gsi),
                    state: Mutex::new((0, 0)),
                })
            })
            .clone();
        let bit = {
            let mut st = lock(&g.state);
            let b = 1u64 << (st.1 % 64);
            st.1 = st.1.wrapping_add(1);
            b
        };
        Arc::new(IntxLine { gsi: g, bit })
    }

    /// Puts a bridge on bus `parent` at `addr`; its secondary bus is the one the spec
    /// numbers `number`.
    pub fn add_bridge(
        &self,
        parent: u8,
        addr: PciAddr,
        bridge: PciBridge,
        number: u8,
    ) -> Result<(), PciError> {
        let br = Arc::new(Mutex::new(bridge));
        let child = {
            let mut t = lock(&self.topo);
            if t.spec_bus.contains_key(&number) {
                return Err(PciError::Taken {
                    bus: number,
                    slot: 0,
                    func: 0,
                });
            }
            t.buses.push(BusNode::default());
            let child = t.buses.len() - 1;
            t.spec_bus.insert(number, child);
            child
        };
        let dev: SharedPciDevice = br.clone();
        let r = self.insert(
            parent,
            addr,
            Function {
                dev,
                own: true,
                bridge: Some((br, child)),
            },
        );
        if r.is_err() {
            lock(&self.topo).spec_bus.remove(&number);
        }
        r
    }

    /// The function a config cycle for `bus`/`devfn` reaches, through the bridges as
    /// the guest numbered them.
    fn lookup(&self, bus: u8, devfn: u8) -> Option<SharedPciDevice> {
        let t = lock(&self.topo);
        let mut idx = 0usize;
        if bus == 0 {
            return t.buses.first()?.slots.get(&devfn).map(|f| f.dev.clone());
        }
        for _ in 0..=t.buses.len() {
            let mut next = None;
            for f in t.buses.get(idx)?.slots.values() {
                let Some((br, child)) = &f.bridge else {
                    continue;
                };
                let b = lock(br);
                match b.forwards_bus(bus) {
                    Some(true) => {
                        // Behind a PCIe port there is only device 0.
                        if b.config().len() > 256 && devfn >> 3 != 0 {
                            return None;
                        }
                        drop(b);
                        return t
                            .buses
                            .get(*child)?
                            .slots
                            .get(&devfn)
                            .map(|f| f.dev.clone());
                    }
                    Some(false) => {
                        next = Some(*child);
                        break;
                    }
                    None => {}
                }
            }
            idx = next?;
        }
        None
    }

    /// A config read (`data.len()` 1, 2 or 4, inside one dword); nobody there reads
    /// all ones.
    pub fn config_read(&self, bus: u8, devfn: u8, reg: u16, data: &mut [u8]) {
        match self.lookup(bus, devfn) {
            Some(d) => lock(&d).config_read(reg, data),
            None => data.fill(0xff),
        }
    }

    /// A config write; nobody there drops it. A header write rebuilds the BAR table.
    pub fn config_write(&self, bus: u8, devfn: u8, reg: u16, data: &[u8]) {
        let Some(d) = self.lookup(bus, devfn) else {
            return;
        };
        lock(&d).config_write(reg, data);
        if reg < 0x40 {
            let t = lock(&self.topo);
            self.rebuild(&t);
        }
    }

    /// Rebuilds the BAR decode table from the functions' config spaces (after a
    /// snapshot restored them).
    pub fn refresh(&self) {
        let t = lock(&self.topo);
        self.rebuild(&t);
    }

    fn rebuild(&self, t: &Topology) {
        let mut map = DecodeMap::default();
        collect(t, 0, &[(0, 0x1_0000)], &[(0, u64::MAX)], &mut map, 0);
        for v in [&mut map.io, &mut map.mem] {
            v.sort_by_key(|e| e.base);
            let mut end = 0;
            v.retain(|e| {
                let keep = e.base >= end;
                if keep {
                    end = e.end;
                }
                keep
            });
        }
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    fn find(&self, io: bool, addr: u64) -> Option<(SharedPciDevice, u8, u64)> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        let v = if io { &m.io } else { &m.mem };
        let i = v.partition_point(|e| e.base <= addr).checked_sub(1)?;
        let e = v.get(i)?;
        (addr < e.end).then(|| (e.dev.clone(), e.bar, addr - e.base))
    }

    fn bar_read(&self, io: bool, addr: u64, data: &mut [u8]) -> bool {
        let Some((dev, bar, off)) = self.find(io, addr) else {
            return false;
        };
        lock(&dev).bar_read(bar, off, data);
        true
    }

    fn bar_write(&self, io: bool, addr: u64, data: &[u8]) -> bool {
        let Some((dev, bar, off)) = self.find(io, addr) else {
            return false;
        };
        lock(&dev).bar_write(bar, off, data);
        true
    }

    /// A port read some BAR decodes: true if one did (`data` filled).
    pub fn io_read(&self, port: u64, data: &mut [u8]) -> bool {
        self.bar_read(true, port, data)
    }
    /// A port write: true if a BAR decoded it.
    pub fn io_write(&self, port: u64, data: &[u8]) -> bool {
        self.bar_write(true, port, data)
    }
    /// An MMIO read some BAR decodes: true if one did.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.bar_read(false, addr, data)
    }
    /// An MMIO write: true if a BAR decoded it.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        self.bar_write(false, addr, data)
    }

    /// The BAR ranges that decode now: (is I/O, start, end, BAR index), sorted.
    pub fn decoded(&self) -> Vec<(bool, u64, u64, u8)> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        let io = m.io.iter().map(|e| (true, e.base, e.end, e.bar));
        let mem = m.mem.iter().map(|e| (false, e.base, e.end, e.bar));
        io.chain(mem).collect()
    }
}

/// The parts of `w` inside the `parent` windows.
fn intersect(w: (u64, u64), parent: &[(u64, u64)]) -> impl Iterator<Item = (u64, u64)> + '_ {
    parent.iter().filter_map(move |&(s, e)| {
        let (a, b) = (w.0.max(s), w.1.min(e));
        (a < b).then_some((a, b))
    })
}

fn collect(
    t: &Topology,
    idx: usize,
    io: &[(u64, u64)],
    mem: &[(u64, u64)],
    map: &mut DecodeMap,
    depth: usize,
) {
    let Some(node) = t.buses.get(idx) else {
        return;
    };
    if depth > t.buses.len() {
        return;
    }
    for f in node.slots.values() {
        let regions = lock(&f.dev).bars();
        for r in regions.iter().filter(|r| r.enabled) {
            let Some(end) = r.base.checked_add(r.size) else {
                continue;
            };
            let (win, out) = if r.kind.is_io() {
                (io, &mut map.io)
            } else {
                (mem, &mut map.mem)
            };
            if win.iter().any(|&(s, e)| r.base >= s && end <= e) {
                out.push(Decode {
                    base: r.base,
                    end,
                    bar: r.bar,
                    dev: f.dev.clone(),
                });
            }
        }
        if let Some((br, child)) = &f.bridge {
            let (cio, cmem) = {
                let b = lock(br);
                let cio: Vec<_> = b
                    .io_window()
                    .into_iter()
                    .flat_map(|w| intersect(w, io))
                    .collect();
                let cmem: Vec<_> = [b.mem_window(), b.pref_window()]
                    .into_iter()
                    .flatten()
                    .flat_map(|w| intersect(w, mem))
                    .collect();
                (cio, cmem)
            };
            collect(t, *child, &cio, &cmem, map, depth + 1);
        }
    }
}

#[path = "root_state.rs"]
mod state;
pub use state::PciSection;

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
