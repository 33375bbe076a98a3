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
    super::pci::add(out, d, dev.clone(), dev.clone())?;
    out.sources
        .push(timer_source(dev.clone(), clock).map_err(WireError::EventFd)?);
    out.nics
        .push((d.id.clone(), Arc::new(E1000Rx(dev.clone()))));
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use vm_memory::{GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::devices::e1000::regs::{ICR, ICS, IMS, INT_TXDW, ITR};
    use crate::devices::pci::PciDevice;
    use crate::devices::IrqLine;

    #[derive(Default)]
    struct Level(AtomicBool);
    impl IrqLine for Level {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::Relaxed);
        }
    }

    /// The throttled interrupt comes out when the timerfd fires and the loop calls
    /// the source.
    #[test]
    fn timerfd_releases_a_throttled_interrupt() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let clock = HostMonotonic::new();
        let dev = Arc::new(Mutex::new(E1000::new(
            [2, 0, 0, 0, 0, 1],
            None,
            mem,
            Box::new(clock),
        )));
        let line = Arc::new(Level::default());
        let mut src = timer_source(dev.clone(), clock).unwrap();
        {
            let mut d = lock(&dev);
            d.set_intx_line(line.clone());
            let w = |d: &mut E1000, off: u32, v: u32| d.bar_write(0, off.into(), &v.to_le_bytes());
            w(&mut d, ITR, 40_000); // 10.24 ms
            w(&mut d, IMS, INT_TXDW);
            w(&mut d, ICS, INT_TXDW);
            let mut b = [0u8; 4];
            d.bar_read(0, ICR.into(), &mut b);
            w(&mut d, ICS, INT_TXDW);
        }
        assert!(!line.0.load(Ordering::Relaxed), "held back by ITR");
        let mut p = libc::pollfd {
            fd: src.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 1000) };
        assert_eq!(n, 1, "the timerfd fired");
        assert_eq!((src.on_readable)(), Input::Open);
        assert!(line.0.load(Ordering::Relaxed), "released");
    }
}
