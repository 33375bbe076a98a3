//! virtio-net (virtio 1.2, section 5.1): a NIC with one receive and one transmit queue
//! over a [`NetBackend`] (TAP, the lab switch).
//!
//! Offered: VIRTIO_NET_F_MAC (the spec's MAC in the configuration space) and
//! VIRTIO_NET_F_STATUS (link up when the NIC has a backend, down without one), on top of
//! virtio 1 (so every buffer starts with the 12-byte `virtio_net_hdr`, `num_buffers`
//! included). No offloads, no mergeable buffers, no control queue: transmitted headers
//! are ignored, received ones are all zero but `num_buffers = 1`.
//!
//! Transmit runs on the vCPU thread that kicks queue 1: every chain's readable bytes
//! after the header are one frame, handed to the backend. Receive runs on the main
//! event loop ([`NetRx`]): when the backend's fd is readable, frames go into the
//! driver's receive buffers until the backend is empty or the ring is. With no buffer
//! posted (or before the driver starts the device) [`NetRx::pump`] says
//! [`RxState::NoBuffers`] and the frame waits (in the device, then in the host
//! socket/TAP queue); the driver's kick of queue 0 (or the activation) calls the
//! waker set with [`NetRx::set_waker`]. One fd in the loop the VMM already runs costs no
//! thread and no extra lock beyond the device's; the waker is the loop's existing
//! back-pressure mechanism.
//!
//! A frame that does not fit the receive chain (header + frame) is dropped and counted
//! ([`NetStats::rx_dropped`]); the chain stays for the next frame. A transmit chain too
//! short for a header or longer than [`MAX_FRAME`] is returned unused and counted. A
//! broken ring (bad descriptor, address outside RAM, ...) stops the device: on the vCPU
//! path the transport sets DEVICE_NEEDS_RESET; on the receive path
//! [`VirtioInterrupt::needs_reset`] does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{
    read_config_bytes, Activation, DescChain, Queue, QueueError, VirtioDevice, VirtioError,
    VirtioInterrupt, COMMON_FEATURES, TYPE_NET,
};
use crate::backends::NetBackend;

pub const F_MAC: u64 = 1 << 5;
pub const F_STATUS: u64 = 1 << 16;
/// Configuration space `status`: the link is up.
pub const S_LINK_UP: u16 = 1;
/// `virtio_net_hdr` with VIRTIO_F_VERSION_1.
pub const HDR_LEN: usize = 12;
/// Queue size offered for both queues.
pub const QUEUE_SIZE: u16 = 256;
pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
/// The largest frame moved either way (without offloads a frame is at most
/// 1514 bytes; a host link with a larger MTU still fits).
pub const MAX_FRAME: usize = 65536;
/// Frames moved per [`NetRx::pump`] before the event loop gets its turn again.
pub const RX_BATCH: usize = 256;

/// Counters, readable while the machine runs.
#[derive(Debug, Default)]
pub struct NetStats {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames that did not fit the receive chain.
    pub rx_dropped: AtomicU64,
    /// Backend read errors.
    pub rx_errors: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Malformed transmit chains (no header, too long).
    pub tx_dropped: AtomicU64,
    /// Frames the backend refused (no link, full peer, ...).
    pub tx_errors: AtomicU64,
}

