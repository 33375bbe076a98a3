//! The e1000's snapshot state: the config space, every MAC register (ring bases,
//! heads and tails, RCTL/TCTL, the address and multicast filters, ...; only the
//! non-zero ones are written), IOADDR, the EEPROM (contents and bit-bang state), the
//! PHY, ICR/IMS/ITR, the delay timers, the statistics, the receive FIFO and a packet
//! being gathered for transmit.
//!
//! The device's clock counts from its process's start, so times are saved relative to
//! the save: a deadline as how far ahead it was, the last interrupt as how long ago.
//! The INTx level is the config space's, driven again on restore.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::csum::RxCheck;
use super::eeprom::{Shift, WORDS};
use super::intr::{Irq, Timers};
use super::rx::{Pending, MAX_LONG};
use super::tx::{Context, Offload, MAX_GATHER};
use super::E1000;
use crate::devices::pci::PciConfigState;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

/// Far enough for any timer the registers can program (16-bit × 1.024 µs, ITR).
const MAX_DELAY: Duration = Duration::from_secs(3600);

#[derive(Serialize, Deserialize)]
struct FrameState {
    data: Vec<u8>,
    done: usize,
    vlan: Option<u16>,
    /// IPv4 checked, its verdict, TCP/UDP checked, its verdict.
    check: (bool, bool, bool, bool),
    sum: u16,
}

#[derive(Serialize, Deserialize)]
struct TxSaved {
    /// ipcss, ipcso, ipcse, tucss, tucso, tucse, hdrlen, mss.
    ctx: [u32; 8],
    tucmd: u8,
    pkt: Vec<u8>,
    started: bool,
    legacy_csum: Option<(u32, u32)>,
    popts: u8,
    tse: bool,
    bad: bool,
}

#[derive(Serialize, Deserialize)]
struct E1000State {
    cfg: PciConfigState,
    /// (register index, value) for every non-zero register, in order.
    regs: Vec<(u32, u32)>,
    ioaddr: u32,
    eeprom_words: Vec<u16>,
    eecd: u32,
    shift: Shift,
    eeprom_out: bool,
    eeprom_write_enabled: bool,
    phy_regs: Vec<u16>,
    cable: bool,
    phy_lost: bool,
    icr: u32,
    ims: u32,
    itr: u32,
    /// How long before the save the line was last asserted.
    last_assert_ago: Option<Duration>,
    /// rdtr, radv, tidv, tadv, itr: how far after the save each was due.
    timers: [Option<Duration>; 5],
    stats: Vec<u64>,
    rx: Vec<FrameState>,
    tx: TxSaved,
}

fn check_shift(s: Shift) -> Result<(), StateError> {
    let ok = match s {
        Shift::Idle | Shift::Done => true,
        Shift::Command { n, .. } => n < 8,
        Shift::Read { addr, bit } => usize::from(addr) < WORDS && bit <= 15,
        Shift::Write { addr, n, .. } => usize::from(addr) < WORDS && n < 16,
    };
    ensure(ok, || format!("EEPROM shift state {s:?}"))
}

impl E1000 {
    fn tx_saved(&self) -> TxSaved {
        let c = &self.tx.ctx;
        let ctx = [
            c.ipcss, c.ipcso, c.ipcse, c.tucss, c.tucso, c.tucse, c.hdrlen, c.mss,
        ];
        TxSaved {
            ctx: ctx.map(|v| v as u32),
            tucmd: c.tucmd,
            pkt: self.tx.pkt.clone(),
            started: self.tx.started,
            legacy_csum: self
                .tx
                .offload
                .legacy_csum
                .map(|(a, b)| (a as u32, b as u32)),
            popts: self.tx.offload.popts,
            tse: self.tx.offload.tse,
            bad: self.tx.bad,
        }
    }

    fn restore_tx(&mut self, t: TxSaved) -> Result<(), StateError> {
        // What the descriptor fields can hold: 8-bit offsets, 16-bit ends and MSS.
        let limits = [0xff, 0xff, 0xffff, 0xff, 0xff, 0xffff, 0xff, 0xffff];
        ensure(t.ctx.iter().zip(limits).all(|(&v, l)| v <= l), || {
            "transmit context".into()
        })?;
        ensure(t.pkt.len() <= MAX_GATHER, || {
            "transmit packet too long".into()
        })?;
        ensure(
            t.legacy_csum.is_none_or(|(a, b)| a <= 0xff && b <= 0xff),
            || "legacy checksum offsets".into(),
        )?;
        let [ipcss, ipcso, ipcse, tucss, tucso, tucse, hdrlen, mss] = t.ctx.map(|v| v as usize);
        self.tx.ctx = Context {
            ipcss,
            ipcso,
            ipcse,
            tucss,
            tucso,
            tucse,
            tucmd: t.tucmd,
            hdrlen,
            mss,
        };
        self.tx.pkt = t.pkt;
        self.tx.started = t.started;
        self.tx.offload = Offload {
            legacy_csum: t.legacy_csum.map(|(a, b)| (a as usize, b as usize)),
            popts: t.popts,
            tse: t.tse,
        };
        self.tx.bad = t.bad;
        Ok(())
    }

