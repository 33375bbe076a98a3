//! virtio-blk (virtio 1.2, section 5.2): one request queue over a [`DiskImage`].
//!
//! Requests: IN (read), OUT (write), FLUSH (fsync on the host), GET_ID (the device's
//! id, 20 bytes). Each gets a status byte: OK, IOERR on a host error, a request past
//! the end of the disk or a write to a read-only disk (advertised with F_RO), UNSUPP
//! for other types. Request I/O runs on the vCPU thread that kicked the queue.
//! A malformed chain (no room for the status byte, a header that is not readable)
//! cannot be answered and breaks the queue: the transport sets DEVICE_NEEDS_RESET.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{
    read_config_bytes, Activation, DescChain, Queue, QueueError, VirtioDevice, VirtioError,
    VirtioInterrupt, COMMON_FEATURES, TYPE_BLOCK,
};
use crate::backends::disk::{DiskImage, SECTOR_SIZE};

pub const F_SIZE_MAX: u64 = 1 << 1;
pub const F_SEG_MAX: u64 = 1 << 2;
pub const F_RO: u64 = 1 << 5;
pub const F_BLK_SIZE: u64 = 1 << 6;
pub const F_FLUSH: u64 = 1 << 9;

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;

pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// Data segments per request.
pub const SEG_MAX: u32 = 126;
/// Bytes per segment.
pub const SIZE_MAX: u32 = 1 << 20;
/// GET_ID answers this many bytes.
pub const ID_LEN: usize = 20;

/// The device.
pub struct Blk {
    disk: Arc<DiskImage>,
    id: [u8; ID_LEN],
    config: [u8; 24],
    run: Option<Running>,
    /// Bounce buffer, reused between requests.
    buf: Vec<u8>,
}

struct Running {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
}

impl Blk {
    /// A disk whose GET_ID answers `id` (truncated to 20 bytes).
    pub fn new(disk: Arc<DiskImage>, id: &str) -> Self {
        let mut idb = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        let mut config = [0u8; 24];
        config[0..8].copy_from_slice(&disk.sectors().to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        Self {
            disk,
            id: idb,
            config,
            run: None,
            buf: Vec::new(),
        }
    }

    fn process(&mut self) -> Result<(), QueueError> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let mut used = false;
        while let Some(chain) = run.queue.pop(&run.mem)? {
            let (status_at, written, status) =
                Self::execute(&self.disk, &self.id, &mut self.buf, &run.mem, &chain)?;
            run.mem
                .write_obj(status, GuestAddress(status_at))
                .map_err(|_| QueueError::Memory(status_at))?;
            run.queue.add_used(&run.mem, chain.head, written + 1)?;
            used = true;
        }
        if used && run.queue.needs_notification(&run.mem)? {
            run.interrupt.signal_used(0);
        }
        Ok(())
    }

