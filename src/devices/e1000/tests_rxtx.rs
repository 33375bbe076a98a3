//! Receive and transmit: descriptors as a driver fills them, frames on the fake wire
//! checked byte by byte (checksums recomputed here, independently of the device's
//! code), filters, buffer sizes, the FIFO, offloads, segmentation, VLAN tags and the
//! interrupt causes and counters each path produces.

use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::regs::*;
use super::stats::*;
use super::tests::{Rig, MAC};
use crate::devices::pm::MonotonicClock;

const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x2000;
const RX_BUF: u64 = 0x10000;
const RX_BUF_STRIDE: u64 = 0x4000;
const TX_BUF: u64 = 0x80000;
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];

/// RFC 1071 sum, written separately from the device's.
fn inet_sum(data: &[u8]) -> u16 {
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

fn frame(dst: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&PEER);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(len, fill);
    f
}

/// An Ethernet + IPv4 + TCP frame with `payload` bytes; checksums zero.
fn tcp_frame(payload: usize) -> Vec<u8> {
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
fn pseudo(f: &[u8], tcp_len: usize) -> u16 {
    let mut p = f[26..34].to_vec();
    p.extend_from_slice(&[0, 6, (tcp_len >> 8) as u8, tcp_len as u8]);
    inet_sum(&p)
}

fn tcp_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let seg = &f[14 + ihl..14 + total];
    let mut p = f[26..34].to_vec();
    p.extend_from_slice(&[0, 6, (seg.len() >> 8) as u8, seg.len() as u8]);
    p.extend_from_slice(seg);
    inet_sum(&p) == 0xffff && inet_sum(&f[14..14 + ihl]) == 0xffff
}

impl Rig {
    fn rx_setup(&mut self, n: u32, rctl: u32) {
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
    fn rx_desc(&self, i: u64) -> (u16, u16, u8, u8, u16) {
        let mut b = [0u8; 8];
        self.mem
            .read_slice(&mut b, GuestAddress(RX_RING + 16 * i + 8))
            .unwrap();
        let le = |a, b| u16::from_le_bytes([a, b]);
        (le(b[0], b[1]), le(b[2], b[3]), b[4], b[5], le(b[6], b[7]))
    }

    fn rx_buf(&self, i: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem
            .read_slice(&mut v, GuestAddress(RX_BUF + i * RX_BUF_STRIDE))
            .unwrap();
        v
    }

    fn give(&mut self, f: &[u8]) {
        self.wire.give(f);
        self.dev.pump();
    }

    fn tx_setup(&mut self, n: u32) {
        self.w(TDBAL, TX_RING as u32);
        self.w(TDBAH, 0);
        self.w(TDLEN, n * 16);
        self.w(TDH, 0);
        self.w(TDT, 0);
        self.w(TCTL, TCTL_EN | TCTL_PSP);
    }

    /// Writes descriptor `i` (16 raw bytes).
    fn tx_desc(&self, i: u64, d: [u8; 16]) {
        self.mem
            .write_slice(&d, GuestAddress(TX_RING + 16 * i))
            .unwrap();
    }

    fn tx_status(&self, i: u64) -> u8 {
        let mut b = [0u8; 1];
        self.mem
            .read_slice(&mut b, GuestAddress(TX_RING + 16 * i + 12))
            .unwrap();
        b[0]
    }

    /// A buffer at `TX_BUF + at` holding `data`; returns its address.
    fn tx_buf(&self, at: u64, data: &[u8]) -> u64 {
        self.mem
            .write_slice(data, GuestAddress(TX_BUF + at))
            .unwrap();
        TX_BUF + at
    }
}

fn legacy(addr: u64, len: usize, cmd: u8, cso: u8, css: u8, special: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&(len as u16).to_le_bytes());
    d[10] = cso;
    d[11] = cmd;
    d[13] = css;
    d[14..].copy_from_slice(&special.to_le_bytes());
    d
}

