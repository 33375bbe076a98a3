//! Wiring: each device of the spec put on the buses at the spec's ranges, given what it
//! needs (its backend, its interrupt lines, its clock). One small module per family of
//! devices; what the running machine keeps of them is [`Devices`].

mod e1000;
mod legacy;
mod pci;
mod serial;
mod vga;
mod virtio;

use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::bus::{Bus, BusError, SharedDevice};
use super::event_loop::InputSource;
use super::vm::Vm;
use crate::backends::chardev::{ChardevError, TermGuard};
use crate::devices::fw_cfg::{FwCfg, FwCfgError};
use crate::devices::pci::{PciError, PciRoot};
use crate::devices::pm::{Pm, VmClock};
use crate::devices::post::PostStats;
use crate::devices::vga::pci::StdVga;
use crate::devices::{BusDevice, IrqLine};
use crate::spec::{DeviceKind, DeviceSpec, IoRange, MachineSpec, MmioRange, NicModel};

pub use serial::ChardevInfo;

#[derive(Debug, Error)]
pub enum WireError {
    #[error("device `{id}`")]
    Chardev {
        id: String,
        #[source]
        source: ChardevError,
    },
    #[error("device `{id}`: cannot open log file {path}")]
    Log {
        id: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("device `{id}`")]
    Bus {
        id: String,
        #[source]
        source: BusError,
    },
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    #[error("device `{id}`")]
    FwCfg {
        id: String,
        #[source]
        source: FwCfgError,
    },
    #[error("device `{id}`")]
    Tap {
        id: String,
        #[source]
        source: crate::backends::tap::TapError,
    },
    #[error("device `{id}`")]
    Switch {
        id: String,
        #[source]
        source: crate::backends::switch::SwitchError,
    },
    #[error("device `{id}`")]
    Dgram {
        id: String,
        #[source]
        source: crate::backends::dgram_sock::DgramError,
    },
    #[error("PCI")]
    Pci(#[from] PciError),
    #[error("device `{id}`")]
    Vga {
        id: String,
        #[source]
        source: crate::devices::vga::VgaError,
    },
    #[error("device `{id}`")]
    Disk {
        id: String,
        #[source]
        source: crate::backends::disk::DiskError,
    },
}

/// The devices of a built machine that anything after the build talks to: the event
/// loop's input sources, the terminal held in raw mode, and handles to the devices
/// that control and screenshots reach.
pub struct Devices {
    pub sources: Vec<InputSource>,
    pub post: Arc<PostStats>,
    /// The raw terminal of a stdio backend, restored when dropped.
    pub terminal: Vec<TermGuard>,
    pub fw_cfg: Option<Arc<Mutex<FwCfg>>>,
    pub pci: Option<Arc<PciRoot>>,
    pub vga: Option<Arc<Mutex<StdVga>>>,
    pub pm: Option<Arc<Mutex<Pm>>>,
    /// The RTC's timer, paused with the machine.
    pub rtc: Option<crate::vmm::rtc::RtcControl>,
    /// The clock that stops while the machine is paused (the ACPI PM timer's).
    pub clock: VmClock,
    /// Every serial port's backend, for `query-chardev`.
    pub chardevs: Vec<ChardevInfo>,
    /// Every NIC's cable, by device id.
    pub nics: Vec<(String, Arc<dyn crate::devices::nic::NicLink>)>,
    /// Every device that holds guest-visible state, by section name (the device id;
    /// `pci` for the PCI root's own functions and config ports, `post` for port 0x80),
    /// in wiring order.
    pub state: Vec<(String, Arc<dyn crate::snapshot::Section>)>,
    /// Every virtio-blk disk's open image.
    pub disks: Vec<DiskHandle>,
    /// Disks restored from a snapshot's frozen overlay: (device id, frozen image).
    pub frozen_disks: Vec<(String, std::path::PathBuf)>,
    /// Held by the event loop while it runs device code, and by a snapshot while it
    /// saves: no device changes under a snapshot.
    pub gate: Arc<Mutex<()>>,
}

/// A disk as a snapshot sees it.
#[derive(Clone)]
pub struct DiskHandle {
    pub id: String,
    pub image: Arc<crate::backends::disk::DiskImage>,
    /// The image the spec names.
    pub path: std::path::PathBuf,
    /// Writes go to an overlay the run owns (`overlay = true`, or a restored one).
    pub overlay: bool,
}

pub(super) fn shared<D: BusDevice + 'static>(d: D) -> Arc<Mutex<D>> {
    Arc::new(Mutex::new(d))
}

