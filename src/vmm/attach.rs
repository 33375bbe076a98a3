//! Puts the spec's devices on the buses: one small function per kind, each taking what
//! the device needs (its backend, its interrupt line, its clock).

use std::io::Write;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::bus::{Bus, BusError, SharedDevice};
use super::event_loop::{Input, InputSource, Waker};
use super::vm::Vm;
use crate::backends::chardev::{self, ChardevError, ChardevKind, Input as CharInput};
use crate::devices::cmos::{BootDevice, Cmos, CmosLayout, HostWallClock};
use crate::devices::debugcon::DebugCon;
use crate::devices::fw_cfg::{self, FwCfg, FwCfgError};
use crate::devices::i8042::I8042;
use crate::devices::pci::{Ecam, PciError, PciPorts, PciRoot, SharedPciDevice};
use crate::devices::pm::{HostMonotonic, Pm, PmConfig};
use crate::devices::post::{Post, PostStats};
use crate::devices::serial::Serial;
use crate::devices::{BusDevice, IrqLine};
use crate::spec::{CharBackend, DeviceKind, DeviceSpec, MachineSpec};

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("device `{id}`: {source}")]
    Chardev { id: String, source: ChardevError },
    #[error("device `{id}`: cannot open log file {path}: {source}")]
    Log {
        id: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("device `{id}`: {source}")]
    Bus { id: String, source: BusError },
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("device `{id}`: {source}")]
    FwCfg { id: String, source: FwCfgError },
    #[error("device `{id}`: {source}")]
    Tap {
        id: String,
        source: crate::backends::tap::TapError,
    },
    #[error("device `{id}`: {source}")]
    Switch {
        id: String,
        source: crate::backends::switch::SwitchError,
    },
    #[error("PCI: {0}")]
    Pci(#[from] PciError),
    #[error("device `{id}`: {source}")]
    Vga {
        id: String,
        source: crate::devices::vga::VgaError,
    },
    #[error("device `{id}`: {source}")]
    Disk {
        id: String,
        source: crate::backends::disk::DiskError,
    },
}

/// What the builder gets back: the buses' contents, the event loop's input sources,
/// and the devices the run reports on.
pub struct Attached {
    pub sources: Vec<InputSource>,
    pub post: Arc<PostStats>,
    /// Devices of the spec that vmrun does not emulate yet (named in a warning).
    pub missing: Vec<String>,
    /// Held for the run: the raw terminal of a stdio backend.
    pub terminal: Vec<chardev::TermGuard>,
    /// The fw_cfg device, for steps that add files to it (ACPI tables, ...).
    pub fw_cfg: Option<Arc<Mutex<FwCfg>>>,
    /// The PCI root (pc, q35): PCI devices go on it with [`add_pci`].
    pub pci: Option<Arc<PciRoot>>,
    /// The VGA (for screenshots, and the PCI root).
    pub vga: Option<Arc<Mutex<crate::devices::vga::pci::StdVga>>>,
}

fn shared<D: BusDevice + 'static>(d: D) -> Arc<Mutex<D>> {
    Arc::new(Mutex::new(d))
}

fn insert(
    bus: &mut Bus,
    dev: SharedDevice,
    base: u64,
    len: u64,
    id: &str,
) -> Result<(), AttachError> {
    bus.insert(dev, base, len)
        .map_err(|source| AttachError::Bus {
            id: id.to_string(),
            source,
        })
}

fn irq(vm: &Vm, gsi: Option<u32>) -> Arc<dyn IrqLine> {
    match gsi {
        Some(g) => Arc::new(vm.irq_line(g)),
        None => Arc::new(crate::devices::NoIrq),
    }
}

