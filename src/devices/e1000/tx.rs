//! Transmit: the descriptor ring between TDH and TDT, walked when software moves TDT
//! (or enables TCTL.EN, or the link comes back), while the link is up (the MAC stops
//! DMA without one).
//!
//! Descriptors: legacy (CMD.DEXT = 0: buffer, length, CSO/CSS with CMD.IC), TCP/IP
//! context (DEXT, DTYP 0: the IPCSS/IPCSO/IPCSE and TUCSS/TUCSO/TUCSE checksum
//! fields, HDRLEN, MSS, kept until the next one) and data (DEXT, DTYP 1: POPTS.IXSM /
//! TXSM insert the IP / TCP-UDP checksum of the context; DCMD.TSE segments the
//! payload into MSS-sized frames, fixing IP length and identification, TCP sequence
//! number and flags, UDP length, and both checksums per frame). The offload options
//! come from a packet's first descriptor; EOP, IFCS and VLE/special from its last.
//! VLE inserts the 802.1Q tag (VET, special) when CTRL.VME is set, after the
//! checksums. Without IFCS the packet's last four bytes are its FCS: a wrong one makes
//! the frame one the peer discards, so it is not delivered. TCTL.PSP pads short
//! frames to 60 bytes. RS writes DD back into the descriptor's status; TXDW follows at
//! once, or after TIDV/TADV when the descriptor has IDE; TXQE when the ring drained.

use super::csum;
use super::regs::*;
use super::stats::*;
use super::E1000;

/// The most data one packet may gather (a TSO payload of 64 KiB and its header).
pub(super) const MAX_GATHER: usize = 65536 + 256;
/// The longest single frame the MAC sends (without FCS).
const MAX_FRAME: usize = 16384;
const MIN_FRAME: usize = 60;
const DESC_LEN: u64 = 16;

/// The TCP/IP context.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Context {
    pub(super) ipcss: usize,
    pub(super) ipcso: usize,
    pub(super) ipcse: usize,
    pub(super) tucss: usize,
    pub(super) tucso: usize,
    pub(super) tucse: usize,
    pub(super) tucmd: u8,
    pub(super) hdrlen: usize,
    pub(super) mss: usize,
}

impl Context {
    fn parse(d: &[u8; 16]) -> Self {
        Self {
            ipcss: usize::from(d[0]),
            ipcso: usize::from(d[1]),
            ipcse: usize::from(u16::from_le_bytes([d[2], d[3]])),
            tucss: usize::from(d[4]),
            tucso: usize::from(d[5]),
            tucse: usize::from(u16::from_le_bytes([d[6], d[7]])),
            tucmd: d[11],
            hdrlen: usize::from(d[13]),
            mss: usize::from(u16::from_le_bytes([d[14], d[15]])),
        }
    }
}

/// Offloads a packet asked for in its first descriptor.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Offload {
    /// Legacy IC with its CSS and CSO.
    pub(super) legacy_csum: Option<(usize, usize)>,
    pub(super) popts: u8,
    pub(super) tse: bool,
}

#[derive(Debug, Default)]
pub(super) struct TxState {
    pub(super) ctx: Context,
    pub(super) pkt: Vec<u8>,
    /// A packet is being gathered (its first descriptor was seen).
    pub(super) started: bool,
    pub(super) offload: Offload,
    /// A buffer could not be read or the packet grew too long: it is dropped at EOP.
    pub(super) bad: bool,
}

/// One transmit descriptor, decoded.
enum Desc {
    Context(Context),
    Data {
        addr: u64,
        len: usize,
        offload: Offload,
        special: u16,
    },
    /// A reserved descriptor type: skipped.
    Other,
}

fn decode(d: &[u8; 16]) -> (Desc, u8) {
    let addr = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    let lower = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
    let cmd = d[11];
    let special = u16::from_le_bytes([d[14], d[15]]);
    if cmd & TXD_DEXT == 0 {
        let ic = cmd & TXD_IC != 0;
        let desc = Desc::Data {
            addr,
            len: (lower & 0xffff) as usize,
            offload: Offload {
                legacy_csum: ic.then_some((usize::from(d[13]), usize::from(d[10]))),
                ..Offload::default()
            },
            special,
        };
        return (desc, cmd);
    }
    let desc = match (lower >> 20) & 0xf {
        0 => Desc::Context(Context::parse(d)),
        1 => Desc::Data {
            addr,
            len: (lower & 0xf_ffff) as usize,
            offload: Offload {
                legacy_csum: None,
                popts: d[13],
                tse: cmd & TXD_TSE != 0,
            },
            special,
        },
        _ => Desc::Other,
    };
    (desc, cmd)
}

