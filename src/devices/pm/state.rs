//! The PM block's snapshot state: PM1 status/enable/control, the GPE0 halves and the
//! PM timer. The timer continues from its saved count (the VM clock it runs on stood
//! still while the machine was saved and is new in the restoring process, so the
//! device keeps the difference as its time base). The SCI level is recomputed and
//! driven on restore.

use serde::{Deserialize, Serialize};

use super::*;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

#[derive(Serialize, Deserialize)]
struct PmState {
    sts: u16,
    en: u16,
    cnt: u16,
    gpe_sts: Vec<u8>,
    gpe_en: Vec<u8>,
    tmr_epoch: u64,
    /// The timer's time at the save, ns.
    timer_ns: u64,
}

impl Stateful for Pm {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        encode(&PmState {
            sts: self.sts,
            en: self.en,
            cnt: self.cnt,
            gpe_sts: self.gpe_sts.clone(),
            gpe_en: self.gpe_en.clone(),
            tmr_epoch: self.tmr_epoch,
            timer_ns: self.timer_ns(),
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: PmState = decode(bytes)?;
        let half = self.gpe_sts.len();
        ensure(s.gpe_sts.len() == half && s.gpe_en.len() == half, || {
            format!(
                "GPE0 halves of {} and {} bytes",
                s.gpe_sts.len(),
                s.gpe_en.len()
            )
        })?;
        ensure(s.en & !PM1_SCI_EVENTS == 0, || {
            format!("PM1_EN {:#x}", s.en)
        })?;
        ensure(s.cnt & PM1_CNT_SLP_EN == 0, || {
            format!("PM1_CNT {:#x}", s.cnt)
        })?;
        ensure(s.tmr_epoch <= u64::MAX >> 23, || "PM timer epoch".into())?;
        self.sts = s.sts;
        self.en = s.en;
        self.cnt = s.cnt;
        self.gpe_sts = s.gpe_sts;
        self.gpe_en = s.gpe_en;
        self.tmr_epoch = s.tmr_epoch;
        self.time_base = i128::from(s.timer_ns) - self.clock.now().as_nanos() as i128;
        self.update_sci();
        Ok(())
    }
}
