//! A 16550A UART, as found at 0x3F8 (COM1, IRQ 4) and 0x2F8 (COM2, IRQ 3) on PCs.
//!
//! Register map (offsets from the base; DLAB is LCR bit 7):
//!
//! | off | read                  | write                 |
//! |-----|-----------------------|-----------------------|
//! | 0   | RBR (DLAB=0) / DLL    | THR (DLAB=0) / DLL    |
//! | 1   | IER (DLAB=0) / DLM    | IER (DLAB=0) / DLM    |
//! | 2   | IIR                   | FCR                   |
//! | 3   | LCR                   | LCR                   |
//! | 4   | MCR                   | MCR                   |
//! | 5   | LSR                   | (factory test, ignored) |
//! | 6   | MSR                   | (ignored)             |
//! | 7   | SCR                   | SCR                   |
//!
//! What the emulation models, and where it departs from the silicon:
//! - The line is infinitely fast: a byte written to THR is on the host writer before the
//!   write returns, so THRE and TEMT are set again at once. Writing THR still drops the
//!   THRE interrupt and raises it again, so an edge-triggered PIC sees one edge per byte
//!   (what QEMU does too, and what the Linux 8250 driver waits for).
//! - The 16-byte receive FIFO, its trigger levels (1/4/8/14) and overrun are real. The
//!   character-timeout interrupt (IIR 0x0C) is reported whenever the FIFO holds data below
//!   the trigger level: the host pushes its input in bursts and the line is idle between
//!   them, so the four character times of silence have always elapsed when the guest
//!   looks. The transmit FIFO is always empty, because transmission is instant.
//! - Host input is refused (`input_space` is 0) while MCR loopback is on, because the
//!   serial input pin is disconnected in that mode.
//! - Modem inputs outside loopback read as a connected peer: CTS, DSR and DCD set, RI
//!   clear (MSR 0xB0), as QEMU reports.
//! - OUT2 gates the interrupt output, as the PC's IRQ buffer does. In loopback the OUT2
//!   pin is forced inactive (the datasheet forces all modem outputs inactive), so the
//!   interrupt never reaches the PIC while loopback is on; IIR still identifies it.
//! - The divisor latch is kept but has no effect; it resets to 12 (9600 baud).
//! - Reading RBR with nothing received returns the last byte received.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use super::{BusDevice, IrqLine, VmEvent};

/// Depth of the 16550A receive FIFO.
pub const FIFO_LEN: usize = 16;

// Register offsets.
const DATA: u64 = 0;
const IER: u64 = 1;
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

// IER bits.
const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_RLS: u8 = 0x04;
const IER_MS: u8 = 0x08;

// IIR values.
const IIR_NONE: u8 = 0x01;
const IIR_MS: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_RLS: u8 = 0x06;
const IIR_TIMEOUT: u8 = 0x0C;
const IIR_FIFO_BITS: u8 = 0xC0;

// FCR bits.
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_CLEAR_TX: u8 = 0x04;

const LCR_DLAB: u8 = 0x80;

// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

// LSR bits.
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_PE: u8 = 0x04;
const LSR_FE: u8 = 0x08;
const LSR_BI: u8 = 0x10;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

// MSR bits.
const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
/// Modem inputs of a connected peer.
const MSR_CONNECTED: u8 = MSR_DCD | MSR_DSR | MSR_CTS;

/// Divisor for 9600 baud with the PC's 1.8432 MHz clock.
const DEFAULT_DIVISOR: u16 = 12;

/// A 16550A UART. Output goes to a host writer, input is pushed with
/// [`Serial::enqueue_input`], the interrupt output drives an [`IrqLine`].
pub struct Serial {
    out: Box<dyn Write + Send>,
    irq: Arc<dyn IrqLine>,
    rx_space_notify: Option<Box<dyn FnMut() + Send>>,
    divisor: u16,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    /// LSR error bits (OE/PE/FE/BI), cleared by reading LSR.
    lsr_errors: u8,
    /// MSR as last computed: inputs in the high nibble, deltas in the low one.
    msr: u8,
    scr: u8,
    rx: VecDeque<u8>,
    last_rx: u8,
    /// The THRE interrupt is pending (set when THR empties or on enabling ETBEI while
    /// empty; cleared by an IIR read that reports it or by a THR write).
    thr_pending: bool,
    irq_level: bool,
    tx_errors: u64,
}