/// A writer that copies everything to a second one (the serial `log` file).
struct Tee(Box<dyn Write + Send>, std::fs::File);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        let _ = self.1.write_all(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Attaches every device of `spec` to `pio` / `mmio`.
pub fn attach(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    mmio: &mut Bus,
) -> Result<Attached, AttachError> {
    let post = Post::new();
    let stats = post.stats();
    insert(pio, shared(post), 0x80, 1, "post")?;
    let mut out = Attached {
        sources: Vec::new(),
        post: stats,
        missing: Vec::new(),
        terminal: Vec::new(),
        fw_cfg: None,
        pci: None,
        vga: None,
    };
    out.pci = pci_root(spec, vm, pio, mmio)?;
    for d in &spec.devices {
        match &d.kind {
            DeviceKind::Serial { backend, log } => {
                serial(vm, pio, d, backend, log.as_deref(), &mut out)?
            }
            DeviceKind::I8042 => {
                let dev = shared(I8042::new(irq(vm, d.irq), irq(vm, Some(12))));
                let base = d.io.unwrap_or(0x60) as u64;
                insert(pio, dev.clone(), base, 1, &d.id)?;
                insert(pio, dev, base + 4, 1, &d.id)?;
            }
            DeviceKind::Pm { s5_typ } => {
                let q35 = d.io_ranges.first().is_some_and(|r| r.1 >= 0x80);
                let cfg = PmConfig {
                    base: d.io.unwrap_or(0x600) as u64,
                    gpe0_offset: if q35 { 0x20 } else { 0x0c },
                    gpe0_len: if q35 { 0x10 } else { 4 },
                    s5_typ: *s5_typ,
                    sci_enabled: true,
                };
                let pm = Pm::new(cfg, Box::new(HostMonotonic::new()), irq(vm, d.irq));
                let ranges = pm.ranges();
                let dev = shared(pm);
                for (base, len) in ranges {
                    insert(pio, dev.clone(), base, len, &d.id)?;
                }
            }
            DeviceKind::Debugcon { backend } => {
                let w: Box<dyn Write + Send> = match backend {
                    CharBackend::Stderr => Box::new(std::io::stderr()),
                    other => {
                        chardev::open(&chardev_kind(other))
                            .map_err(|source| AttachError::Chardev {
                                id: d.id.clone(),
                                source,
                            })?
                            .output
                    }
                };
                insert(
                    pio,
                    shared(DebugCon::new(w)),
                    d.io.unwrap_or(0x402) as u64,
                    1,
                    &d.id,
                )?;
            }
            DeviceKind::Rtc { localtime } => {
                let layout = CmosLayout {
                    ram_below_4g: spec.ram_below_4g,
                    ram_above_4g: spec.ram_above_4g,
                    cpus: spec.cpus.count().min(255) as u8,
                    boot_order: vec![BootDevice::Disk],
                };
                let clock: Box<dyn crate::devices::cmos::WallClock> = if *localtime {
                    Box::new(super::rtc::HostLocalClock)
                } else {
                    Box::new(HostWallClock)
                };
                let cmos = Cmos::new(&layout, clock, irq(vm, d.irq));
                let (ports, timer) = super::rtc::rtc(cmos).map_err(AttachError::EventFd)?;
                insert(pio, shared(ports), d.io.unwrap_or(0x70) as u64, 2, &d.id)?;
                out.sources.push(timer);
            }
            // In the kernel: KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2.
            DeviceKind::Pit | DeviceKind::Pic | DeviceKind::Ioapic => {}
            DeviceKind::FwCfg { files } => {
                let items =
                    fw_cfg::items_for(spec, files).map_err(|source| AttachError::FwCfg {
                        id: d.id.clone(),
                        source,
                    })?;
                let base = d.io.unwrap_or(0x510) as u64;
                let dev = FwCfg::new(vm.memory().clone(), items, base);
                let ranges = dev.ranges();
                let dev = shared(dev);
                for (base, len) in ranges {
                    insert(pio, dev.clone(), base, len, &d.id)?;
                }
                out.fw_cfg = Some(dev);
            }
            DeviceKind::Disk {
                path,
                readonly,
                format,
            } => disk(vm, mmio, d, path, *readonly, format, &mut out)?,
            DeviceKind::Vga { vram } => vga(spec, vm, pio, mmio, d, *vram, &mut out)?,
            DeviceKind::Nic {
                model,
                mac,
                backend,
            } => nic(vm, mmio, d, model, mac, backend, &mut out)?,
        }
    }
    Ok(out)
}

/// The PCI root with the board's chipset functions and the spec's bridges; its config
/// ports at 0xCF8 (reset control at 0xCF9 included) and, on q35, the ECAM window.
fn pci_root(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    mmio: &mut Bus,
) -> Result<Option<Arc<PciRoot>>, AttachError> {
    let fd = vm.fd().clone();
    let lines = Box::new(move |gsi| {
        Arc::new(super::irq::KvmIrqLine::new(fd.clone(), gsi)) as Arc<dyn IrqLine>
    });
    let Some(root) = PciRoot::from_spec(spec, lines)? else {
        return Ok(None);
    };
    let root = Arc::new(root);
    let ports = shared(PciPorts::new(root.clone()));
    use crate::devices::pci::root::{CONFIG_PORTS, CONFIG_PORTS_LEN};
    insert(pio, ports, CONFIG_PORTS, CONFIG_PORTS_LEN, "pci")?;
    if spec.board == crate::board::BoardKind::Q35 {
        use crate::devices::pci::{ECAM_BASE, ECAM_SIZE};
        let ecam = shared(Ecam::new(root.clone()));
        insert(mmio, ecam, ECAM_BASE, ECAM_SIZE, "pci")?;
    }
    Ok(Some(root))
}

/// Puts a PCI device at its spec placement on the PCI root (the device's INTx pin, if
/// any, drives the placement's GSI).
pub fn add_pci(out: &Attached, d: &DeviceSpec, dev: SharedPciDevice) -> Result<(), AttachError> {
    match (&out.pci, &d.pci) {
        (Some(root), Some(p)) => Ok(root.add_device(p, dev)?),
        _ => Ok(()),
    }
}

fn chardev_kind(b: &CharBackend) -> ChardevKind {
    match b {
        CharBackend::Stdio => ChardevKind::Stdio,
        CharBackend::File(p) => ChardevKind::File {
            path: p.clone(),
            append: false,
        },
        CharBackend::Socket(p) => ChardevKind::Socket { path: p.clone() },
        CharBackend::Pty => ChardevKind::Pty,
        CharBackend::Stderr | CharBackend::Null => ChardevKind::Null,
    }
}

/// Whether `fd` has input (or a hang-up) right now.
fn readable_now(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

fn serial(
    vm: &Vm,
    pio: &mut Bus,
    d: &DeviceSpec,
    backend: &CharBackend,
    log: Option<&std::path::Path>,
    out: &mut Attached,
) -> Result<(), AttachError> {
    let mut cd = chardev::open(&chardev_kind(backend)).map_err(|source| AttachError::Chardev {
        id: d.id.clone(),
        source,
    })?;
    out.terminal.extend(cd.term.take());
    let output: Box<dyn Write + Send> = match log {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|source| AttachError::Log {
                id: d.id.clone(),
                path: path.into(),
                source,
            })?;
            Box::new(Tee(cd.output, f))
        }
        None => cd.output,
    };
    let serial = shared(Serial::new(output, irq(vm, d.irq)));
    insert(pio, serial.clone(), d.io.unwrap_or(0x3f8) as u64, 8, &d.id)?;
    let Some(mut input) = cd.input else {
        return Ok(());
    };
    let waker = Waker::new().map_err(AttachError::EventFd)?;
    {
        let w = waker.clone();
        let mut s = serial.lock().unwrap_or_else(|p| p.into_inner());
        s.set_rx_space_notify(Box::new(move || w.wake()));
    }
    let fd = input.fd();
    // Bytes read from the host but not yet taken by the FIFO.
    let mut pending: Vec<u8> = Vec::new();
    let on_readable = Box::new(move || -> Input {
        let mut s = serial.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            let n = s.enqueue_input(&pending);
            pending.drain(..n);
            return if pending.is_empty() {
                Input::Open
            } else {
                Input::Full
            };
        }
        if s.input_space() == 0 {
            return Input::Full;
        }
        // Called after a wake-up too: read only what is there now, never block.
        if !readable_now(fd) {
            return Input::Open;
        }
        let mut buf = [0u8; 64];
        match input.read_input(&mut buf) {
            Ok(CharInput::Data(n)) => {
                let taken = s.enqueue_input(&buf[..n]);
                pending.extend_from_slice(&buf[taken..n]);
                if pending.is_empty() {
                    Input::Open
                } else {
                    Input::Full
                }
            }
            Ok(CharInput::Eof) => Input::Closed,
            Ok(CharInput::Quit) => Input::Quit,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                Input::Open
            }
            Err(_) => Input::Closed,
        }
    });
    out.sources.push(InputSource {
        fd,
        on_readable,
        space: Some(waker),
    });
    Ok(())
}

