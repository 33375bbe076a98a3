//! Transmit: legacy descriptors (padding, several buffers, checksum insertion), the
//! context/data offloads, TCP segmentation, VLAN insertion and software FCS, what
//! makes transmission wait, the interrupt delay, loopback and a DMA outside RAM.

use std::time::Duration;

use super::regs::*;
use super::stats::*;
use super::tests::{Rig, MAC};
use super::tests_rxtx::*;
use crate::devices::pm::MonotonicClock;

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
