//! Unit tests for the parent module, kept apart to keep the device file short.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records every level change driven on the line.
#[derive(Default)]
struct Line(Mutex<Vec<bool>>);
impl IrqLine for Line {
    fn set_level(&self, high: bool) {
        self.0.lock().unwrap().push(high);
    }
}
impl Line {
    fn level(&self) -> bool {
        self.0.lock().unwrap().last().copied().unwrap_or(false)
    }
    fn take(&self) -> Vec<bool> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn uart() -> (Serial, Sink, Arc<Line>) {
    let sink = Sink::default();
    let line = Arc::new(Line::default());
    (
        Serial::new(Box::new(sink.clone()), line.clone()),
        sink,
        line,
    )
}

fn rd(s: &mut Serial, off: u64) -> u8 {
    let mut b = [0u8];
    s.read(0, off, &mut b);
    b[0]
}

fn wr(s: &mut Serial, off: u64, v: u8) {
    assert_eq!(s.write(0, off, &[v]), None);
}

#[test]
fn reset_state() {
    let (mut s, _, line) = uart();
    assert_eq!(rd(&mut s, IER), 0);
    assert_eq!(rd(&mut s, IIR_FCR), 0x01);
    assert_eq!(rd(&mut s, LCR), 0);
    assert_eq!(rd(&mut s, MCR), 0);
    assert_eq!(rd(&mut s, LSR), 0x60);
    assert_eq!(rd(&mut s, MSR), 0xB0);
    assert_eq!(rd(&mut s, SCR), 0);
    assert!(line.take().is_empty());
}

#[test]
fn transmit_and_scratch() {
    let (mut s, sink, _) = uart();
    for &b in b"hi\n" {
        wr(&mut s, DATA, b);
    }
    assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
    assert_eq!(rd(&mut s, LSR) & 0x60, 0x60);
    wr(&mut s, SCR, 0x5a);
    assert_eq!(rd(&mut s, SCR), 0x5a);
}

#[test]
fn divisor_latch() {
    let (mut s, sink, _) = uart();
    wr(&mut s, LCR, 0x83);
    assert_eq!(rd(&mut s, DATA), 12);
    assert_eq!(rd(&mut s, IER), 0);
    wr(&mut s, DATA, 0x01);
    wr(&mut s, IER, 0x02);
    assert_eq!(rd(&mut s, DATA), 0x01);
    assert_eq!(rd(&mut s, IER), 0x02);
    wr(&mut s, LCR, 0x03);
    assert_eq!(s.divisor, 0x0201);
    assert_eq!(rd(&mut s, IER), 0, "IER untouched by DLM writes");
    assert!(sink.0.lock().unwrap().is_empty(), "DLL writes are not data");
    assert_eq!(rd(&mut s, LCR), 0x03);
}

#[test]
fn receive_without_fifo_and_overrun() {
    let (mut s, _, _) = uart();
    assert_eq!(s.input_space(), 1);
    assert_eq!(s.enqueue_input(b"ab"), 1);
    assert_eq!(s.input_space(), 0);
    assert_eq!(rd(&mut s, LSR), 0x61);
    assert_eq!(rd(&mut s, DATA), b'a');
    assert_eq!(rd(&mut s, LSR), 0x60);
    assert_eq!(rd(&mut s, DATA), b'a', "empty RBR keeps the last byte");
    // Overrun can only come from loopback: the host side never overfills.
    wr(&mut s, MCR, MCR_LOOP);
    wr(&mut s, DATA, b'x');
    wr(&mut s, DATA, b'y');
    assert_eq!(rd(&mut s, LSR), 0x63);
    assert_eq!(rd(&mut s, LSR), 0x61, "OE clears on read");
    assert_eq!(
        rd(&mut s, DATA),
        b'y',
        "the holding register was overwritten"
    );
}

#[test]
fn fifo_trigger_timeout_and_reset() {
    let (mut s, _, line) = uart();
    wr(&mut s, MCR, MCR_OUT2);
    wr(&mut s, IER, IER_RDA);
    wr(&mut s, IIR_FCR, 0x81); // enable, trigger 8
    assert_eq!(rd(&mut s, IIR_FCR), 0xC1);
    assert_eq!(s.input_space(), 16);
    assert_eq!(s.enqueue_input(b"1234"), 4);
    assert_eq!(
        rd(&mut s, IIR_FCR),
        0xCC,
        "below trigger: character timeout"
    );
    assert!(line.level());
    assert_eq!(s.enqueue_input(b"5678"), 4);
    assert_eq!(rd(&mut s, IIR_FCR), 0xC4, "at trigger: data available");
    assert_eq!(s.enqueue_input(&[0u8; 20]), 8);
    assert_eq!(s.input_space(), 0);
    assert_eq!(rd(&mut s, DATA), b'1');
    assert_eq!(s.input_space(), 1);
    wr(&mut s, IIR_FCR, 0x83); // clear RX
    assert_eq!(rd(&mut s, LSR) & LSR_DR, 0);
    assert_eq!(rd(&mut s, IIR_FCR), 0xC1);
    assert!(!line.level());
    // Trigger levels 1/4/14.
    for (fcr, trig) in [(0x01u8, 1usize), (0x41, 4), (0xC1, 14)] {
        wr(&mut s, IIR_FCR, fcr | FCR_CLEAR_RX);
        s.enqueue_input(&vec![0u8; trig - 1]);
        let below = if trig == 1 { 0xC1 } else { 0xCC };
        assert_eq!(rd(&mut s, IIR_FCR), below, "trigger {trig}");
        s.enqueue_input(&[0]);
        assert_eq!(rd(&mut s, IIR_FCR), 0xC4, "trigger {trig}");
    }
    // Turning the FIFO off empties it and drops the IIR FIFO bits.
    wr(&mut s, IIR_FCR, 0x00);
    assert_eq!(rd(&mut s, IIR_FCR), 0x01);
    assert_eq!(s.input_space(), 1);
}

#[test]
fn fifo_overrun_keeps_fifo() {
    let (mut s, _, _) = uart();
    wr(&mut s, IIR_FCR, 0x01);
    wr(&mut s, MCR, MCR_LOOP);
    for b in 0..17u8 {
        wr(&mut s, DATA, b);
    }
    assert_eq!(rd(&mut s, LSR), 0x63);
    for b in 0..16u8 {
        assert_eq!(rd(&mut s, DATA), b);
    }
    assert_eq!(rd(&mut s, LSR), 0x60);
}

#[test]
fn thre_interrupt_semantics() {
    let (mut s, sink, line) = uart();
    wr(&mut s, MCR, MCR_OUT2);
    assert!(line.take().is_empty());
    wr(&mut s, IER, IER_THRE);
    assert_eq!(
        line.take(),
        vec![true],
        "enabling ETBEI with THR empty interrupts"
    );
    assert_eq!(rd(&mut s, IIR_FCR), 0x02);
    assert_eq!(line.take(), vec![false], "reading IIR cleared THRE");
    assert_eq!(rd(&mut s, IIR_FCR), 0x01);
    // Rewriting the same IER does not re-raise it; toggling does.
    wr(&mut s, IER, IER_THRE);
    assert!(line.take().is_empty());
    wr(&mut s, IER, 0);
    wr(&mut s, IER, IER_THRE);
    assert_eq!(line.take(), vec![true]);
    // Writing THR drops the line and raises it again once the byte is out.
    wr(&mut s, DATA, b'z');
    assert_eq!(line.take(), vec![false, true]);
    assert_eq!(&*sink.0.lock().unwrap(), b"z");
    // Disabling ETBEI clears it.
    wr(&mut s, IER, 0);
    assert_eq!(line.take(), vec![false]);
    assert_eq!(rd(&mut s, IIR_FCR), 0x01);
}

#[test]
fn priorities() {
    let (mut s, _, _) = uart();
    wr(&mut s, IER, 0x0F);
    assert_eq!(rd(&mut s, IIR_FCR), 0x02);
    wr(&mut s, IER, 0x0F); // THRE stays cleared
                           // Modem status: enter loopback with RTS set -> CTS changes.
    wr(&mut s, MCR, MCR_LOOP | MCR_RTS);
    assert_eq!(rd(&mut s, IIR_FCR), 0x00);
    // Data beats modem status, line status beats data.
    wr(&mut s, DATA, 1);
    // THR write made THRE pending again, but data outranks it.
    assert_eq!(rd(&mut s, IIR_FCR), 0x04);
    wr(&mut s, DATA, 2); // overrun
    assert_eq!(rd(&mut s, IIR_FCR), 0x06);
    rd(&mut s, LSR);
    assert_eq!(rd(&mut s, IIR_FCR), 0x04);
    rd(&mut s, DATA);
    assert_eq!(rd(&mut s, IIR_FCR), 0x02);
    assert_eq!(rd(&mut s, IIR_FCR), 0x00);
    rd(&mut s, MSR);
    assert_eq!(rd(&mut s, IIR_FCR), 0x01);
}

#[test]
fn loopback_modem_lines() {
    let (mut s, sink, _) = uart();
    // What Linux's autoconfig checks: LOOP | RTS | OUT2 reads back as CTS | DCD.
    wr(&mut s, MCR, MCR_LOOP | 0x0A);
    assert_eq!(rd(&mut s, MSR) & 0xF0, 0x90);
    wr(&mut s, MCR, MCR_LOOP | MCR_DTR | MCR_OUT1);
    let msr = rd(&mut s, MSR);
    assert_eq!(msr & 0xF0, MSR_DSR | MSR_RI);
    assert_eq!(msr & 0x0F, MSR_DCTS | MSR_DDSR | MSR_DDCD);
    wr(&mut s, MCR, MCR_LOOP);
    assert_eq!(rd(&mut s, MSR), MSR_DDSR | MSR_TERI);
    assert_eq!(s.input_space(), 0, "input is disconnected in loopback");
    assert_eq!(s.enqueue_input(b"q"), 0);
    wr(&mut s, DATA, b'L');
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "loopback output stays inside"
    );
    assert_eq!(rd(&mut s, DATA), b'L');
    wr(&mut s, MCR, 0);
    assert_eq!(rd(&mut s, MSR), 0xB0 | MSR_DCTS | MSR_DDSR | MSR_DDCD);
    assert_eq!(rd(&mut s, MCR), 0);
}

