//! Receive: frames from the wire through the filters (VLAN filter table, exact
//! addresses RAL/RAH, promiscuous UPE/MPE, the multicast hash table, broadcast BAM),
//! into the packet buffer FIFO, then into the legacy receive descriptors software
//! posted between RDH and RDT, one buffer of RCTL.BSIZE/BSEX bytes per descriptor.
//!
//! Writeback: length, the packet checksum (from RXCSUM.PCSS), status DD, EOP on the
//! last buffer, VP with the stripped tag in `special` (CTRL.VME), the IPv4/TCP/UDP
//! offload verdicts (RXCSUM.IPOFL/TUOFL: IPCS/TCPCS, errors IPE/TCPE; IXSM when both
//! are off). The FCS is appended unless RCTL.SECRC strips it; frames shorter than the
//! 60-byte minimum are padded as the wire pads them (a TAP hands out short ones).
//! Frames longer than 1522 bytes (CRC included) are dropped unless RCTL.LPE (ROC).
//! Causes: RXT0 (after the RDTR/RADV delays), RXDMT0 when the free descriptors fall
//! to RCTL.RDMTS's fraction of the ring, RXO on a FIFO overrun, SRPD for frames under
//! RSRPD.

use std::collections::VecDeque;

use super::csum::{self, RxCheck};
use super::regs::*;
use super::stats::*;
use super::E1000;

/// The longest frame taken with RCTL.LPE (CRC included); without it, 1522.
pub(super) const MAX_LONG: usize = 16384;
const MAX_NORMAL: usize = 1522;
const MIN_FRAME: usize = 60;
const DESC_LEN: u64 = 16;

/// A frame in the packet buffer, `done` bytes of it already in host memory.
pub(super) struct Pending {
    pub(super) data: Vec<u8>,
    pub(super) done: usize,
    pub(super) vlan: Option<u16>,
    pub(super) check: RxCheck,
    /// Its checksum field (PCSS to the end).
    pub(super) sum: u16,
}

#[derive(Default)]
pub(super) struct RxFifo {
    pub(super) frames: VecDeque<Pending>,
    pub(super) bytes: usize,
}

impl E1000 {
    /// A frame from the wire.
    pub(super) fn receive(&mut self, frame: &[u8]) {
        let rctl = self.reg(RCTL);
        if !self.phy.link() || rctl & RCTL_EN == 0 || frame.len() < 14 {
            return;
        }
        let mut f = frame.to_vec();
        if f.len() < MIN_FRAME {
            f.resize(MIN_FRAME, 0);
        }
        let wire = f.len() + 4;
        self.stats.add(TPR, 1);
        self.stats.add(TORL, wire as u64);
        let max = if rctl & RCTL_LPE != 0 {
            MAX_LONG
        } else {
            MAX_NORMAL
        };
        if wire > max {
            self.stats.add(ROC, 1);
            return;
        }
        if !self.accept(&f) {
            return;
        }
        let fcs = csum::fcs(&f);
        let p = self.prepare(f, fcs);
        if self.rx.bytes + p.data.len() > self.fifo_capacity() {
            self.stats.add(MPC, 1);
            self.raise(INT_RXO);
            return;
        }
        self.stats.add(GPRC, 1);
        self.stats.add(GORCL, wire as u64);
        self.stats.add_size(PRC64, wire);
        self.stats.add_cast(&p.data, true);
        if self.free_descriptors() == 0 {
            self.stats.add(RNBC, 1);
        }
        self.rx.bytes += p.data.len();
        self.rx.frames.push_back(p);
        self.drain_rx();
    }

    fn fifo_capacity(&self) -> usize {
        self.reg(PBA).min(64) as usize * 1024
    }

