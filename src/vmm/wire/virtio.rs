//! virtio devices: disks and NICs, on virtio-pci where the spec places them on PCI and
//! on virtio-mmio at the spec's window and GSI otherwise.

use std::sync::{Arc, Mutex};

use super::{insert_mmio, irq, shared, Devices, WireError};
use crate::backends::NetBackend;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::pci::VirtioPci;
use crate::devices::virtio::VirtioDevice;
use crate::spec::{DeviceSpec, DiskFormat, NicBackend};
use crate::vmm::bus::Bus;
use crate::vmm::event_loop::{Input, InputSource, Waker};
use crate::vmm::vm::Vm;

/// PCI class codes of the virtio functions.
const CLASS_STORAGE: u32 = 0x018000;
const CLASS_ETHERNET: u32 = 0x020000;

/// Puts `dev` on its transport: virtio-pci (MSI-X through KVM_SIGNAL_MSI, INTx on the
/// placement's GSI) or virtio-mmio.
fn transport(
    vm: &Vm,
    mmio: &mut Bus,
    d: &DeviceSpec,
    dev: Box<dyn VirtioDevice>,
    class: u32,
    out: &mut Devices,
) -> Result<(), WireError> {
    if d.pci.is_some() {
        let msi = Arc::new(crate::vmm::irq::KvmMsi::new(vm.fd().clone()));
        let dev = Arc::new(Mutex::new(VirtioPci::new(
            dev,
            vm.memory().clone(),
            class,
            msi,
        )));
        return super::pci::add(out, d, dev.clone(), dev);
    }
    match d.mmio.first() {
        Some(&window) => {
            let t = shared(MmioTransport::new(dev, vm.memory().clone(), irq(vm, d, 0)));
            out.state.push((d.id.clone(), t.clone()));
            insert_mmio(mmio, t, 0, window, &d.id)
        }
        // Check places every virtio device on PCI or on a virtio-mmio window.
        None => Ok(()),
    }
}

/// A qcow2 overlay over `base` that lives as long as the run: created in the temporary
/// directory, opened, and unlinked at once (the open image keeps it).
fn temporary_overlay(
    d: &DeviceSpec,
    base: &std::path::Path,
    format: DiskFormat,
) -> Result<crate::backends::disk::DiskImage, crate::backends::disk::DiskError> {
    use crate::backends::disk::{DiskImage, Format};
    let fmt = match format {
        DiskFormat::Raw => Format::Raw,
        DiskFormat::Qcow2 => Format::Qcow2,
    };
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "vmrun-overlay-{}-{nonce:x}-{}.qcow2",
        std::process::id(),
        d.id
    ));
    crate::backends::qcow2::create_overlay(&path, base, fmt)?;
    let image = DiskImage::open(&path, false, "qcow2");
    let _ = std::fs::remove_file(&path);
    image
}

/// A virtio-blk disk: the image opened (and locked) now, so that a busy image stops
/// the VM before it runs.
pub(super) fn disk(
    vm: &Vm,
    mmio: &mut Bus,
    d: &DeviceSpec,
    path: &std::path::Path,
    (readonly, overlay): (bool, bool),
    format: DiskFormat,
    out: &mut Devices,
) -> Result<(), WireError> {
    use crate::backends::disk::DiskImage;
    use crate::devices::virtio::blk::Blk;
    let err = |source| WireError::Disk {
        id: d.id.clone(),
        source,
    };
    // A restored disk whose overlay the snapshot froze writes to a new overlay over it.
    let frozen = out.frozen_disks.iter().find(|(id, _)| *id == d.id);
    let image = match (frozen, overlay) {
        (Some((_, f)), _) => temporary_overlay(d, f, DiskFormat::Qcow2).map_err(err)?,
        (None, true) => temporary_overlay(d, path, format).map_err(err)?,
        (None, false) => DiskImage::open(path, readonly, format.name()).map_err(err)?,
    };
    let image = std::sync::Arc::new(image);
    out.disks.push(super::DiskHandle {
        id: d.id.clone(),
        image: image.clone(),
        path: path.to_path_buf(),
        overlay: overlay || frozen.is_some(),
    });
    transport(
        vm,
        mmio,
        d,
        Box::new(Blk::new(image, &d.id)),
        CLASS_STORAGE,
        out,
    )
}

pub(super) fn open_backend(
    d: &DeviceSpec,
    mac: &[u8; 6],
    backend: &NicBackend,
) -> Result<Option<Box<dyn NetBackend>>, WireError> {
    use crate::backends::{switch::SwitchPort, tap::Tap};
    let id = || d.id.clone();
    Ok(match backend {
        NicBackend::None => None,
        NicBackend::Tap(name) => Some(Box::new(
            Tap::open(name.as_deref()).map_err(|source| WireError::Tap { id: id(), source })?,
        )),
        NicBackend::Switch(dir) => Some(Box::new(
            SwitchPort::open(dir, *mac).map_err(|source| WireError::Switch { id: id(), source })?,
        )),
        NicBackend::Dgram { local, remote } => Some(Box::new(
            crate::backends::dgram::Dgram::open(local, remote)
                .map_err(|source| WireError::Dgram { id: id(), source })?,
        )),
    })
}

/// A virtio-net NIC: its backend opened now (a missing TAP device stops the VM before
/// it runs), and its receive side for the event loop when it has a backend.
pub(super) fn nic(
    vm: &Vm,
    mmio: &mut Bus,
    d: &DeviceSpec,
    mac: &[u8; 6],
    backend: &NicBackend,
    out: &mut Devices,
) -> Result<Option<InputSource>, WireError> {
    use crate::devices::virtio::net::Net;
    let (net, rx) = Net::new(*mac, open_backend(d, mac, backend)?);
    transport(vm, mmio, d, Box::new(net), CLASS_ETHERNET, out)?;
    out.nics
        .push((d.id.clone(), std::sync::Arc::new(rx.clone())));
    net_rx_source(rx)
}

/// The event loop's side of a NIC (either model): pump frames in while the guest has
/// buffers; the waker rings when the driver gives buffers back.
pub(super) fn net_rx_source(
    rx: impl crate::devices::nic::NicRx + 'static,
) -> Result<Option<InputSource>, WireError> {
    use crate::devices::nic::RxState;
    let Some(fd) = rx.fd() else {
        return Ok(None);
    };
    let waker = Waker::new().map_err(WireError::EventFd)?;
    let w = waker.clone();
    rx.set_waker(Box::new(move || w.wake()));
    Ok(Some(InputSource {
        fd,
        on_readable: Box::new(move || match rx.pump() {
            RxState::Open => Input::Open,
            RxState::NoBuffers => Input::Full,
        }),
        space: Some(waker),
    }))
}