/// Puts every I/O region of `d` on `pio`, region by region.
pub(super) fn insert_io(
    pio: &mut Bus,
    dev: SharedDevice,
    regions: &[IoRange],
    id: &str,
) -> Result<(), WireError> {
    for (i, r) in regions.iter().enumerate() {
        insert(pio, dev.clone(), i, r.base.into(), r.len.into(), id)?;
    }
    Ok(())
}

/// Puts MMIO region `region` of `d` on `mmio`.
pub(super) fn insert_mmio(
    mmio: &mut Bus,
    dev: SharedDevice,
    region: usize,
    r: MmioRange,
    id: &str,
) -> Result<(), WireError> {
    insert(mmio, dev, region, r.base, r.len, id)
}

fn insert(
    bus: &mut Bus,
    dev: SharedDevice,
    region: usize,
    base: u64,
    len: u64,
    id: &str,
) -> Result<(), WireError> {
    bus.insert_region(dev, region, base, len)
        .map_err(|source| WireError::Bus {
            id: id.to_string(),
            source,
        })
}

/// The interrupt line of the device's `n`th IRQ, or one that goes nowhere.
pub(super) fn irq(vm: &Vm, d: &DeviceSpec, n: usize) -> Arc<dyn IrqLine> {
    match d.irqs.get(n) {
        Some(&g) => Arc::new(vm.irq_line(g)),
        None => Arc::new(crate::devices::NoIrq),
    }
}

/// Wires every device of `spec` onto `pio` / `mmio`.
pub fn wire(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    mmio: &mut Bus,
    frozen_disks: &[(String, std::path::PathBuf)],
) -> Result<Devices, WireError> {
    let (post, post_dev) = legacy::post(pio)?;
    let pci = pci::root(spec, vm, pio, mmio)?;
    let mut out = Devices {
        sources: Vec::new(),
        post,
        terminal: Vec::new(),
        fw_cfg: None,
        pci: pci.as_ref().map(|(root, _)| root.clone()),
        vga: None,
        pm: None,
        rtc: None,
        clock: VmClock::new(),
        chardevs: Vec::new(),
        nics: Vec::new(),
        state: Vec::new(),
        disks: Vec::new(),
        frozen_disks: frozen_disks.to_vec(),
        gate: Arc::new(Mutex::new(())),
    };
    out.state.push(("post".into(), post_dev));
    if let Some((_, section)) = pci {
        out.state.push(("pci".into(), section));
    }
    for d in &spec.devices {
        match &d.kind {
            DeviceKind::Serial { backend, log } => {
                serial::serial(vm, pio, d, backend, log.as_deref(), &mut out)?
            }
            DeviceKind::I8042 => {
                let dev = legacy::i8042(vm, pio, d)?;
                out.state.push((d.id.clone(), dev));
            }
            DeviceKind::Pm(layout) => {
                let pm = legacy::pm(vm, pio, d, *layout, out.clock.clone())?;
                out.state.push((d.id.clone(), pm.clone()));
                out.pm = Some(pm);
            }
            DeviceKind::Debugcon { backend } => legacy::debugcon(pio, d, backend)?,
            DeviceKind::Rtc { clock } => {
                let (timer, control) = legacy::rtc(spec, vm, pio, d, *clock)?;
                out.sources.push(timer);
                out.state.push((d.id.clone(), control.section()));
                out.rtc = Some(control);
            }
            // In the kernel: KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2.
            DeviceKind::Pit | DeviceKind::Pic | DeviceKind::Ioapic { .. } => {}
            DeviceKind::FwCfg { files } => {
                let dev = legacy::fw_cfg(spec, vm, pio, d, files)?;
                out.state.push((d.id.clone(), dev.clone()));
                out.fw_cfg = Some(dev);
            }
            DeviceKind::Disk {
                path,
                readonly,
                format,
                overlay,
            } => virtio::disk(vm, mmio, d, path, (*readonly, *overlay), *format, &mut out)?,
            DeviceKind::Vga { vram } => {
                out.vga = Some(vga::vga(spec, vm, pio, mmio, d, *vram, &mut out)?)
            }
            DeviceKind::Nic {
                model: NicModel::E1000,
                mac,
                backend,
            } => e1000::nic(vm, d, mac, backend, &mut out)?,
            DeviceKind::Nic { mac, backend, .. } => {
                if let Some(source) = virtio::nic(vm, mmio, d, mac, backend, &mut out)? {
                    out.sources.push(source);
                }
            }
        }
    }
    Ok(out)
}