    /// Strips the tag (CTRL.VME), runs the checksum checks, appends the FCS.
    fn prepare(&self, mut f: Vec<u8>, fcs: [u8; 4]) -> Pending {
        let vet = self.reg(VET) as u16;
        let mut vlan = None;
        if self.reg(CTRL) & CTRL_VME != 0 && be16(&f, 12) == Some(vet) {
            vlan = be16(&f, 14);
            f.drain(12..16);
        }
        let rxcsum = self.reg(RXCSUM);
        let check = csum::check_rx(
            &f,
            vet,
            rxcsum & RXCSUM_IPOFL != 0,
            rxcsum & RXCSUM_TUOFL != 0,
        );
        if self.reg(RCTL) & RCTL_SECRC == 0 {
            f.extend_from_slice(&fcs);
        }
        // The packet checksum covers the FCS too when it is not stripped.
        let pcss = (rxcsum & RXCSUM_PCSS) as usize;
        let sum = f.get(pcss..).map_or(0, |d| csum::fold(csum::add(0, d)));
        Pending {
            data: f,
            done: 0,
            vlan,
            check,
            sum,
        }
    }

    /// The address and VLAN filters.
    fn accept(&self, f: &[u8]) -> bool {
        let rctl = self.reg(RCTL);
        let vet = self.reg(VET) as u16;
        if be16(f, 12) == Some(vet) {
            let tci = be16(f, 14).unwrap_or(0);
            if rctl & RCTL_CFIEN != 0 && (tci >> 12 & 1) != (rctl >> 20 & 1) as u16 {
                return false;
            }
            let vid = u32::from(tci & 0xfff);
            if rctl & RCTL_VFE != 0 && self.reg(VFTA + 4 * (vid >> 5)) >> (vid & 31) & 1 == 0 {
                return false;
            }
        }
        let da = &f[..6];
        if da == [0xff; 6] && rctl & RCTL_BAM != 0 {
            return true;
        }
        if self.exact_match(da) {
            return true;
        }
        if da[0] & 1 == 0 {
            return rctl & RCTL_UPE != 0;
        }
        if rctl & RCTL_MPE != 0 {
            return true;
        }
        let shift = [4, 3, 2, 0][(rctl >> RCTL_MO_SHIFT & 3) as usize];
        let hash = (u32::from(u16::from_le_bytes([da[4], da[5]])) >> shift) & 0xfff;
        self.reg(MTA + 4 * (hash >> 5)) >> (hash & 31) & 1 != 0
    }

    /// A valid receive address entry (destination-address select) equals `da`.
    fn exact_match(&self, da: &[u8]) -> bool {
        (0..RA_ENTRIES as u32).any(|i| {
            let lo = self.reg(RA + 8 * i);
            let hi = self.reg(RA + 8 * i + 4);
            let mut a = [0u8; 6];
            a[..4].copy_from_slice(&lo.to_le_bytes());
            a[4..].copy_from_slice(&hi.to_le_bytes()[..2]);
            hi & RAH_AV != 0 && (hi >> 16) & 3 == 0 && a == da
        })
    }

    /// The receive ring: base address and descriptor count.
    fn rx_ring(&self) -> (u64, u32) {
        let base = u64::from(self.reg(RDBAH)) << 32 | u64::from(self.reg(RDBAL));
        (base, self.reg(RDLEN) / DESC_LEN as u32)
    }

    /// Descriptors software owns the hardware between RDH and RDT (none when either
    /// points outside the ring).
    fn free_descriptors(&self) -> u32 {
        let (_, n) = self.rx_ring();
        let (h, t) = (self.reg(RDH), self.reg(RDT));
        if n == 0 || h >= n || t >= n {
            return 0;
        }
        (t + n - h) % n
    }

    fn buffer_size(&self) -> usize {
        let rctl = self.reg(RCTL);
        let code = (rctl >> RCTL_BSIZE_SHIFT) & 3;
        match (rctl & RCTL_BSEX != 0, code) {
            (false, c) => 2048 >> c,
            (true, 0) => 2048,
            (true, c) => 32768 >> c,
        }
    }