impl Serial {
    /// A UART in its reset state writing to `out` and interrupting on `irq`.
    pub fn new(out: Box<dyn Write + Send>, irq: Arc<dyn IrqLine>) -> Self {
        Serial {
            out,
            irq,
            rx_space_notify: None,
            divisor: DEFAULT_DIVISOR,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr: MSR_CONNECTED,
            scr: 0,
            rx: VecDeque::with_capacity(FIFO_LEN),
            last_rx: 0,
            thr_pending: false,
            irq_level: false,
            tx_errors: 0,
        }
    }

    /// Called (from the vCPU thread holding the device lock) each time the guest frees
    /// room in a receive FIFO that was full, so the event loop can push more input.
    pub fn set_rx_space_notify(&mut self, f: Box<dyn FnMut() + Send>) {
        self.rx_space_notify = Some(f);
    }

    /// How many bytes [`Serial::enqueue_input`] would accept now.
    pub fn input_space(&self) -> usize {
        if self.loopback() {
            return 0;
        }
        self.rx_capacity().saturating_sub(self.rx.len())
    }

    /// Host input arriving on the serial line. Returns how many bytes were taken; the
    /// caller keeps the rest until [`Serial::input_space`] grows.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.input_space());
        for &b in &bytes[..n] {
            self.receive(b);
        }
        if n > 0 {
            self.update_irq();
        }
        n
    }

    /// Bytes the host writer refused (write errors); they are dropped.
    pub fn tx_errors(&self) -> u64 {
        self.tx_errors
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_LEN
        } else {
            1
        }
    }

    fn rx_trigger(&self) -> usize {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// A character finished arriving in the receive shift register.
    fn receive(&mut self, b: u8) {
        if self.rx.len() < self.rx_capacity() {
            self.rx.push_back(b);
        } else {
            self.lsr_errors |= LSR_OE;
            // Without FIFOs the new character overwrites the holding register; with
            // them it is lost in the shift register and the FIFO is left alone.
            if !self.fifo_enabled() {
                self.rx.clear();
                self.rx.push_back(b);
            }
        }
    }

    fn transmit(&mut self, b: u8) {
        if self.loopback() {
            self.receive(b);
        } else if self
            .out
            .write_all(&[b])
            .and_then(|_| self.out.flush())
            .is_err()
        {
            self.tx_errors += 1;
        }
    }

    /// The high MSR nibble as the modem input pins (or the loopback) present it.
    fn modem_inputs(&self) -> u8 {
        modem_inputs_for(self.mcr)
    }

    /// Recomputes the MSR inputs, latching delta bits for the lines that changed.
    fn update_msr(&mut self) {
        let old = self.msr & 0xF0;
        let new = self.modem_inputs();
        let changed = old ^ new;
        let mut deltas = self.msr & 0x0F;
        if changed & MSR_CTS != 0 {
            deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            deltas |= MSR_DDSR;
        }
        if old & MSR_RI != 0 && new & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            deltas |= MSR_DDCD;
        }
        self.msr = new | deltas;
    }

    fn lsr(&self) -> u8 {
        let mut v = LSR_THRE | LSR_TEMT | self.lsr_errors;
        if !self.rx.is_empty() {
            v |= LSR_DR;
        }
        v
    }

    /// The highest-priority pending interrupt, as IIR bits 3:0.
    fn pending(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            return IIR_RLS;
        }
        if self.ier & IER_RDA != 0 && !self.rx.is_empty() {
            if !self.fifo_enabled() || self.rx.len() >= self.rx_trigger() {
                return IIR_RDA;
            }
            return IIR_TIMEOUT;
        }
        if self.ier & IER_THRE != 0 && self.thr_pending {
            return IIR_THRE;
        }
        if self.ier & IER_MS != 0 && self.msr & 0x0F != 0 {
            return IIR_MS;
        }
        IIR_NONE
    }

    fn update_irq(&mut self) {
        let gate = self.mcr & MCR_OUT2 != 0 && !self.loopback();
        let level = gate && self.pending() != IIR_NONE;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn read_rbr(&mut self) -> u8 {
        let was_full = self.rx.len() >= self.rx_capacity();
        if let Some(b) = self.rx.pop_front() {
            self.last_rx = b;
        }
        if was_full && !self.loopback() {
            if let Some(f) = self.rx_space_notify.as_mut() {
                f();
            }
        }
        self.last_rx
    }

    fn write_ier(&mut self, v: u8) {
        let v = v & 0x0F;
        let changed = self.ier ^ v;
        self.ier = v;
        // Enabling ETBEI while THR is empty raises THRE, even if an IIR read had
        // cleared it before (Windows and the Linux THRE tests rely on this).
        if changed & IER_THRE != 0 {
            self.thr_pending = v & IER_THRE != 0;
        }
    }

    fn write_fcr(&mut self, v: u8) {
        let space_before = self.input_space();
        self.program_fcr(v);
        // Enabling or clearing the FIFO makes room: tell the host side, which may be
        // holding input back (a driver initialising the port after input arrived).
        if self.input_space() > space_before {
            if let Some(f) = self.rx_space_notify.as_mut() {
                f();
            }
        }
    }

    fn program_fcr(&mut self, v: u8) {
        if (self.fcr ^ v) & FCR_ENABLE != 0 {
            // Switching the FIFOs on or off empties them.
            self.rx.clear();
        }
        if v & FCR_ENABLE == 0 {
            // The other bits are only programmed together with FCR0.
            self.fcr = 0;
            return;
        }
        if v & FCR_CLEAR_RX != 0 {
            self.rx.clear();
        }
        // FCR_CLEAR_TX: the transmit FIFO is always empty. Both reset bits self-clear.
        self.fcr = v & !(FCR_CLEAR_RX | FCR_CLEAR_TX);
    }

    fn read_reg(&mut self, off: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match off {
            DATA if dlab => self.divisor as u8,
            DATA => self.read_rbr(),
            IER if dlab => (self.divisor >> 8) as u8,
            IER => self.ier,
            IIR_FCR => {
                let id = self.pending();
                if id == IIR_THRE {
                    self.thr_pending = false;
                }
                let fifo = if self.fifo_enabled() {
                    IIR_FIFO_BITS
                } else {
                    0
                };
                id | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let v = self.lsr();
                self.lsr_errors = 0;
                v
            }
            MSR => {
                let v = self.msr;
                self.msr &= 0xF0;
                v
            }
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, off: u64, v: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match off {
            DATA if dlab => self.divisor = (self.divisor & 0xFF00) | u16::from(v),
            DATA => {
                self.thr_pending = false;
                self.update_irq();
                self.transmit(v);
                self.thr_pending = true;
            }
            IER if dlab => self.divisor = (self.divisor & 0x00FF) | (u16::from(v) << 8),
            IER => self.write_ier(v),
            IIR_FCR => self.write_fcr(v),
            LCR => self.lcr = v,
            MCR => {
                self.mcr = v & 0x1F;
                self.update_msr();
            }
            SCR => self.scr = v,
            _ => {} // LSR and MSR writes are factory-test only.
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, _region: usize, offset: u64, data: &mut [u8]) {
        // A wider access to this 8-bit device is split into byte accesses, as the ISA
        // bus does.
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_reg(offset + i as u64);
        }
        self.update_irq();
    }

    fn write(&mut self, _region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        for (i, &d) in data.iter().enumerate() {
            self.write_reg(offset + i as u64, d);
            self.update_irq();
        }
        None
    }
}

/// The high MSR nibble for modem control `mcr`: a connected peer, or in loopback the
/// modem outputs wired back to the inputs.
fn modem_inputs_for(mcr: u8) -> u8 {
    if mcr & MCR_LOOP == 0 {
        return MSR_CONNECTED;
    }
    let mut v = 0;
    if mcr & MCR_RTS != 0 {
        v |= MSR_CTS;
    }
    if mcr & MCR_DTR != 0 {
        v |= MSR_DSR;
    }
    if mcr & MCR_OUT1 != 0 {
        v |= MSR_RI;
    }
    if mcr & MCR_OUT2 != 0 {
        v |= MSR_DCD;
    }
    v
}

mod state;

#[cfg(test)]
mod tests;