fn inc(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

pub use crate::devices::nic::RxState;

struct Running {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
}

struct State {
    backend: Option<Box<dyn NetBackend>>,
    /// Carrier: a NIC with a backend starts up; `set_link` pulls and plugs the cable.
    link_up: bool,
    run: Option<Running>,
    /// Receive bounce buffer; `held` bytes of it are a frame waiting for a buffer.
    frame: Vec<u8>,
    held: Option<usize>,
    /// Transmit bounce buffer.
    txbuf: Vec<u8>,
    waker: Option<Box<dyn Fn() + Send>>,
}

/// The device: what the transport owns.
pub struct Net {
    config: [u8; 10],
    state: Arc<Mutex<State>>,
    stats: Arc<NetStats>,
}

/// The receive side, for the event loop.
#[derive(Clone)]
pub struct NetRx {
    state: Arc<Mutex<State>>,
    stats: Arc<NetStats>,
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Net {
    /// A NIC with `mac`; without a backend its link is down and it sends nowhere.
    pub fn new(mac: [u8; 6], backend: Option<Box<dyn NetBackend>>) -> (Self, NetRx) {
        let mut config = [0u8; 10];
        config[..6].copy_from_slice(&mac);
        let status = if backend.is_some() { S_LINK_UP } else { 0 };
        config[6..8].copy_from_slice(&status.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        let state = Arc::new(Mutex::new(State {
            link_up: backend.is_some(),
            backend,
            run: None,
            frame: vec![0; MAX_FRAME],
            held: None,
            txbuf: Vec::new(),
            waker: None,
        }));
        let stats = Arc::new(NetStats::default());
        let rx = NetRx {
            state: state.clone(),
            stats: stats.clone(),
        };
        (
            Self {
                config,
                state,
                stats,
            },
            rx,
        )
    }

    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    fn transmit(&self) -> Result<(), QueueError> {
        let mut st = lock(&self.state);
        let State {
            backend,
            run,
            txbuf,
            link_up,
            ..
        } = &mut *st;
        let Some(run) = run.as_mut().filter(|r| r.tx.ready) else {
            return Ok(());
        };
        // Without carrier the frames go nowhere, as on an unplugged cable.
        let mut unplugged = None;
        let backend = if *link_up { backend } else { &mut unplugged };
        let mut used = false;
        while let Some(chain) = run.tx.pop(&run.mem)? {
            match gather(&run.mem, &chain, txbuf)? {
                Some(frame) => match backend.as_mut().map(|b| b.send(frame)) {
                    Some(Ok(())) => {
                        inc(&self.stats.tx_frames, 1);
                        inc(&self.stats.tx_bytes, frame.len() as u64);
                    }
                    _ => inc(&self.stats.tx_errors, 1),
                },
                None => inc(&self.stats.tx_dropped, 1),
            }
            run.tx.add_used(&run.mem, chain.head, 0)?;
            used = true;
        }
        if used && run.tx.needs_notification(&run.mem)? {
            run.interrupt.signal_used(TX_QUEUE);
        }
        Ok(())
    }
}

/// The frame a transmit chain holds (its readable bytes after the header), read into
/// `buf`; `None` for a chain without a whole header and a frame, or too long.
fn gather<'a>(
    mem: &GuestMemoryMmap,
    chain: &DescChain,
    buf: &'a mut Vec<u8>,
) -> Result<Option<&'a [u8]>, QueueError> {
    let total: u64 = chain.readable().map(|d| d.len as u64).sum();
    if total <= HDR_LEN as u64 || total > (HDR_LEN + MAX_FRAME) as u64 {
        return Ok(None);
    }
    buf.clear();
    buf.resize(total as usize, 0);
    let mut at = 0usize;
    for d in chain.readable() {
        let n = d.len as usize;
        let dst = buf
            .get_mut(at..at + n)
            .ok_or(QueueError::Malformed("transmit chain length"))?;
        mem.read_slice(dst, GuestAddress(d.addr))
            .map_err(|_| QueueError::Memory(d.addr))?;
        at += n;
    }
    Ok(buf.get(HDR_LEN..))
}

/// Writes header + `frame` over the chain's writable buffers. Returns the bytes
/// written, or `None` (nothing written) when they do not fit.
fn scatter(
    mem: &GuestMemoryMmap,
    chain: &DescChain,
    frame: &[u8],
) -> Result<Option<u32>, QueueError> {
    let room: u64 = chain.writable().map(|d| d.len as u64).sum();
    let need = (HDR_LEN + frame.len()) as u64;
    if room < need {
        return Ok(None);
    }
    let mut hdr = [0u8; HDR_LEN];
    hdr[10] = 1; // num_buffers
    let mut parts = [&hdr[..], frame];
    let mut part = 0;
    for d in chain.writable() {
        let mut addr = d.addr;
        let mut left = d.len as usize;
        while left > 0 && part < parts.len() {
            let src = parts[part];
            let n = src.len().min(left);
            mem.write_slice(&src[..n], GuestAddress(addr))
                .map_err(|_| QueueError::Memory(addr))?;
            addr += n as u64;
            left -= n;
            parts[part] = &src[n..];
            if parts[part].is_empty() {
                part += 1;
            }
        }
        if part == parts.len() {
            break;
        }
    }
    Ok(Some(need as u32))
}

impl NetRx {
    /// Called when the driver posts receive buffers or starts the device.
    pub fn set_waker(&self, wake: Box<dyn Fn() + Send>) {
        lock(&self.state).waker = Some(wake);
    }

    /// The backend's fd, if the NIC has a backend.
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        lock(&self.state).backend.as_ref().map(|b| b.fd())
    }

    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    /// Plugs (`up`) or pulls the cable: the link status bit in the configuration space
    /// follows, with a configuration interrupt to a running driver, and frames stop
    /// both ways while it is down. Without a backend the link stays down.
    pub fn set_link(&self, up: bool) {
        let mut st = lock(&self.state);
        let up = up && st.backend.is_some();
        if st.link_up == up {
            return;
        }
        st.link_up = up;
        if let Some(r) = &st.run {
            r.interrupt.signal_config();
        }
    }

    pub fn link_up(&self) -> bool {
        lock(&self.state).link_up
    }

    /// Moves frames from the backend into the driver's receive buffers (at most
    /// [`RX_BATCH`]), then interrupts the driver if it wants to be.
    pub fn pump(&self) -> RxState {
        let mut st = lock(&self.state);
        let State {
            backend,
            run,
            frame,
            held,
            link_up,
            ..
        } = &mut *st;
        let Some(backend) = backend.as_mut() else {
            return RxState::Open;
        };
        if !*link_up {
            // No carrier: what arrives is lost on the wire.
            while let Ok(Some(_)) = backend.recv(frame) {
                inc(&self.stats.rx_dropped, 1);
            }
            *held = None;
            return RxState::Open;
        }
        let Some(r) = run.as_mut().filter(|r| r.rx.ready) else {
            // Not started (or stopped): frames wait in the host queue.
            return RxState::NoBuffers;
        };
        let (state, used, result) = Self::fill(r, backend.as_mut(), frame, held, &self.stats);
        let result = result.and_then(|()| {
            if used && r.rx.needs_notification(&r.mem)? {
                r.interrupt.signal_used(RX_QUEUE);
            }
            Ok(())
        });
        if result.is_err() {
            r.interrupt.needs_reset();
            *run = None;
            *held = None;
            return RxState::NoBuffers;
        }
        state
    }

    fn fill(
        r: &mut Running,
        backend: &mut dyn NetBackend,
        frame: &mut [u8],
        held: &mut Option<usize>,
        stats: &NetStats,
    ) -> (RxState, bool, Result<(), QueueError>) {
        let mut used = false;
        for _ in 0..RX_BATCH {
            let n = match held.take() {
                Some(n) => n,
                None => match backend.recv(frame) {
                    Ok(Some(n)) => n,
                    Ok(None) => return (RxState::Open, used, Ok(())),
                    Err(_) => {
                        inc(&stats.rx_errors, 1);
                        return (RxState::Open, used, Ok(()));
                    }
                },
            };
            let Some(data) = frame.get(..n) else {
                continue;
            };
            let chain = match r.rx.pop(&r.mem) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    *held = Some(n);
                    return (RxState::NoBuffers, used, Ok(()));
                }
                Err(e) => return (RxState::NoBuffers, used, Err(e)),
            };
            let written = match scatter(&r.mem, &chain, data) {
                Ok(w) => w,
                Err(e) => return (RxState::NoBuffers, used, Err(e)),
            };
            match written {
                Some(len) => {
                    if let Err(e) = r.rx.add_used(&r.mem, chain.head, len) {
                        return (RxState::NoBuffers, used, Err(e));
                    }
                    used = true;
                    inc(&stats.rx_frames, 1);
                    inc(&stats.rx_bytes, n as u64);
                }
                None => {
                    r.rx.undo_pop();
                    inc(&stats.rx_dropped, 1);
                }
            }
        }
        (RxState::Open, used, Ok(()))
    }
}

