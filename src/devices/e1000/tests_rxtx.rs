//! What the receive and transmit tests share: rings and buffers set up as a driver
//! does, descriptors built by hand, test frames, and checksums computed here,
//! independently of the device's code.

use vm_memory::{Bytes, GuestAddress};

use super::regs::*;
use super::tests::{Rig, MAC};

pub(super) const RX_RING: u64 = 0x1000;
pub(super) const TX_RING: u64 = 0x2000;
pub(super) const RX_BUF: u64 = 0x10000;
pub(super) const RX_BUF_STRIDE: u64 = 0x4000;
pub(super) const TX_BUF: u64 = 0x80000;
pub(super) const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];

/// RFC 1071 sum, written separately from the device's.
pub(super) fn inet_sum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for (i, b) in data.iter().enumerate() {
        s += if i % 2 == 0 {
            u32::from(*b) << 8
        } else {
            u32::from(*b)
        };
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

pub(super) fn frame(dst: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(len, fill);
    f
}

/// An Ethernet + IPv4 + TCP frame with `payload` bytes; checksums zero.
pub(super) fn tcp_frame(payload: usize) -> Vec<u8> {
    let mut f = MAC.to_vec();
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 20 + payload;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
    ]);
    f.extend_from_slice(&[64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x50, 0x19, 0xff, 0xff, 0, 0, 0, 0]); // FIN|PSH|ACK
    f.extend((0..payload).map(|i| (i * 7) as u8));
    f
}

/// The TCP pseudo-header sum for `tcp_len` bytes (the stack's seed for offload).
pub(super) fn pseudo(f: &[u8], tcp_len: usize) -> u16 {
    let mut p = f[26..34].to_vec();
    p.extend_from_slice(&[0, 6, (tcp_len >> 8) as u8, tcp_len as u8]);
    inet_sum(&p)
}

pub(super) fn tcp_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let seg = &f[14 + ihl..14 + total];
    let mut p = f[26..34].to_vec();
    p.extend_from_slice(&[0, 6, (seg.len() >> 8) as u8, seg.len() as u8]);
    p.extend_from_slice(seg);
    inet_sum(&p) == 0xffff && inet_sum(&f[14..14 + ihl]) == 0xffff
}

impl Rig {
    pub(super) fn rx_setup(&mut self, n: u32, rctl: u32) {
        self.w(RDBAL, RX_RING as u32);
        self.w(RDBAH, 0);
        self.w(RDLEN, n * 16);
        self.w(RDH, 0);
        for i in 0..u64::from(n) {
            let d = (RX_BUF + i * RX_BUF_STRIDE).to_le_bytes();
            self.mem
                .write_slice(&d, GuestAddress(RX_RING + 16 * i))
                .unwrap();
            self.mem
                .write_slice(&[0; 8], GuestAddress(RX_RING + 16 * i + 8))
                .unwrap();
        }
        self.w(RCTL, rctl | RCTL_EN);
        self.w(RDT, n - 1);
    }

    /// Descriptor `i`'s (length, checksum, status, errors, special).
    pub(super) fn rx_desc(&self, i: u64) -> (u16, u16, u8, u8, u16) {
        let mut b = [0u8; 8];
        self.mem
            .read_slice(&mut b, GuestAddress(RX_RING + 16 * i + 8))
            .unwrap();
        let le = |a, b| u16::from_le_bytes([a, b]);
        (le(b[0], b[1]), le(b[2], b[3]), b[4], b[5], le(b[6], b[7]))
    }

    pub(super) fn rx_buf(&self, i: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem
            .read_slice(&mut v, GuestAddress(RX_BUF + i * RX_BUF_STRIDE))
            .unwrap();
        v
    }

    pub(super) fn give(&mut self, f: &[u8]) {
        self.wire.give(f);
        self.dev.pump();
    }

    pub(super) fn tx_setup(&mut self, n: u32) {
        self.w(TDBAL, TX_RING as u32);
        self.w(TDBAH, 0);
        self.w(TDLEN, n * 16);
        self.w(TDH, 0);
        self.w(TDT, 0);
        self.w(TCTL, TCTL_EN | TCTL_PSP);
    }

    /// Writes descriptor `i` (16 raw bytes).
    pub(super) fn tx_desc(&self, i: u64, d: [u8; 16]) {
        self.mem
            .write_slice(&d, GuestAddress(TX_RING + 16 * i))
            .unwrap();
    }

    pub(super) fn tx_status(&self, i: u64) -> u8 {
        let mut b = [0u8; 1];
        self.mem
            .read_slice(&mut b, GuestAddress(TX_RING + 16 * i + 12))
            .unwrap();
        b[0]
    }

    /// A buffer at `TX_BUF + at` holding `data`; returns its address.
    pub(super) fn tx_buf(&self, at: u64, data: &[u8]) -> u64 {
        self.mem
            .write_slice(data, GuestAddress(TX_BUF + at))
            .unwrap();
        TX_BUF + at
    }
}

pub(super) fn legacy(addr: u64, len: usize, cmd: u8, cso: u8, css: u8, special: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&(len as u16).to_le_bytes());
    d[10] = cso;
    d[11] = cmd;
    d[13] = css;
    d[14..].copy_from_slice(&special.to_le_bytes());
    d
}

pub(super) fn data_desc(addr: u64, len: usize, dcmd: u8, popts: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    let lower = (len as u32 & 0xf_ffff) | 1 << 20 | u32::from(dcmd | TXD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = popts;
    d
}

/// A context for Ethernet/IPv4(20)/TCP(20).
pub(super) fn context(tucmd: u8, hdrlen: u8, mss: u16, paylen: u32) -> [u8; 16] {
    let mut d = [14, 24, 33, 0, 34, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let lower = (paylen & 0xf_ffff) | u32::from(tucmd | TXD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = hdrlen;
    d[14..].copy_from_slice(&mss.to_le_bytes());
    d
}
