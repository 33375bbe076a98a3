//! The UART's snapshot state: every register, the receive FIFO and the pending THRE
//! interrupt. The interrupt level is not saved: restore recomputes it from the
//! registers and drives the line (a high line stays high across the snapshot).

use serde::{Deserialize, Serialize};

use super::*;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

#[derive(Serialize, Deserialize)]
struct SerialState {
    divisor: u16,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    lsr_errors: u8,
    msr: u8,
    scr: u8,
    rx: Vec<u8>,
    last_rx: u8,
    thr_pending: bool,
}

impl Stateful for Serial {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        encode(&SerialState {
            divisor: self.divisor,
            ier: self.ier,
            fcr: self.fcr,
            lcr: self.lcr,
            mcr: self.mcr,
            lsr_errors: self.lsr_errors,
            msr: self.msr,
            scr: self.scr,
            rx: self.rx.iter().copied().collect(),
            last_rx: self.last_rx,
            thr_pending: self.thr_pending,
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: SerialState = decode(bytes)?;
        ensure(s.ier & !0x0F == 0, || format!("IER {:#x}", s.ier))?;
        ensure(s.mcr & !0x1F == 0, || format!("MCR {:#x}", s.mcr))?;
        let fcr_ok = if s.fcr & FCR_ENABLE == 0 {
            s.fcr == 0
        } else {
            s.fcr & (FCR_CLEAR_RX | FCR_CLEAR_TX) == 0
        };
        ensure(fcr_ok, || format!("FCR {:#x}", s.fcr))?;
        ensure(s.lsr_errors & !LSR_ERRORS == 0, || {
            format!("LSR errors {:#x}", s.lsr_errors)
        })?;
        ensure(s.msr & 0xF0 == modem_inputs_for(s.mcr), || {
            format!("MSR {:#x} for MCR {:#x}", s.msr, s.mcr)
        })?;
        let cap = if s.fcr & FCR_ENABLE != 0 { FIFO_LEN } else { 1 };
        ensure(s.rx.len() <= cap, || {
            format!("{} bytes in a {cap}-byte FIFO", s.rx.len())
        })?;
        self.fcr = s.fcr;
        self.mcr = s.mcr;
        self.divisor = s.divisor;
        self.ier = s.ier;
        self.lcr = s.lcr;
        self.lsr_errors = s.lsr_errors;
        self.msr = s.msr;
        self.scr = s.scr;
        self.rx = s.rx.into_iter().collect();
        self.last_rx = s.last_rx;
        self.thr_pending = s.thr_pending;
        self.update_irq();
        if self.input_space() > 0 {
            if let Some(f) = self.rx_space_notify.as_mut() {
                f();
            }
        }
        Ok(())
    }
}
