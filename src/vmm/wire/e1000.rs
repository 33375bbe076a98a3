//! The e1000 NIC: its backend opened as virtio-net's is, the device on the PCI root at
//! its placement, and two event-loop sources: its receive pump (the shared NIC
//! plumbing of `virtio::net_rx_source`) and a timerfd that fires at the device's
//! next timer deadline (interrupt throttling, delay timers) and calls `poll_timer`.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmm_sys_util::timerfd::TimerFd;

use super::{Devices, WireError};
use crate::devices::e1000::{E1000Rx, SharedE1000, E1000};
use crate::devices::pm::{HostMonotonic, MonotonicClock};
use crate::spec::{DeviceSpec, NicBackend};
use crate::vmm::event_loop::{Input, InputSource};
use crate::vmm::vm::Vm;

pub(super) fn nic(
    vm: &Vm,
    d: &DeviceSpec,
    mac: &[u8; 6],
    backend: &NicBackend,
    out: &mut Devices,
) -> Result<(), WireError> {
    let link = super::virtio::open_backend(d, mac, backend)?;
    let clock = HostMonotonic::new();
    let dev = E1000::new(*mac, link, vm.memory().clone(), Box::new(clock));
    let dev: SharedE1000 = Arc::new(Mutex::new(dev));
    super::pci::add(out, d, dev.clone())?;
    out.sources
        .push(timer_source(dev.clone(), clock).map_err(WireError::EventFd)?);
    out.sources
        .extend(super::virtio::net_rx_source(E1000Rx(dev))?);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A non-blocking timerfd the device re-arms (from any thread) with its deadlines.
fn timer_source(dev: SharedE1000, clock: HostMonotonic) -> std::io::Result<InputSource> {
    let timer = TimerFd::new()?;
    let fd = timer.as_raw_fd();
    // SAFETY: fcntl on a timerfd we own; only adds O_NONBLOCK.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let timer = Arc::new(Mutex::new(timer));
    let t = timer.clone();
    lock(&dev).set_timer_notify(Box::new(move |deadline| {
        let wait = deadline
            .saturating_sub(clock.now())
            .max(Duration::from_micros(1));
        // A failed re-arm leaves the previous deadline; poll_timer re-arms then.
        let _ = lock(&t).reset(wait, None);
    }));
    let on_readable = Box::new(move || -> Input {
        // Clears the expiry (EAGAIN when a re-arm already did).
        let _ = lock(&timer).wait();
        lock(&dev).poll_timer(clock.now());
        Input::Open
    });
    Ok(InputSource {
        fd,
        on_readable,
        space: None,
    })
}