    /// Runs one request. Returns where the status byte goes, the data bytes written
    /// into the chain and the status.
    fn execute(
        disk: &DiskImage,
        id: &[u8; ID_LEN],
        buf: &mut Vec<u8>,
        mem: &GuestMemoryMmap,
        chain: &DescChain,
    ) -> Result<(u64, u32, u8), QueueError> {
        let bad = QueueError::Malformed;
        // The header: 16 readable bytes, possibly split over descriptors.
        let mut hdr = [0u8; 16];
        let mut got = 0usize;
        let mut data_r = Vec::new();
        for d in chain.readable() {
            let take = (16 - got).min(d.len as usize);
            mem.read_slice(&mut hdr[got..got + take], GuestAddress(d.addr))
                .map_err(|_| QueueError::Memory(d.addr))?;
            got += take;
            if take < d.len as usize {
                data_r.push((d.addr + take as u64, d.len as usize - take));
            }
        }
        if got < 16 {
            return Err(bad("virtio-blk request without a 16-byte header"));
        }
        // The status byte: the last byte of the last writable descriptor.
        let last = chain
            .writable()
            .last()
            .filter(|d| d.len >= 1)
            .ok_or(bad("virtio-blk request without a status byte"))?;
        let status_at = last.addr + last.len as u64 - 1;
        let mut data_w: Vec<(u64, usize)> =
            chain.writable().map(|d| (d.addr, d.len as usize)).collect();
        if let Some(l) = data_w.last_mut() {
            l.1 -= 1;
        }
        data_w.retain(|s| s.1 > 0);

        let rtype = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or([0; 8]));
        let offset = sector.checked_mul(SECTOR_SIZE);
        let io_len = |segs: &[(u64, usize)]| segs.iter().map(|s| s.1).sum::<usize>();
        let ok_range = |len: usize| {
            offset.is_some_and(|o| {
                (len as u64).is_multiple_of(SECTOR_SIZE)
                    && o.checked_add(len as u64)
                        .is_some_and(|e| e <= disk.sectors() * SECTOR_SIZE)
            })
        };
        let off = offset.unwrap_or(0);
        let status = match rtype {
            T_IN => {
                let len = io_len(&data_w);
                if !ok_range(len) {
                    return Ok((status_at, 0, S_IOERR));
                }
                let mut pos = off;
                for &(addr, n) in &data_w {
                    for (a, c) in chunks(addr, n) {
                        buf.resize(c, 0);
                        if disk.read_at(pos, buf).is_err() {
                            return Ok((status_at, 0, S_IOERR));
                        }
                        mem.write_slice(buf, GuestAddress(a))
                            .map_err(|_| QueueError::Memory(a))?;
                        pos += c as u64;
                    }
                }
                return Ok((status_at, u32::try_from(len).unwrap_or(u32::MAX), S_OK));
            }
            T_OUT => {
                let len = io_len(&data_r);
                if disk.readonly() || !ok_range(len) {
                    return Ok((status_at, 0, S_IOERR));
                }
                let mut pos = off;
                for &(addr, n) in &data_r {
                    for (a, c) in chunks(addr, n) {
                        buf.resize(c, 0);
                        mem.read_slice(buf, GuestAddress(a))
                            .map_err(|_| QueueError::Memory(a))?;
                        if disk.write_at(pos, buf).is_err() {
                            return Ok((status_at, 0, S_IOERR));
                        }
                        pos += c as u64;
                    }
                }
                S_OK
            }
            T_FLUSH => match disk.flush() {
                Ok(()) => S_OK,
                Err(_) => S_IOERR,
            },
            T_GET_ID => {
                let mut pos = 0;
                for &(addr, n) in &data_w {
                    let n = n.min(ID_LEN - pos);
                    mem.write_slice(&id[pos..pos + n], GuestAddress(addr))
                        .map_err(|_| QueueError::Memory(addr))?;
                    pos += n;
                }
                return Ok((status_at, pos as u32, S_OK));
            }
            _ => S_UNSUPP,
        };
        Ok((status_at, 0, status))
    }
}

/// Splits a guest buffer into pieces of at most [`CHUNK`] bytes (the bounce buffer's
/// size limit, whatever lengths the guest asks for).
fn chunks(addr: u64, len: usize) -> impl Iterator<Item = (u64, usize)> {
    (0..len)
        .step_by(CHUNK)
        .map(move |o| (addr + o as u64, (len - o).min(CHUNK)))
}

/// The bounce buffer's largest size.
const CHUNK: usize = 1 << 20;

impl VirtioDevice for Blk {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn features(&self) -> u64 {
        let ro = if self.disk.readonly() { F_RO } else { 0 };
        COMMON_FEATURES | F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH | ro
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, act: Activation) -> Result<(), VirtioError> {
        let queue = act
            .queues
            .into_iter()
            .next()
            .ok_or(VirtioError::NoQueue(0))?;
        self.run = Some(Running {
            mem: act.mem,
            queue,
            interrupt: act.interrupt,
        });
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) -> Result<(), VirtioError> {
        if queue != 0 {
            return Err(VirtioError::NoQueue(queue));
        }
        if self.run.as_ref().is_some_and(|r| !r.queue.ready) {
            return Ok(());
        }
        let r = self.process();
        if r.is_err() {
            // Quiet until the driver resets the device.
            self.run = None;
        }
        r.map_err(|source| VirtioError::Queue { queue, source })
    }

    fn reset(&mut self) {
        self.run = None;
    }

    /// Requests complete before the kick returns: nothing is in flight, the queue
    /// position is the whole state.
    fn running_queues(&self) -> Option<Vec<Queue>> {
        self.run.as_ref().map(|r| vec![r.queue.clone()])
    }
}

#[cfg(test)]
#[path = "blk_tests.rs"]
mod tests;