/// A virtio-blk disk: the image opened (and locked) now, so that a busy image stops
/// the VM before it runs; the virtio-mmio transport at the spec's window and GSI.
fn disk(
    vm: &Vm,
    mmio: &mut Bus,
    d: &DeviceSpec,
    path: &std::path::Path,
    readonly: bool,
    format: &str,
    out: &mut Attached,
) -> Result<(), AttachError> {
    use crate::backends::disk::DiskImage;
    use crate::devices::virtio::{blk::Blk, mmio::MmioTransport};
    let image = DiskImage::open(path, readonly, format).map_err(|source| AttachError::Disk {
        id: d.id.clone(),
        source,
    })?;
    let blk = Box::new(Blk::new(image, &d.id));
    if d.pci.is_some() {
        // virtio-pci: MSI-X through KVM_SIGNAL_MSI, INTx on the placement's GSI.
        use crate::devices::virtio::pci::VirtioPci;
        let msi = Arc::new(super::irq::KvmMsi::new(vm.fd().clone()));
        let dev = VirtioPci::new(blk, vm.memory().clone(), 0x018000, msi);
        return add_pci(out, d, Arc::new(Mutex::new(dev)));
    }
    let Some((base, len)) = d.mmio else {
        out.missing.push(format!("{} ({})", d.id, d.kind.name()));
        return Ok(());
    };
    let dev = MmioTransport::new(blk, vm.memory().clone(), irq(vm, d.irq));
    insert(mmio, shared(dev), base, len, &d.id)
}

