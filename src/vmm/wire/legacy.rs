//! The PC's legacy devices: the POST port, i8042, ACPI PM, debug console, CMOS RTC and
//! fw_cfg, each at the spec's ports.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::{insert_io, irq, shared, WireError};
use crate::backends::chardev;
use crate::devices::cmos::{BootDevice, Cmos, CmosLayout, HostWallClock, WallClock};
use crate::devices::debugcon::DebugCon;
use crate::devices::fw_cfg::{self, FwCfg};
use crate::devices::i8042::I8042;
use crate::devices::pm::{Pm, PmConfig, VmClock};
use crate::devices::post::{Post, PostStats};
use crate::spec::{CharBackend, DeviceSpec, FwCfgData, MachineSpec, PmLayout, RtcClock};
use crate::vmm::bus::Bus;
use crate::vmm::event_loop::InputSource;
use crate::vmm::rtc::RtcControl;
use crate::vmm::vm::Vm;

/// The POST diagnostic port (0x80), which the chipset decodes on every board, and
/// its snapshot section.
pub(super) fn post(pio: &mut Bus) -> Result<(Arc<PostStats>, Arc<Mutex<Post>>), WireError> {
    let post = shared(Post::new());
    let stats = post.lock().unwrap_or_else(|p| p.into_inner()).stats();
    pio.insert(post.clone(), 0x80, 1)
        .map_err(|source| WireError::Bus {
            id: "post".into(),
            source,
        })?;
    Ok((stats, post))
}

/// The keyboard on its first IRQ, the mouse on its second.
pub(super) fn i8042(
    vm: &Vm,
    pio: &mut Bus,
    d: &DeviceSpec,
) -> Result<Arc<Mutex<I8042>>, WireError> {
    let dev = shared(I8042::new(irq(vm, d, 0), irq(vm, d, 1)));
    insert_io(pio, dev.clone(), &d.io, &d.id)?;
    Ok(dev)
}

pub(super) fn pm(
    vm: &Vm,
    pio: &mut Bus,
    d: &DeviceSpec,
    layout: PmLayout,
    clock: VmClock,
) -> Result<Arc<Mutex<Pm>>, WireError> {
    let cfg = PmConfig {
        gpe0_offset: layout.gpe0_offset.into(),
        gpe0_len: layout.gpe0_len.into(),
        s5_typ: layout.s5_typ,
        sci_enabled: true,
    };
    let pm = shared(Pm::new(cfg, Box::new(clock), irq(vm, d, 0)));
    insert_io(pio, pm.clone(), &d.io, &d.id)?;
    Ok(pm)
}

pub(super) fn debugcon(
    pio: &mut Bus,
    d: &DeviceSpec,
    backend: &CharBackend,
) -> Result<(), WireError> {
    let w: Box<dyn Write + Send> = match backend {
        CharBackend::Stderr => Box::new(std::io::stderr()),
        other => {
            chardev::open(&super::serial::chardev_kind(other))
                .map_err(|source| WireError::Chardev {
                    id: d.id.clone(),
                    source,
                })?
                .output
        }
    };
    insert_io(pio, shared(DebugCon::new(w)), &d.io, &d.id)
}

/// The CMOS RTC, the event loop's timer behind its interrupts and its pause control.
pub(super) fn rtc(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    d: &DeviceSpec,
    clock: RtcClock,
) -> Result<(InputSource, RtcControl), WireError> {
    let layout = CmosLayout {
        ram_below_4g: spec.memory.below_4g,
        ram_above_4g: spec.memory.above_4g,
        cpus: spec.cpus.count().min(255) as u8,
        boot_order: vec![BootDevice::Disk],
    };
    let clock: Box<dyn WallClock> = match clock {
        RtcClock::Localtime => Box::new(crate::vmm::rtc::HostLocalClock),
        RtcClock::Utc => Box::new(HostWallClock),
    };
    let cmos = Cmos::new(&layout, clock, irq(vm, d, 0));
    let (ports, timer) = crate::vmm::rtc::rtc(cmos).map_err(WireError::EventFd)?;
    let control = ports.control();
    insert_io(pio, shared(ports), &d.io, &d.id)?;
    Ok((timer, control))
}

pub(super) fn fw_cfg(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    d: &DeviceSpec,
    files: &[(String, FwCfgData)],
) -> Result<Arc<Mutex<FwCfg>>, WireError> {
    let items = fw_cfg::items_for(spec, files).map_err(|source| WireError::FwCfg {
        id: d.id.clone(),
        source,
    })?;
    let dev = shared(FwCfg::new(vm.memory().clone(), items));
    insert_io(pio, dev.clone(), &d.io, &d.id)?;
    Ok(dev)
}
