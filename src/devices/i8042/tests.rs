//! Unit tests for the parent module, kept apart to keep the device file short.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
struct Level(AtomicBool);
impl IrqLine for Level {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }
}
impl Level {
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

fn ctl() -> (I8042, Arc<Level>, Arc<Level>) {
    let (k, a) = (Arc::new(Level::default()), Arc::new(Level::default()));
    (I8042::new(k.clone(), a.clone()), k, a)
}

fn status(c: &mut I8042) -> u8 {
    let mut b = [0u8];
    c.read(1, 0, &mut b);
    b[0]
}

fn data(c: &mut I8042) -> u8 {
    let mut b = [0u8];
    c.read(0, 0, &mut b);
    b[0]
}

fn cmd(c: &mut I8042, v: u8) -> Option<VmEvent> {
    c.write(1, 0, &[v])
}

fn put(c: &mut I8042, v: u8) -> Option<VmEvent> {
    c.write(0, 0, &[v])
}

/// Everything waiting in the output buffer, in order.
fn drain(c: &mut I8042) -> Vec<u8> {
    let mut v = Vec::new();
    while status(c) & STS_OBF != 0 {
        v.push(data(c));
    }
    v
}

#[test]
fn controller_commands() {
    let (mut c, _, _) = ctl();
    assert_eq!(status(&mut c), STS_UNLOCKED);
    cmd(&mut c, 0xAA);
    assert_eq!(status(&mut c), STS_UNLOCKED | STS_SYS | STS_CMD | STS_OBF);
    assert_eq!(drain(&mut c), [0x55]);
    cmd(&mut c, 0xAB);
    cmd(&mut c, 0xA9);
    cmd(&mut c, 0xA4);
    assert_eq!(drain(&mut c), [0x00, 0x00, 0xF1]);
    cmd(&mut c, 0x20);
    assert_eq!(drain(&mut c), [0x43]);
    cmd(&mut c, 0x60);
    put(&mut c, 0x65);
    assert_eq!(status(&mut c) & (STS_CMD | STS_SYS), STS_SYS);
    cmd(&mut c, 0x20);
    assert_eq!(drain(&mut c), [0x65]);
    cmd(&mut c, 0xA7);
    cmd(&mut c, 0xAD);
    cmd(&mut c, 0x20);
    assert_eq!(drain(&mut c), [0x75]);
    cmd(&mut c, 0xA8);
    cmd(&mut c, 0xAE);
    cmd(&mut c, 0x20);
    assert_eq!(drain(&mut c), [0x45]);
    // Other RAM bytes.
    cmd(&mut c, 0x65);
    put(&mut c, 0x99);
    cmd(&mut c, 0x25);
    assert_eq!(drain(&mut c), [0x99]);
    // Output port, with the OBF bit for what it had in the buffer.
    cmd(&mut c, 0xD0);
    assert_eq!(drain(&mut c), [0xCF], "nothing was waiting");
    cmd(&mut c, 0xDD);
    cmd(&mut c, 0xD0);
    assert_eq!(drain(&mut c)[0] & OUT_A20, 0);
}

#[test]
fn resets() {
    let (mut c, _, _) = ctl();
    assert_eq!(cmd(&mut c, 0xFE), Some(VmEvent::Reset));
    assert_eq!(cmd(&mut c, 0xF0), Some(VmEvent::Reset));
    assert_eq!(cmd(&mut c, 0xFF), None);
    assert_eq!(cmd(&mut c, 0xD1), None);
    assert_eq!(put(&mut c, 0xDF), None, "A20 on, reset line high");
    cmd(&mut c, 0xD1);
    assert_eq!(put(&mut c, 0xDE), Some(VmEvent::Reset));
}

#[test]
fn keyboard_commands() {
    let (mut c, irq1, irq12) = ctl();
    put(&mut c, 0xFF);
    assert!(irq1.get() && !irq12.get());
    assert_eq!(drain(&mut c), [0xFA, 0xAA]);
    assert!(!irq1.get());
    put(&mut c, 0xF2);
    assert_eq!(drain(&mut c), [0xFA, 0xAB, 0x41], "translated identify");
    cmd(&mut c, 0x60);
    put(&mut c, 0x01);
    put(&mut c, 0xF2);
    assert_eq!(drain(&mut c), [0xFA, 0xAB, 0x83]);
    put(&mut c, 0xED);
    put(&mut c, 0x07);
    assert_eq!(drain(&mut c), [0xFA, 0xFA]);
    assert_eq!(c.kbd.leds, 7);
    put(&mut c, 0xF0);
    put(&mut c, 0x00);
    assert_eq!(drain(&mut c), [0xFA, 0xFA, 0x02]);
    put(&mut c, 0xF0);
    put(&mut c, 0x01);
    put(&mut c, 0xF0);
    put(&mut c, 0x00);
    assert_eq!(drain(&mut c), [0xFA, 0xFA, 0xFA, 0xFA, 0x01]);
    put(&mut c, 0xF0);
    put(&mut c, 0x07);
    assert_eq!(drain(&mut c), [0xFA, 0xFE]);
    put(&mut c, 0xEE);
    put(&mut c, 0xF3);
    put(&mut c, 0x20);
    put(&mut c, 0xF4);
    put(&mut c, 0x12);
    assert_eq!(drain(&mut c), [0xEE, 0xFA, 0xFA, 0xFA, 0xFE]);
    put(&mut c, 0xFE);
    assert_eq!(drain(&mut c), [0xFE]);
}

#[test]
fn keys_irq_and_disable() {
    let (mut c, irq1, _) = ctl();
    c.push_key(0x1C);
    assert!(irq1.get());
    assert_eq!(status(&mut c) & (STS_OBF | STS_AUX_OBF), STS_OBF);
    assert_eq!(data(&mut c), 0x1C);
    assert!(!irq1.get());
    assert_eq!(data(&mut c), 0x1C, "an empty buffer reads its last byte");
    // Keyboard disabled: the key waits in the keyboard.
    cmd(&mut c, 0xAD);
    c.push_key(0xF0);
    c.push_key(0x1C);
    assert_eq!(status(&mut c) & STS_OBF, 0);
    cmd(&mut c, 0xAE);
    assert_eq!(drain(&mut c), [0xF0, 0x1C]);
    // Interrupt disabled in the command byte: OBF but no IRQ.
    cmd(&mut c, 0x60);
    put(&mut c, 0x00);
    c.push_key(0x1C);
    assert!(!irq1.get());
    assert_eq!(drain(&mut c), [0x1C]);
    // Not scanning: keys are dropped.
    put(&mut c, 0xF5);
    assert_eq!(drain(&mut c), [0xFA]);
    c.push_key(0x1C);
    assert_eq!(status(&mut c) & STS_OBF, 0);
}

#[test]
fn aux_port() {
    let (mut c, irq1, irq12) = ctl();
    // Linux's aux loopback test: 0xD3 then read back with AUXB.
    cmd(&mut c, 0xD3);
    put(&mut c, 0x5A);
    assert!(irq12.get() && !irq1.get());
    assert_eq!(status(&mut c) & STS_AUX_OBF, STS_AUX_OBF);
    assert_eq!(data(&mut c), 0x5A);
    assert!(!irq12.get());
    cmd(&mut c, 0xD2);
    put(&mut c, 0x33);
    assert!(irq1.get());
    assert_eq!(drain(&mut c), [0x33]);
    let to_aux = |c: &mut I8042, v: u8| {
        cmd(c, 0xD4);
        put(c, v);
    };
    to_aux(&mut c, 0xFF);
    assert_eq!(drain(&mut c), [0xFA, 0xAA, 0x00]);
    to_aux(&mut c, 0xF2);
    assert_eq!(drain(&mut c), [0xFA, 0x00]);
    to_aux(&mut c, 0xF3);
    to_aux(&mut c, 200);
    to_aux(&mut c, 0xE8);
    to_aux(&mut c, 3);
    to_aux(&mut c, 0xF4);
    to_aux(&mut c, 0xE9);
    assert_eq!(
        drain(&mut c),
        [0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0x20, 3, 200]
    );
    to_aux(&mut c, 0xEE);
    to_aux(&mut c, 0x42);
    to_aux(&mut c, 0xEC);
    assert_eq!(drain(&mut c), [0xFA, 0x42, 0xFA]);
    // Aux disabled: its bytes wait.
    cmd(&mut c, 0xA7);
    c.aux.send(0x08);
    c.refill();
    assert_eq!(status(&mut c) & STS_OBF, 0);
    cmd(&mut c, 0xA8);
    assert_eq!(drain(&mut c), [0x08]);
}