/// Moves the VGA's framebuffer memslot when the guest moves BAR0.
struct LfbSlot {
    slot: super::memory::DeviceSlot,
    id: String,
}

impl crate::devices::vga::LfbMapper for LfbSlot {
    fn map(&mut self, gpa: Option<u64>) {
        if let Err(e) = self.slot.map(gpa) {
            // The guest put the BAR over something else: accesses then exit and reach
            // VRAM through the PCI root, slowly but correctly.
            eprintln!(
                "vmrun: warning: device `{}`: framebuffer not mapped: {e}",
                self.id
            );
        }
    }
}

/// The std VGA: legacy registers, the DISPI ports and the 0xA0000 window on the buses;
/// the framebuffer a memslot that follows BAR0; vgabios as its option ROM when a
/// firmware boots (it runs the ROM).
fn vga(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    mmio: &mut Bus,
    d: &DeviceSpec,
    vram: u64,
    out: &mut Attached,
) -> Result<(), AttachError> {
    use crate::devices::vga::{self, pci::StdVga, Vga};
    let mut dev = Vga::new(vram).map_err(|source| AttachError::Vga {
        id: d.id.clone(),
        source,
    })?;
    let v = dev.vram();
    let slot = super::memory::DeviceSlot::new(
        vm.fd().clone(),
        vm.reserve_slot(),
        v.host_addr(),
        v.len() as u64,
        v.keepalive(),
    );
    dev.set_lfb_mapper(Box::new(LfbSlot {
        slot,
        id: d.id.clone(),
    }));
    let rom = spec
        .boot
        .firmware
        .as_ref()
        .and_then(|_| crate::boot::firmware::find_option_rom("vgabios-stdvga.bin").ok())
        .and_then(|p| std::fs::read(p).ok());
    let dev = shared(StdVga::new(dev, rom));
    insert(pio, dev.clone(), vga::VGA_IO_BASE, vga::VGA_IO_LEN, &d.id)?;
    insert(
        pio,
        dev.clone(),
        vga::DISPI_IO_BASE,
        vga::DISPI_IO_LEN,
        &d.id,
    )?;
    if let Some((base, len)) = d.mmio {
        if base == vga::WINDOW_BASE {
            insert(mmio, dev.clone(), base, len, &d.id)?;
        }
    }
    add_pci(out, d, dev.clone())?;
    out.vga = Some(dev);
    Ok(())
}