    fn restore_rx(&mut self, frames: Vec<FrameState>) -> Result<(), StateError> {
        let mut bytes = 0usize;
        for f in &frames {
            ensure(
                f.data.len() <= MAX_LONG + 4 && f.done <= f.data.len(),
                || "a receive FIFO frame".into(),
            )?;
            bytes += f.data.len();
        }
        ensure(bytes <= 64 * 1024, || "receive FIFO overfull".into())?;
        self.rx.bytes = bytes;
        self.rx.frames = frames
            .into_iter()
            .map(|f| Pending {
                data: f.data,
                done: f.done,
                vlan: f.vlan,
                check: RxCheck {
                    ip: f.check.0,
                    ip_ok: f.check.1,
                    l4: f.check.2,
                    l4_ok: f.check.3,
                },
                sum: f.sum,
            })
            .collect();
        Ok(())
    }
}

impl Stateful for E1000 {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        let now = self.now();
        let ahead = |t: Option<Duration>| t.map(|t| t.saturating_sub(now));
        let t = &self.timers;
        encode(&E1000State {
            cfg: self.cfg.save_state(),
            regs: (0u32..)
                .zip(self.regs.iter())
                .filter(|(_, &v)| v != 0)
                .map(|(i, &v)| (i, v))
                .collect(),
            ioaddr: self.ioaddr,
            eeprom_words: self.eeprom.words.to_vec(),
            eecd: self.eeprom.eecd,
            shift: self.eeprom.shift,
            eeprom_out: self.eeprom.out,
            eeprom_write_enabled: self.eeprom.write_enabled,
            phy_regs: self.phy.regs.to_vec(),
            cable: self.phy.cable,
            phy_lost: self.phy.lost,
            icr: self.irq.icr,
            ims: self.irq.ims,
            itr: self.irq.itr,
            last_assert_ago: self.irq.last.map(|l| now.saturating_sub(l)),
            timers: [t.rdtr, t.radv, t.tidv, t.tadv, t.itr].map(ahead),
            stats: self.stats.c.to_vec(),
            rx: self
                .rx
                .frames
                .iter()
                .map(|p| FrameState {
                    data: p.data.clone(),
                    done: p.done,
                    vlan: p.vlan,
                    check: (p.check.ip, p.check.ip_ok, p.check.l4, p.check.l4_ok),
                    sum: p.sum,
                })
                .collect(),
            tx: self.tx_saved(),
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: E1000State = decode(bytes)?;
        self.cfg.check_state(&s.cfg)?;
        let mut next = 0usize;
        for &(i, _) in &s.regs {
            let i = i as usize;
            ensure(i >= next && i < self.regs.len(), || format!("register {i}"))?;
            next = i + 1;
        }
        let words: [u16; WORDS] =
            s.eeprom_words.as_slice().try_into().map_err(|_| {
                StateError::Invalid(format!("{} EEPROM words", s.eeprom_words.len()))
            })?;
        let phy: [u16; 32] = s
            .phy_regs
            .as_slice()
            .try_into()
            .map_err(|_| StateError::Invalid(format!("{} PHY registers", s.phy_regs.len())))?;
        let stats = s
            .stats
            .as_slice()
            .try_into()
            .map_err(|_| StateError::Invalid(format!("{} counters", s.stats.len())))?;
        check_shift(s.shift)?;
        let delays = s.timers.iter().chain(std::iter::once(&s.last_assert_ago));
        ensure(delays.flatten().all(|&d| d <= MAX_DELAY), || {
            "a timer too far away".into()
        })?;
        self.restore_rx(s.rx)?;
        self.restore_tx(s.tx)?;
        self.regs.fill(0);
        for (i, v) in s.regs {
            self.set_reg(i * 4, v);
        }
        self.ioaddr = s.ioaddr;
        self.eeprom.words = words;
        self.eeprom.eecd = s.eecd;
        self.eeprom.shift = s.shift;
        self.eeprom.out = s.eeprom_out;
        self.eeprom.write_enabled = s.eeprom_write_enabled;
        self.phy.regs = phy;
        self.phy.cable = s.cable && self.backend.is_some();
        self.phy.lost = s.phy_lost;
        self.phy.refresh();
        self.stats.c = stats;
        let now = self.now();
        let due = |d: Option<Duration>| d.map(|d| now + d);
        let [rdtr, radv, tidv, tadv, itr] = s.timers.map(due);
        self.timers = Timers {
            rdtr,
            radv,
            tidv,
            tadv,
            itr,
        };
        self.irq = Irq {
            icr: s.icr,
            ims: s.ims,
            itr: s.itr,
            asserted: false,
            last: s.last_assert_ago.map(|a| now.saturating_sub(a)),
        };
        // The INTx level was saved with the config space, which drives the line.
        self.cfg.restore_state(&s.cfg)?;
        self.irq.asserted = self.cfg.intx();
        self.armed = None;
        self.sync_timer();
        Ok(())
    }
}