impl crate::devices::nic::NicLink for NetRx {
    fn set_link(&self, up: bool) {
        NetRx::set_link(self, up)
    }
    fn link_up(&self) -> bool {
        NetRx::link_up(self)
    }
}

impl crate::devices::nic::NicRx for NetRx {
    fn fd(&self) -> Option<std::os::fd::RawFd> {
        NetRx::fd(self)
    }
    fn set_waker(&self, wake: Box<dyn Fn() + Send>) {
        NetRx::set_waker(self, wake)
    }
    fn pump(&self) -> RxState {
        NetRx::pump(self)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn features(&self) -> u64 {
        COMMON_FEATURES | F_MAC | F_STATUS
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = self.config;
        let status = if lock(&self.state).link_up {
            S_LINK_UP
        } else {
            0
        };
        config[6..8].copy_from_slice(&status.to_le_bytes());
        read_config_bytes(&config, offset, data);
    }

    /// The MAC is read-only without VIRTIO_NET_F_CTRL_MAC_ADDR (legacy drivers wrote it).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, act: Activation) -> Result<(), VirtioError> {
        let mut q = act.queues.into_iter();
        let (Some(rx), Some(tx)) = (q.next(), q.next()) else {
            return Err(VirtioError::NoQueue(TX_QUEUE));
        };
        let mut st = lock(&self.state);
        st.run = Some(Running {
            mem: act.mem,
            rx,
            tx,
            interrupt: act.interrupt,
        });
        if let Some(w) = &st.waker {
            w();
        }
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) -> Result<(), VirtioError> {
        match queue {
            RX_QUEUE => {
                if let Some(w) = &lock(&self.state).waker {
                    w();
                }
                Ok(())
            }
            TX_QUEUE => {
                let r = self.transmit();
                if r.is_err() {
                    // Quiet until the driver resets the device.
                    let mut st = lock(&self.state);
                    st.run = None;
                    st.held = None;
                }
                r.map_err(|source| VirtioError::Queue { queue, source })
            }
            q => Err(VirtioError::NoQueue(q)),
        }
    }

    fn reset(&mut self) {
        let mut st = lock(&self.state);
        st.run = None;
        st.held = None;
    }

    fn running_queues(&self) -> Option<Vec<Queue>> {
        lock(&self.state)
            .run
            .as_ref()
            .map(|r| vec![r.rx.clone(), r.tx.clone()])
    }

    fn save_extra(&self) -> Result<Vec<u8>, crate::snapshot::StateError> {
        state::save(&lock(&self.state))
    }

    fn restore_extra(&mut self, bytes: &[u8]) -> Result<(), crate::snapshot::StateError> {
        state::restore(&mut lock(&self.state), bytes)
    }
}

#[path = "net_state.rs"]
mod state;

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