fn data_desc(addr: u64, len: usize, dcmd: u8, popts: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    let lower = (len as u32 & 0xf_ffff) | 1 << 20 | u32::from(dcmd | TXD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = popts;
    d
}

/// A context for Ethernet/IPv4(20)/TCP(20).
fn context(tucmd: u8, hdrlen: u8, mss: u16, paylen: u32) -> [u8; 16] {
    let mut d = [14, 24, 33, 0, 34, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let lower = (paylen & 0xf_ffff) | u32::from(tucmd | TXD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = hdrlen;
    d[14..].copy_from_slice(&mss.to_le_bytes());
    d
}

#[test]
fn rx_writes_frame_fcs_and_status() {
    let mut r = Rig::new();
    r.w(IMS, INT_RXT0);
    r.rx_setup(8, RCTL_BAM);
    let f = frame(MAC, 100, 0xab);
    r.give(&f);
    let (len, _, status, errors, _) = r.rx_desc(0);
    assert_eq!(len, 104, "frame + FCS");
    assert_eq!(
        status & (RXD_DD | RXD_EOP | RXD_IXSM),
        RXD_DD | RXD_EOP | RXD_IXSM
    );
    assert_eq!(errors, 0);
    let got = r.rx_buf(0, 104);
    assert_eq!(&got[..100], &f[..]);
    assert_eq!(&got[100..], &crc32fast::hash(&f).to_le_bytes(), "real FCS");
    assert_eq!(r.r(RDH), 1);
    assert!(r.irq());
    assert_eq!(r.r(ICR) & INT_RXT0, INT_RXT0);
    assert_eq!(
        (r.r(GPRC), r.r(TPR), r.r(GORCL), r.r(GORCH)),
        (1, 1, 104, 0)
    );
    // SECRC strips it; a short frame is padded to 60.
    r.set(RCTL, RCTL_SECRC);
    r.give(&f[..42]);
    let (len, ..) = r.rx_desc(1);
    assert_eq!(len, 60);
    assert_eq!(r.rx_buf(1, 60)[42..], [0; 18]);
    assert_eq!(r.r(PRC64), 1);
}

#[test]
fn rx_address_filters() {
    let mut r = Rig::new();
    r.rx_setup(16, 0);
    let other = [0x02, 0, 0, 0, 0, 0x99];
    let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
    r.give(&frame(other, 60, 0));
    r.give(&frame([0xff; 6], 60, 0));
    r.give(&frame(mcast, 60, 0));
    assert_eq!(r.r(RDH), 0, "nothing accepted");
    assert_eq!(r.r(TPR), 3, "but all counted as received");
    r.give(&frame(MAC, 60, 0));
    assert_eq!(r.r(RDH), 1, "own address");
    // Multicast hash, offset 0: bits 47:36 of the address.
    let hash = (u32::from(mcast[5]) << 4 | u32::from(mcast[4]) >> 4) & 0xfff;
    r.w(MTA + 4 * (hash >> 5), 1 << (hash & 31));
    r.give(&frame(mcast, 60, 0));
    assert_eq!(r.r(RDH), 2, "hashed multicast");
    assert_eq!(r.r(MPRC), 1);
    r.set(RCTL, RCTL_BAM);
    r.give(&frame([0xff; 6], 60, 0));
    assert_eq!((r.r(RDH), r.r(BPRC)), (3, 1), "broadcast with BAM");
    // An exact entry in RA[3].
    r.w(
        RA + 24,
        u32::from_le_bytes([other[0], other[1], other[2], other[3]]),
    );
    r.w(
        RA + 28,
        RAH_AV | u32::from(u16::from_le_bytes([other[4], other[5]])),
    );
    r.give(&frame(other, 60, 0));
    assert_eq!(r.r(RDH), 4);
    r.w(RA + 28, 0);
    r.give(&frame(other, 60, 0));
    assert_eq!(r.r(RDH), 4, "entry no longer valid");
    r.set(RCTL, RCTL_UPE);
    r.give(&frame(other, 60, 0));
    assert_eq!(r.r(RDH), 5, "unicast promiscuous");
    r.give(&frame([0x01, 0, 0, 0, 0, 1], 60, 0));
    assert_eq!(r.r(RDH), 5, "UPE is not MPE");
    r.set(RCTL, RCTL_MPE);
    r.give(&frame([0x01, 0, 0, 0, 0, 1], 60, 0));
    assert_eq!(r.r(RDH), 6);
}

#[test]
fn rx_buffer_sizes_and_long_packets() {
    let mut r = Rig::new();
    r.rx_setup(8, 3 << RCTL_BSIZE_SHIFT | RCTL_SECRC); // 256-byte buffers
    r.give(&frame(MAC, 600, 7));
    let lens: Vec<_> = (0..3)
        .map(|i| (r.rx_desc(i).0, r.rx_desc(i).2 & RXD_EOP))
        .collect();
    assert_eq!(lens, vec![(256, 0), (256, 0), (88, RXD_EOP)]);
    assert_eq!(r.rx_buf(2, 88), frame(MAC, 600, 7)[512..]);
    // 1600 bytes is too long without LPE.
    r.w(
        RCTL,
        RCTL_EN | RCTL_SECRC | RCTL_BSEX | 1 << RCTL_BSIZE_SHIFT,
    ); // 16 KiB
    r.give(&frame(MAC, 1600, 1));
    assert_eq!((r.r(RDH), r.r(ROC)), (3, 1));
    r.set(RCTL, RCTL_LPE);
    r.give(&frame(MAC, 9000, 1));
    assert_eq!(r.rx_desc(3).0, 9000, "one 16 KiB buffer");
    assert_eq!(r.r(RDH), 4);
}

#[test]
fn rx_fifo_overrun_and_no_buffers() {
    let mut r = Rig::new();
    r.w(IMS, INT_RXO);
    r.rx_setup(64, RCTL_SECRC);
    r.w(RDT, 0); // nothing posted
    for _ in 0..40 {
        r.give(&frame(MAC, 1514, 0));
    }
    // 48 KiB hold 32 full frames; the rest are missed.
    assert_eq!(r.r(MPC), 8);
    assert_eq!(r.r(RNBC), 32);
    assert!(r.irq());
    assert_eq!(r.r(ICR) & INT_RXO, INT_RXO);
    assert_eq!(r.r(GPRC), 32);
    // Posting buffers drains the FIFO in order.
    r.w(RDT, 40);
    assert_eq!(r.r(RDH), 32);
    assert_eq!(r.rx_desc(31).0, 1514);
    // A bigger receive allocation holds more.
    r.w(PBA, 64);
    assert_eq!(r.r(PBA), 64);
}

#[test]
fn rx_vlan_strip_and_filter() {
    let mut r = Rig::new();
    r.rx_setup(8, RCTL_SECRC | RCTL_VFE);
    r.set(CTRL, CTRL_VME);
    let mut f = frame(MAC, 64, 3);
    f.splice(12..12, [0x81, 0x00, 0x20, 0x05]); // PCP 1, VID 5
    r.give(&f);
    assert_eq!(r.r(RDH), 0, "VID 5 not in the filter table");
    r.w(VFTA, 1 << 5);
    r.give(&f);
    let (len, _, status, _, special) = r.rx_desc(0);
    assert_eq!((len, status & RXD_VP, special), (64, RXD_VP, 0x2005));
    assert_eq!(r.rx_buf(0, 64), frame(MAC, 64, 3), "tag removed");
}

#[test]
fn rx_checksum_offload() {
    let mut r = Rig::new();
    r.rx_setup(8, RCTL_SECRC);
    r.w(RXCSUM, RXCSUM_IPOFL | RXCSUM_TUOFL);
    let mut f = tcp_frame(100);
    let ip = !inet_sum(&f[14..34]);
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    let mut p = f[26..34].to_vec();
    p.extend_from_slice(&[0, 6, 0, 120]);
    p.extend_from_slice(&f[34..]);
    let tcp = !inet_sum(&p);
    f[50..52].copy_from_slice(&tcp.to_be_bytes());
    assert!(tcp_ok(&f));
    r.give(&f);
    let (_, _, status, errors, _) = r.rx_desc(0);
    assert_eq!(
        status & (RXD_IPCS | RXD_TCPCS | RXD_IXSM),
        RXD_IPCS | RXD_TCPCS
    );
    assert_eq!(errors, 0);
    f[60] ^= 1;
    r.give(&f);
    let (_, _, status, errors, _) = r.rx_desc(1);
    assert_eq!((status & RXD_TCPCS, errors), (RXD_TCPCS, RXE_TCPE));
    f[22] ^= 1; // TTL: header checksum now wrong too
    r.give(&f);
    assert_eq!(r.rx_desc(2).3, RXE_TCPE | RXE_IPE);
    // Not IP: no verdict, no IXSM (offload is on).
    r.give(&frame(MAC, 60, 0));
    assert_eq!(r.rx_desc(3).2 & (RXD_IPCS | RXD_TCPCS | RXD_IXSM), 0);
}

#[test]
fn rx_delay_timers_and_threshold() {
    let mut r = Rig::new();
    r.w(IMS, INT_RXT0 | INT_RXDMT0);
    r.w(RDTR, 100); // 102.4 us after the last frame
    r.w(RADV, 200);
    r.rx_setup(8, RCTL_SECRC | 1 << RCTL_RDMTS_SHIFT); // threshold: 1/4 of 8
    r.give(&frame(MAC, 60, 0));
    assert!(!r.irq());
    r.clock.advance(Duration::from_micros(100));
    r.give(&frame(MAC, 60, 0));
    r.clock.advance(Duration::from_micros(100));
    r.dev.poll_timer(r.clock.now());
    assert!(!r.irq(), "packet timer restarted by the second frame");
    r.clock.advance(Duration::from_micros(5));
    r.dev.poll_timer(r.clock.now());
    assert!(r.irq(), "absolute timer: 204.8 us after the first frame");
    assert_eq!(r.r(ICR), INT_RXT0);
    // Free descriptors: 7 posted, 2 used -> 5; at 2 (= 8/4) RXDMT0.
    r.w(RDTR, 0);
    r.give(&frame(MAC, 60, 0));
    r.give(&frame(MAC, 60, 0));
    assert_eq!(r.r(ICR), INT_RXT0);
    r.give(&frame(MAC, 60, 0));
    assert_eq!(r.r(ICR), INT_RXT0 | INT_RXDMT0);
    // FPD flushes a running packet timer at once.
    r.w(RDTR, 1000);
    r.give(&frame(MAC, 60, 0));
    assert_eq!(r.r(ICR), 0);
    r.w(RDTR, 1000 | RDTR_FPD);
    assert_eq!(r.r(ICR), INT_RXT0);
}

#[test]
fn tx_legacy_descriptor() {
    let mut r = Rig::new();
    r.w(IMS, INT_TXDW | INT_TXQE);
    r.tx_setup(8);
    let f = frame(PEER, 42, 9);
    let a = r.tx_buf(0, &f);
    r.tx_desc(0, legacy(a, 42, TXD_EOP | TXD_IFCS | TXD_RS, 0, 0, 0));
    r.w(TDT, 1);
    let sent = r.wire.sent();
    let mut padded = f.clone();
    padded.resize(60, 0);
    assert_eq!(sent, vec![padded], "PSP pads to 60");
    assert_eq!(r.tx_status(0) & TXD_STAT_DD, TXD_STAT_DD);
    assert_eq!(r.r(TDH), 1);
    assert!(r.irq());
    assert_eq!(r.r(ICR), INT_TXDW | INT_TXQE);
    assert_eq!((r.r(GPTC), r.r(TPT), r.r(GOTCL), r.r(PTC64)), (1, 1, 64, 1));
    // Two buffers, one frame; legacy checksum insertion from CSS to the end.
    let mut f = frame(PEER, 200, 1);
    f[20..22].copy_from_slice(&[0, 0]); // the field software zeroes
    let a = r.tx_buf(0x1000, &f[..100]);
    let b = r.tx_buf(0x2000, &f[100..]);
    r.tx_desc(1, legacy(a, 100, TXD_IC, 20, 14, 0));
    r.tx_desc(2, legacy(b, 100, TXD_EOP | TXD_IFCS, 0, 0, 0));
    r.w(TDT, 3);
    let sent = r.wire.sent();
    assert_eq!(sent.len(), 1);
    let mut want = f.clone();
    let c = !inet_sum(&want[14..]);
    want[20..22].copy_from_slice(&c.to_be_bytes());
    assert_eq!(sent[0][..20], want[..20]);
    assert_eq!(inet_sum(&sent[0][14..]), 0xffff, "checksum verifies");
    assert_eq!(r.tx_status(2) & TXD_STAT_DD, 0, "no RS, no writeback");
}

#[test]
fn tx_context_checksum_offload() {
    let mut r = Rig::new();
    r.tx_setup(8);
    let mut f = tcp_frame(300);
    let seed = pseudo(&f, 320);
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    let a = r.tx_buf(0, &f);
    r.tx_desc(0, context(TUCMD_TCP | TUCMD_IP, 0, 0, 0));
    r.tx_desc(
        1,
        data_desc(
            a,
            f.len(),
            TXD_EOP | TXD_IFCS | TXD_RS,
            POPTS_IXSM | POPTS_TXSM,
        ),
    );
    r.w(TDT, 2);
    let sent = r.wire.sent();
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    assert!(tcp_ok(s), "IP and TCP checksums inserted");
    assert_eq!(s[..24], f[..24]);
    assert_eq!(s[34..50], f[34..50]);
    assert_eq!(s[52..], f[52..]);
    // Without POPTS the context is not applied.
    r.tx_desc(2, data_desc(a, f.len(), TXD_EOP | TXD_IFCS, 0));
    r.w(TDT, 3);
    assert_eq!(r.wire.sent(), vec![f]);
}

#[test]
fn tx_tcp_segmentation() {
    let mut r = Rig::new();
    r.tx_setup(8);
    let mut f = tcp_frame(2500);
    // What a TSO driver hands over: IP length and checksum zero, TCP seeded with the
    // pseudo-header without length.
    f[16..18].copy_from_slice(&[0, 0]);
    let seed = pseudo(&f, 0);
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    let a = r.tx_buf(0, &f[..54]);
    let b = r.tx_buf(0x1000, &f[54..]);
    r.tx_desc(0, context(TUCMD_TCP | TUCMD_IP | TXD_TSE, 54, 1000, 2500));
    let opts = POPTS_IXSM | POPTS_TXSM;
    r.tx_desc(1, data_desc(a, 54, TXD_TSE | TXD_IFCS, opts));
    r.tx_desc(
        2,
        data_desc(b, 2500, TXD_TSE | TXD_IFCS | TXD_EOP | TXD_RS, opts),
    );
    r.w(TDT, 3);
    let sent = r.wire.sent();
    assert_eq!(
        sent.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1054, 1054, 554]
    );
    for (i, s) in sent.iter().enumerate() {
        assert!(tcp_ok(s), "segment {i}");
        let total = u16::from_be_bytes([s[16], s[17]]) as usize;
        assert_eq!(total, s.len() - 14);
        assert_eq!(
            u16::from_be_bytes([s[18], s[19]]),
            0x1234 + i as u16,
            "IP id"
        );
        assert_eq!(
            u32::from_be_bytes([s[38], s[39], s[40], s[41]]),
            4096 + 1000 * i as u32
        );
        let flags = s[47];
        assert_eq!(
            flags & 0x09,
            if i == 2 { 0x09 } else { 0 },
            "FIN/PSH last only"
        );
        assert_eq!(
            s[54..],
            f[54 + 1000 * i..(54 + 1000 * (i + 1)).min(f.len())]
        );
    }
    assert_eq!((r.r(TSCTC), r.r(TPT)), (1, 3));
    assert_eq!(r.tx_status(2) & TXD_STAT_DD, TXD_STAT_DD);
}

#[test]
fn tx_vlan_insertion_and_software_fcs() {
    let mut r = Rig::new();
    r.tx_setup(8);
    r.set(CTRL, CTRL_VME);
    let f = frame(PEER, 64, 4);
    let a = r.tx_buf(0, &f);
    r.tx_desc(0, legacy(a, 64, TXD_EOP | TXD_IFCS | TXD_VLE, 0, 0, 0x0123));
    r.w(TDT, 1);
    let mut want = f.clone();
    want.splice(12..12, [0x81, 0x00, 0x01, 0x23]);
    assert_eq!(r.wire.sent(), vec![want]);
    // IFCS clear: the buffer carries the FCS; a wrong one never reaches the peer.
    let mut g = f.clone();
    g.extend_from_slice(&crc32fast::hash(&f).to_le_bytes());
    let a = r.tx_buf(0x1000, &g);
    r.tx_desc(1, legacy(a, 68, TXD_EOP, 0, 0, 0));
    g[64] ^= 0xff;
    let b = r.tx_buf(0x2000, &g);
    r.tx_desc(2, legacy(b, 68, TXD_EOP, 0, 0, 0));
    r.w(TDT, 3);
    assert_eq!(r.wire.sent(), vec![f]);
}

#[test]
fn tx_waits_for_link_enable_and_bus_master() {
    let mut r = Rig::new();
    r.tx_setup(8);
    let a = r.tx_buf(0, &frame(PEER, 60, 0));
    r.tx_desc(0, legacy(a, 60, TXD_EOP | TXD_IFCS | TXD_RS, 0, 0, 0));
    r.dev.set_link(false);
    r.w(TDT, 1);
    assert!(r.wire.sent().is_empty());
    assert_eq!(r.r(TDH), 0);
    r.dev.set_link(true);
    assert_eq!(r.wire.sent().len(), 1, "sent when the link came back");
    r.tx_desc(1, legacy(a, 60, TXD_EOP | TXD_IFCS, 0, 0, 0));
    r.dev.config_write(0x04, &[0x03, 0]);
    r.w(TDT, 2);
    assert!(r.wire.sent().is_empty(), "no bus master, no DMA");
    use crate::devices::pci::PciDevice;
    r.dev.config_write(0x04, &[0x07, 0]);
    assert_eq!(r.wire.sent().len(), 1);
}

#[test]
fn tx_interrupt_delay() {
    let mut r = Rig::new();
    r.w(IMS, INT_TXDW);
    r.w(TIDV, 10);
    r.tx_setup(8);
    let a = r.tx_buf(0, &frame(PEER, 60, 0));
    r.tx_desc(
        0,
        legacy(a, 60, TXD_EOP | TXD_IFCS | TXD_RS | TXD_IDE, 0, 0, 0),
    );
    r.w(TDT, 1);
    assert_eq!(
        r.tx_status(0) & TXD_STAT_DD,
        TXD_STAT_DD,
        "written back now"
    );
    assert!(!r.irq(), "TXDW delayed");
    assert_eq!(r.dev.next_deadline(), Some(Duration::from_nanos(10_240)));
    r.clock.advance(Duration::from_nanos(10_240));
    r.dev.poll_timer(r.clock.now());
    assert!(r.irq());
}

#[test]
fn loopback_and_bad_dma() {
    let mut r = Rig::new();
    r.rx_setup(8, RCTL_SECRC | 1 << RCTL_LBM_SHIFT);
    r.tx_setup(8);
    let f = frame(MAC, 80, 5);
    let a = r.tx_buf(0, &f);
    r.tx_desc(0, legacy(a, 80, TXD_EOP | TXD_IFCS, 0, 0, 0));
    r.w(TDT, 1);
    assert!(r.wire.sent().is_empty());
    assert_eq!(r.rx_buf(0, 80), f, "came back in");
    // A buffer outside RAM: the frame is lost, the descriptor completes, PCI status
    // records the master abort.
    r.tx_desc(1, legacy(1 << 40, 80, TXD_EOP | TXD_IFCS | TXD_RS, 0, 0, 0));
    r.w(TDT, 2);
    assert_eq!(r.r(TDH), 2);
    let mut st = [0u8; 2];
    use crate::devices::pci::PciDevice;
    r.dev.config_read(0x06, &mut st);
    assert!(st[1] & 0x20 != 0, "received master abort");
}