fn put16(f: &mut [u8], at: usize, v: usize) {
    if let Some(b) = f.get_mut(at..at + 2) {
        b.copy_from_slice(&(v as u16).to_be_bytes());
    }
}

fn get16(f: &[u8], at: usize) -> u16 {
    f.get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

fn get32(f: &[u8], at: usize) -> u32 {
    f.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl E1000 {
    /// RCTL.LBM = 01 (MAC loopback) or PHY loopback: frames come back in.
    fn loopback(&self) -> bool {
        (self.reg(RCTL) >> RCTL_LBM_SHIFT) & 3 == 1 || self.phy.loopback()
    }

    /// Walks the ring from TDH to TDT.
    pub(super) fn process_tx(&mut self) {
        if self.reg(TCTL) & TCTL_EN == 0 || !self.dma_ok() || !self.phy.link() {
            return;
        }
        let base = u64::from(self.reg(TDBAH)) << 32 | u64::from(self.reg(TDBAL));
        let n = self.reg(TDLEN) / DESC_LEN as u32;
        let mut moved = false;
        for _ in 0..n {
            let (h, t) = (self.reg(TDH), self.reg(TDT));
            if h >= n || t >= n || h == t {
                break;
            }
            let at = base.wrapping_add(u64::from(h) * DESC_LEN);
            let mut d = [0u8; 16];
            if !self.dma_read(at, &mut d) {
                break;
            }
            let cmd = self.descriptor(&d);
            if cmd & TXD_RS != 0 {
                d[12] = (d[12] & 0xf0) | TXD_STAT_DD;
                self.dma_write(at + 12, &d[12..13]);
                let now = self.now();
                let (tidv, tadv) = (self.reg(TIDV), self.reg(TADV));
                if self.timers.tx_done(now, cmd & TXD_IDE != 0, tidv, tadv) {
                    self.raise(INT_TXDW);
                }
            }
            self.set_reg(TDH, (h + 1) % n);
            moved = true;
        }
        if moved && self.reg(TDH) == self.reg(TDT) {
            self.raise(INT_TXQE);
        }
    }

    /// Handles one descriptor; returns its command byte.
    fn descriptor(&mut self, d: &[u8; 16]) -> u8 {
        let (desc, cmd) = decode(d);
        let (addr, len, offload, special) = match desc {
            Desc::Context(c) => {
                self.tx.ctx = c;
                return cmd;
            }
            Desc::Other => return cmd,
            Desc::Data {
                addr,
                len,
                offload,
                special,
                ..
            } => (addr, len, offload, special),
        };
        if !self.tx.started {
            self.tx.started = true;
            self.tx.offload = offload;
        }
        let at = self.tx.pkt.len();
        if at + len > MAX_GATHER {
            self.tx.bad = true;
        } else if len > 0 && !self.tx.bad {
            let mut pkt = std::mem::take(&mut self.tx.pkt);
            pkt.resize(at + len, 0);
            if !self.dma_read(addr, &mut pkt[at..]) {
                self.tx.bad = true;
            }
            self.tx.pkt = pkt;
        }
        if cmd & TXD_EOP != 0 {
            let vlan = (cmd & TXD_VLE != 0 && self.reg(CTRL) & CTRL_VME != 0).then_some(special);
            let pkt = std::mem::take(&mut self.tx.pkt);
            let bad = std::mem::take(&mut self.tx.bad);
            let offload = self.tx.offload;
            self.tx.started = false;
            if !bad && !pkt.is_empty() {
                self.send_packet(pkt, offload, vlan, cmd & TXD_IFCS != 0);
            }
        }
        cmd
    }

    fn send_packet(&mut self, mut pkt: Vec<u8>, o: Offload, vlan: Option<u16>, ifcs: bool) {
        let c = self.tx.ctx;
        if o.tse && c.mss > 0 && c.hdrlen > 0 && c.hdrlen < pkt.len() {
            return self.segment(pkt, o.popts, vlan);
        }
        if let Some((css, cso)) = o.legacy_csum {
            csum::insert(&mut pkt, css, 0, cso);
        }
        if o.popts & POPTS_TXSM != 0 {
            csum::insert(&mut pkt, c.tucss, c.tucse, c.tucso);
        }
        if o.popts & POPTS_IXSM != 0 {
            csum::insert(&mut pkt, c.ipcss, c.ipcse, c.ipcso);
        }
        self.emit(pkt, vlan, ifcs);
    }

    /// TCP segmentation: the header, then MSS bytes of payload per frame.
    fn segment(&mut self, pkt: Vec<u8>, popts: u8, vlan: Option<u16>) {
        let c = self.tx.ctx;
        self.stats.add(TSCTC, 1);
        let (hdr, payload) = pkt.split_at(c.hdrlen);
        let ip_id = usize::from(get16(hdr, c.ipcss + 4));
        let seq = get32(hdr, c.tucss + 4);
        let count = payload.len().div_ceil(c.mss);
        for (i, chunk) in payload.chunks(c.mss).enumerate() {
            let mut f = Vec::with_capacity(hdr.len() + chunk.len());
            f.extend_from_slice(hdr);
            f.extend_from_slice(chunk);
            let len = f.len();
            if c.tucmd & TUCMD_IP != 0 {
                put16(&mut f, c.ipcss + 2, len.saturating_sub(c.ipcss));
                put16(&mut f, c.ipcss + 4, ip_id.wrapping_add(i));
            } else {
                put16(&mut f, c.ipcss + 4, len.saturating_sub(c.ipcss + 40));
            }
            if c.tucmd & TUCMD_TCP != 0 {
                let s = seq.wrapping_add((i * c.mss) as u32);
                if let Some(b) = f.get_mut(c.tucss + 4..c.tucss + 8) {
                    b.copy_from_slice(&s.to_be_bytes());
                }
                if i + 1 < count {
                    if let Some(flags) = f.get_mut(c.tucss + 13) {
                        *flags &= !0x09; // FIN, PSH only on the last segment
                    }
                }
            } else {
                put16(&mut f, c.tucss + 4, len.saturating_sub(c.tucss));
            }
            if popts & POPTS_TXSM != 0 {
                csum::add_to_field(&mut f, c.tucso, len.saturating_sub(c.tucss) as u32);
                csum::insert(&mut f, c.tucss, c.tucse, c.tucso);
            }
            if popts & POPTS_IXSM != 0 {
                csum::insert(&mut f, c.ipcss, c.ipcse, c.ipcso);
            }
            self.emit(f, vlan, true);
        }
    }

    /// Puts one frame on the wire (or back into the receiver in loopback).
    fn emit(&mut self, mut f: Vec<u8>, vlan: Option<u16>, ifcs: bool) {
        if let Some(tci) = vlan {
            if f.len() >= 12 {
                let vet = self.reg(VET) as u16;
                let mut tag = [0u8; 4];
                tag[..2].copy_from_slice(&vet.to_be_bytes());
                tag[2..].copy_from_slice(&tci.to_be_bytes());
                f.splice(12..12, tag);
            }
        }
        let mut deliver = true;
        if !ifcs {
            let Some(cut) = f.len().checked_sub(4) else {
                return;
            };
            deliver = f[cut..] == csum::fcs(&f[..cut]);
            f.truncate(cut);
        }
        if self.reg(TCTL) & TCTL_PSP != 0 && f.len() < MIN_FRAME {
            f.resize(MIN_FRAME, 0);
        }
        if f.len() > MAX_FRAME {
            return;
        }
        let wire = f.len() + 4;
        self.stats.add(TPT, 1);
        self.stats.add(TOTL, wire as u64);
        if wire >= 64 {
            self.stats.add(GPTC, 1);
            self.stats.add(GOTCL, wire as u64);
        }
        self.stats.add_size(PTC64, wire);
        self.stats.add_cast(&f, false);
        if !deliver {
            return;
        }
        if self.loopback() {
            self.receive(&f);
        } else if let Some(b) = self.backend.as_mut() {
            // The wire drops what the link cannot take: nothing to report.
            let _ = b.send(&f);
        }
    }
}