#[test]
fn out2_gates_irq() {
    let (mut s, _, line) = uart();
    wr(&mut s, IER, IER_RDA);
    s.enqueue_input(b"a");
    assert!(line.take().is_empty(), "no OUT2, no interrupt");
    assert_eq!(rd(&mut s, IIR_FCR), 0x04, "but IIR identifies it");
    wr(&mut s, MCR, MCR_OUT2);
    assert_eq!(line.take(), vec![true]);
    wr(&mut s, MCR, MCR_OUT2 | MCR_LOOP);
    assert_eq!(line.take(), vec![false], "loopback forces OUT2 inactive");
    wr(&mut s, MCR, MCR_OUT2);
    assert_eq!(line.take(), vec![true]);
    rd(&mut s, DATA);
    assert_eq!(line.take(), vec![false]);
}

#[test]
fn rx_space_notify_when_full_fifo_drains() {
    let (mut s, _, _) = uart();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    s.set_rx_space_notify(Box::new(move || {
        h.fetch_add(1, Ordering::Relaxed);
    }));
    wr(&mut s, IIR_FCR, 0x01);
    assert_eq!(
        hits.swap(0, Ordering::Relaxed),
        1,
        "enabling the FIFO makes room"
    );
    s.enqueue_input(&[7u8; 16]);
    rd(&mut s, DATA);
    rd(&mut s, DATA);
    assert_eq!(hits.load(Ordering::Relaxed), 1);
}

#[test]
fn wide_access_is_split() {
    let (mut s, _, _) = uart();
    let mut b = [0u8; 2];
    s.read(0, LSR, &mut b);
    assert_eq!(b, [0x60, 0xB0]);
    let mut b = [0u8; 2];
    s.read(0, 7, &mut b);
    assert_eq!(b, [0, 0xFF]);
}