    /// Moves frames from the FIFO into host memory while descriptors last.
    pub(super) fn drain_rx(&mut self) {
        if !self.dma_ok() || self.reg(RCTL) & RCTL_EN == 0 {
            return;
        }
        while let Some(mut p) = self.rx.frames.pop_front() {
            if !self.deliver(&mut p) {
                self.rx.frames.push_front(p);
                return;
            }
            self.rx.bytes = self.rx.bytes.saturating_sub(p.data.len());
        }
    }

    /// Writes what of `p` fits the free descriptors; true once all of it is out (or
    /// lost to a descriptor fetch that failed).
    fn deliver(&mut self, p: &mut Pending) -> bool {
        let bsize = self.buffer_size();
        let (base, n) = self.rx_ring();
        while p.done < p.data.len() {
            if self.free_descriptors() == 0 {
                return false;
            }
            let head = self.reg(RDH);
            let at = base.wrapping_add(u64::from(head) * DESC_LEN);
            let mut desc = [0u8; 16];
            if !self.dma_read(at, &mut desc) {
                self.stats.add(MPC, 1);
                return true;
            }
            let buf = u64::from_le_bytes([
                desc[0], desc[1], desc[2], desc[3], desc[4], desc[5], desc[6], desc[7],
            ]);
            let len = bsize.min(p.data.len() - p.done);
            let last = p.done + len == p.data.len();
            let chunk = &p.data[p.done..p.done + len];
            let wb = self.writeback(p, len, last);
            // A buffer outside RAM loses its bytes; the descriptor still completes.
            self.dma_write(buf, chunk);
            self.dma_write(at + 8, &wb);
            p.done += len;
            self.set_reg(RDH, (head + 1) % n);
            self.check_threshold(n);
        }
        self.frame_done(p);
        true
    }

    /// Bytes 8-15 of a written-back descriptor.
    fn writeback(&self, p: &Pending, len: usize, last: bool) -> [u8; 8] {
        let mut status = RXD_DD;
        let mut errors = 0;
        let mut special = 0;
        let mut sum = 0;
        if last {
            status |= RXD_EOP;
            sum = p.sum;
            if let Some(tci) = p.vlan {
                status |= RXD_VP;
                special = tci;
            }
            let rxcsum = self.reg(RXCSUM);
            if rxcsum & (RXCSUM_IPOFL | RXCSUM_TUOFL) == 0 {
                status |= RXD_IXSM;
            }
            if p.check.ip {
                status |= RXD_IPCS;
                if !p.check.ip_ok {
                    errors |= RXE_IPE;
                }
            }
            if p.check.l4 {
                status |= RXD_TCPCS;
                if !p.check.l4_ok {
                    errors |= RXE_TCPE;
                }
            }
        }
        let mut wb = [0u8; 8];
        wb[0..2].copy_from_slice(&(len as u16).to_le_bytes());
        wb[2..4].copy_from_slice(&sum.to_le_bytes());
        wb[4] = status;
        wb[5] = errors;
        wb[6..8].copy_from_slice(&special.to_le_bytes());
        wb
    }

    /// RXDMT0 when the free descriptors reach RCTL.RDMTS's fraction of the ring.
    fn check_threshold(&mut self, n: u32) {
        let rdmts = (self.reg(RCTL) >> RCTL_RDMTS_SHIFT & 3).min(2);
        if self.free_descriptors() == n >> (rdmts + 1) {
            self.raise(INT_RXDMT0);
        }
    }

    /// The interrupts a completed frame causes.
    fn frame_done(&mut self, p: &Pending) {
        let now = self.now();
        let rsrpd = self.reg(RSRPD) & 0xfff;
        if rsrpd != 0 && p.data.len() < rsrpd as usize {
            self.timers.radv = None;
            self.raise(INT_SRPD);
        }
        let (rdtr, radv) = (self.reg(RDTR), self.reg(RADV));
        if self.timers.rx_frame(now, rdtr, radv) {
            self.raise(INT_RXT0);
        }
    }
}

pub(super) fn be16(f: &[u8], at: usize) -> Option<u16> {
    f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}
