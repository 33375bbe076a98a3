//! Receive: the writeback, the filters, buffer sizes and long frames, the FIFO and its
//! overrun, VLAN stripping and filtering, checksum offload, the delay timers and the
//! descriptor threshold.

use std::time::Duration;

use super::regs::*;
use super::stats::*;
use super::tests::{Rig, MAC};
use super::tests_rxtx::*;
use crate::devices::pm::MonotonicClock;

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