/// A NIC: its backend opened now (a missing TAP device stops the VM before it runs),
/// the device on its transport, and its receive side in the event loop: the backend's
/// fd, with the waker the driver's receive-queue kick rings when the device had no
/// buffer for a frame (see `devices::virtio::net`).
fn nic(
    vm: &Vm,
    mmio: &mut Bus,
    d: &DeviceSpec,
    model: &str,
    mac: &[u8; 6],
    backend: &crate::spec::NicBackend,
    out: &mut Attached,
) -> Result<(), AttachError> {
    use crate::backends::{switch::SwitchPort, tap::Tap, NetBackend};
    use crate::devices::virtio::{mmio::MmioTransport, net::Net};
    use crate::spec::NicBackend;
    if model != "virtio-net" {
        out.missing
            .push(format!("{} ({} {model})", d.id, d.kind.name()));
        return Ok(());
    }
    let id = || d.id.clone();
    let link: Option<Box<dyn NetBackend>> = match backend {
        NicBackend::None => None,
        NicBackend::Tap(name) => Some(Box::new(
            Tap::open(name.as_deref()).map_err(|source| AttachError::Tap { id: id(), source })?,
        )),
        NicBackend::Switch(dir) => {
            Some(Box::new(SwitchPort::open(dir, *mac).map_err(|source| {
                AttachError::Switch { id: id(), source }
            })?))
        }
    };
    let (net, rx) = Net::new(*mac, link);
    if d.pci.is_some() {
        // virtio-pci (class 0x020000, Ethernet): MSI-X through KVM_SIGNAL_MSI, INTx on
        // the placement's GSI.
        use crate::devices::virtio::pci::VirtioPci;
        let msi = Arc::new(super::irq::KvmMsi::new(vm.fd().clone()));
        let dev = VirtioPci::new(Box::new(net), vm.memory().clone(), 0x020000, msi);
        add_pci(out, d, Arc::new(Mutex::new(dev)))?;
        return net_rx_source(rx, out);
    }
    let Some((base, len)) = d.mmio else {
        out.missing.push(format!("{} ({})", d.id, d.kind.name()));
        return Ok(());
    };
    let dev = MmioTransport::new(Box::new(net), vm.memory().clone(), irq(vm, d.irq));
    insert(mmio, shared(dev), base, len, &d.id)?;
    net_rx_source(rx, out)
}

/// The event loop's side of a NIC: pump frames in while the guest has buffers.
fn net_rx_source(
    rx: crate::devices::virtio::net::NetRx,
    out: &mut Attached,
) -> Result<(), AttachError> {
    use crate::devices::virtio::net::RxState;
    let Some(fd) = rx.fd() else {
        return Ok(());
    };
    let waker = Waker::new().map_err(AttachError::EventFd)?;
    let w = waker.clone();
    rx.set_waker(Box::new(move || w.wake()));
    out.sources.push(InputSource {
        fd,
        on_readable: Box::new(move || match rx.pump() {
            RxState::Open => Input::Open,
            RxState::NoBuffers => Input::Full,
        }),
        space: Some(waker),
    });
    Ok(())
}
