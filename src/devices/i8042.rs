//! The 8042 PS/2 controller at ports 0x60 (data) and 0x64 (status / command), with a
//! PS/2 keyboard on its first port (IRQ 1) and a PS/2 mouse on the second (IRQ 12).
//!
//! Enough for SeaBIOS, Linux's i8042/atkbd/psmouse drivers and the classic reset:
//! - status (read 0x64): OBF(0), SYS(2), A2 = last write was a command(3),
//!   keyboard not inhibited(4), OBF holds mouse data(5). IBF is never set: commands
//!   complete before the write returns.
//! - controller commands (write 0x64): 0x20-0x3F read RAM (0x20 = command byte),
//!   0x60-0x7F write RAM, 0xA4 password installed? (0xF1: no), 0xA7/0xA8 disable/enable
//!   aux, 0xA9 test aux (0x00), 0xAA self-test (0x55, sets SYS), 0xAB test kbd (0x00),
//!   0xAD/0xAE disable/enable kbd, 0xD0/0xD1 read/write output port (bit 0 clear =
//!   reset), 0xD2/0xD3 write kbd/aux output buffer, 0xD4 write to aux, 0xDD/0xDF A20
//!   off/on, 0xE0 read test inputs (0x00), 0xF0-0xFF pulse output lines (an even
//!   command pulses reset: 0xFE is the well-known one). Unknown commands are ignored.
//! - command byte: kbd IRQ enable(0), aux IRQ enable(1), SYS(2), kbd disabled(4),
//!   aux disabled(5), translate(6). A disabled port's bytes wait in its device queue.
//! - the IRQ lines are levels: high while the output buffer holds a byte from that
//!   port and the command byte enables its interrupt.
//!
//! Bytes a device has not delivered yet stay queued when the guest sends it another
//! command (only reset flushes them), as QEMU does, so a guest that does not wait for
//! each ACK still gets them all.
//!
//! Not modelled: the set 2 → set 1 translation of keystrokes (bytes given to
//! [`I8042::push_key`] are delivered as they are; the identify and scancode-set
//! replies are translated, as they are the ones drivers check), the A20 gate (KVM
//! guests always see A20 enabled), typematic repeat, parity and timeout errors.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{BusDevice, IrqLine, VmEvent};

const STS_OBF: u8 = 0x01;
const STS_SYS: u8 = 0x04;
const STS_CMD: u8 = 0x08;
const STS_UNLOCKED: u8 = 0x10;
const STS_AUX_OBF: u8 = 0x20;

const CB_KBD_INT: u8 = 0x01;
const CB_AUX_INT: u8 = 0x02;
const CB_SYS: u8 = 0x04;
const CB_KBD_DISABLED: u8 = 0x10;
const CB_AUX_DISABLED: u8 = 0x20;
const CB_TRANSLATE: u8 = 0x40;

const OUT_RESET: u8 = 0x01;
const OUT_A20: u8 = 0x02;
const OUT_KBD_OBF: u8 = 0x10;
const OUT_AUX_OBF: u8 = 0x20;

const ACK: u8 = 0xFA;
const RESEND: u8 = 0xFE;
const BAT_OK: u8 = 0xAA;

/// Keystroke bytes a keyboard buffers before dropping more (its FIFO is 16 bytes).
const KBD_QUEUE_MAX: usize = 16;

/// A PS/2 keyboard: answers commands, queues scan codes while scanning is on.
#[derive(Debug)]
struct Keyboard {
    q: VecDeque<u8>,
    /// A command waiting for its argument byte.
    arg_for: Option<u8>,
    scanning: bool,
    set: u8,
    leds: u8,
    typematic: u8,
    last: u8,
}

impl Keyboard {
    fn new() -> Self {
        Keyboard {
            q: VecDeque::new(),
            arg_for: None,
            scanning: true,
            set: 2,
            leds: 0,
            typematic: 0x2B,
            last: 0,
        }
    }

    fn defaults(&mut self) {
        self.set = 2;
        self.typematic = 0x2B;
    }

    fn send(&mut self, b: u8) {
        self.q.push_back(b);
        self.last = b;
    }

    fn write(&mut self, v: u8, translate: bool) {
        if let Some(cmd) = self.arg_for.take() {
            match cmd {
                0xED => self.leds = v & 7,
                0xF3 => self.typematic = v & 0x7F,
                _ => match v {
                    0 => {
                        self.send(ACK);
                        // The controller translates the set number like any byte.
                        let n = match (translate, self.set) {
                            (false, s) => s,
                            (true, 1) => 0x43,
                            (true, 2) => 0x41,
                            (true, _) => 0x3F,
                        };
                        self.send(n);
                        return;
                    }
                    1..=3 => self.set = v,
                    _ => {
                        self.send(RESEND);
                        return;
                    }
                },
            }
            self.send(ACK);
            return;
        }
        match v {
            0xED | 0xF0 | 0xF3 => {
                self.arg_for = Some(v);
                self.send(ACK);
            }
            0xEE => self.send(0xEE),
            0xF2 => {
                self.send(ACK);
                self.send(0xAB);
                self.send(if translate { 0x41 } else { 0x83 });
            }
            0xF4 => {
                self.scanning = true;
                self.send(ACK);
            }
            0xF5 | 0xF6 => {
                self.defaults();
                self.scanning = v == 0xF6;
                self.send(ACK);
            }
            0xF7..=0xFD => self.send(ACK),
            0xFE => self.send(self.last),
            0xFF => {
                // Reset drops whatever the keyboard had not sent yet.
                self.q.clear();
                self.defaults();
                self.leds = 0;
                self.scanning = true;
                self.send(ACK);
                self.send(BAT_OK);
            }
            _ => self.send(RESEND),
        }
    }
}

/// A plain PS/2 mouse (device ID 0): answers commands, never moves (yet).
#[derive(Debug)]
struct Mouse {
    q: VecDeque<u8>,
    arg_for: Option<u8>,
    reporting: bool,
    remote: bool,
    wrap: bool,
    scaling_2to1: bool,
    resolution: u8,
    rate: u8,
    last: u8,
}

impl Mouse {
    fn new() -> Self {
        Mouse {
            q: VecDeque::new(),
            arg_for: None,
            reporting: false,
            remote: false,
            wrap: false,
            scaling_2to1: false,
            resolution: 2,
            rate: 100,
            last: 0,
        }
    }

    fn defaults(&mut self) {
        self.reporting = false;
        self.scaling_2to1 = false;
        self.resolution = 2;
        self.rate = 100;
    }

    fn send(&mut self, b: u8) {
        self.q.push_back(b);
        self.last = b;
    }

    fn write(&mut self, v: u8) {
        if let Some(cmd) = self.arg_for.take() {
            match cmd {
                0xE8 => self.resolution = v & 3,
                _ => self.rate = v,
            }
            self.send(ACK);
            return;
        }
        if self.wrap && v != 0xEC && v != 0xFF {
            self.send(v);
            return;
        }
        match v {
            0xE6 | 0xE7 => {
                self.scaling_2to1 = v == 0xE7;
                self.send(ACK);
            }
            0xE8 | 0xF3 => {
                self.arg_for = Some(v);
                self.send(ACK);
            }
            0xE9 => {
                self.send(ACK);
                let status = (u8::from(self.remote) << 6)
                    | (u8::from(self.reporting) << 5)
                    | (u8::from(self.scaling_2to1) << 4);
                self.send(status);
                self.send(self.resolution);
                self.send(self.rate);
            }
            0xEA | 0xF0 => {
                self.remote = v == 0xF0;
                self.send(ACK);
            }
            0xEB => {
                self.send(ACK);
                // No buttons, no motion: just the always-one bit 3.
                self.send(0x08);
                self.send(0);
                self.send(0);
            }
            0xEC | 0xEE => {
                self.wrap = v == 0xEE;
                self.send(ACK);
            }
            0xF2 => {
                self.send(ACK);
                self.send(0x00);
            }
            0xF4 | 0xF5 => {
                self.reporting = v == 0xF4;
                self.send(ACK);
            }
            0xF6 => {
                self.defaults();
                self.send(ACK);
            }
            0xFE => self.send(self.last),
            0xFF => {
                self.q.clear();
                self.defaults();
                self.remote = false;
                self.wrap = false;
                self.send(ACK);
                self.send(BAT_OK);
                self.send(0x00);
            }
            _ => self.send(RESEND),
        }
    }
}

/// The 8042 controller with its keyboard and mouse.
pub struct I8042 {
    kbd_irq: Arc<dyn IrqLine>,
    aux_irq: Arc<dyn IrqLine>,
    /// Controller RAM; byte 0 is the command byte.
    ram: [u8; 32],
    sys: bool,
    last_write_cmd: bool,
    outport: u8,
    /// A controller command waiting for its data byte on port 0x60.
    arg_for: Option<u8>,
    /// The output buffer: a byte and whether it came from the aux port.
    obf: Option<(u8, bool)>,
    last_out: u8,
    /// Controller replies, ahead of the devices' bytes.
    replies: VecDeque<(u8, bool)>,
    kbd: Keyboard,
    aux: Mouse,
    irq1: bool,
    irq12: bool,
}

impl I8042 {
    /// A controller as firmware finds it at power-on: keyboard enabled with its
    /// interrupt, translation on.
    pub fn new(kbd_irq: Arc<dyn IrqLine>, aux_irq: Arc<dyn IrqLine>) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CB_KBD_INT | CB_AUX_INT | CB_TRANSLATE;
        I8042 {
            kbd_irq,
            aux_irq,
            ram,
            sys: false,
            last_write_cmd: false,
            outport: OUT_RESET | OUT_A20 | 0xCC,
            arg_for: None,
            obf: None,
            last_out: 0,
            replies: VecDeque::new(),
            kbd: Keyboard::new(),
            aux: Mouse::new(),
            irq1: false,
            irq12: false,
        }
    }

    /// A byte from the keyboard (a scan code in the set the guest selected), dropped
    /// when the keyboard is not scanning or its buffer is full.
    pub fn push_key(&mut self, scancode: u8) {
        if self.kbd.scanning && self.kbd.q.len() < KBD_QUEUE_MAX {
            self.kbd.q.push_back(scancode);
            self.refill();
        }
    }

    fn status(&self) -> u8 {
        let mut s = STS_UNLOCKED;
        if let Some((_, aux)) = self.obf {
            s |= STS_OBF;
            if aux {
                s |= STS_AUX_OBF;
            }
        }
        if self.sys {
            s |= STS_SYS;
        }
        if self.last_write_cmd {
            s |= STS_CMD;
        }
        s
    }

    fn output_port(&self) -> u8 {
        let mut v = self.outport & !(OUT_KBD_OBF | OUT_AUX_OBF);
        match self.obf {
            Some((_, false)) => v |= OUT_KBD_OBF,
            Some((_, true)) => v |= OUT_AUX_OBF,
            None => {}
        }
        v
    }

    fn reply(&mut self, b: u8) {
        self.replies.push_back((b, false));
    }

    /// Moves the next byte into an empty output buffer and updates the IRQ lines.
    fn refill(&mut self) {
        if self.obf.is_none() {
            let cb = self.ram[0];
            self.obf = self.replies.pop_front();
            if self.obf.is_none() && cb & CB_KBD_DISABLED == 0 {
                self.obf = self.kbd.q.pop_front().map(|b| (b, false));
            }
            if self.obf.is_none() && cb & CB_AUX_DISABLED == 0 {
                self.obf = self.aux.q.pop_front().map(|b| (b, true));
            }
        }
        let cb = self.ram[0];
        let irq1 = matches!(self.obf, Some((_, false))) && cb & CB_KBD_INT != 0;
        let irq12 = matches!(self.obf, Some((_, true))) && cb & CB_AUX_INT != 0;
        if irq1 != self.irq1 {
            self.irq1 = irq1;
            self.kbd_irq.set_level(irq1);
        }
        if irq12 != self.irq12 {
            self.irq12 = irq12;
            self.aux_irq.set_level(irq12);
        }
    }

    fn read_data(&mut self) -> u8 {
        if let Some((b, _)) = self.obf.take() {
            self.last_out = b;
        }
        self.last_out
    }

    fn write_command(&mut self, c: u8) -> Option<VmEvent> {
        self.arg_for = None;
        match c {
            0x20..=0x3F => self.reply(self.ram[usize::from(c & 0x1F)]),
            0x60..=0x7F | 0xD1..=0xD4 => self.arg_for = Some(c),
            0xA4 => self.reply(0xF1),
            0xA7 => self.ram[0] |= CB_AUX_DISABLED,
            0xA8 => self.ram[0] &= !CB_AUX_DISABLED,
            0xA9 | 0xAB | 0xE0 => self.reply(0x00),
            0xAA => {
                self.sys = true;
                self.reply(0x55);
            }
            0xAD => self.ram[0] |= CB_KBD_DISABLED,
            0xAE => self.ram[0] &= !CB_KBD_DISABLED,
            0xD0 => self.reply(self.output_port()),
            0xDD => self.outport &= !OUT_A20,
            0xDF => self.outport |= OUT_A20,
            0xF0..=0xFF if c & 1 == 0 => return Some(VmEvent::Reset),
            _ => {}
        }
        None
    }

    fn write_data(&mut self, v: u8) -> Option<VmEvent> {
        match self.arg_for.take() {
            Some(c @ 0x60..=0x7F) => {
                let i = usize::from(c & 0x1F);
                self.ram[i] = v;
                if i == 0 {
                    self.sys = v & CB_SYS != 0;
                }
            }
            Some(0xD1) => {
                self.outport = v;
                if v & OUT_RESET == 0 {
                    return Some(VmEvent::Reset);
                }
            }
            Some(0xD2) => self.replies.push_back((v, false)),
            Some(0xD3) => self.replies.push_back((v, true)),
            Some(0xD4) => {
                // Talking to a port enables its interface, as the 8042 firmware does.
                self.ram[0] &= !CB_AUX_DISABLED;
                self.aux.write(v);
            }
            _ => {
                self.ram[0] &= !CB_KBD_DISABLED;
                let translate = self.ram[0] & CB_TRANSLATE != 0;
                self.kbd.write(v, translate);
            }
        }
        None
    }
}

impl BusDevice for I8042 {
    /// Region 0 is the data port (0x60), region 1 the status/command port (0x64).
    fn read(&mut self, region: usize, _offset: u64, data: &mut [u8]) {
        let cmd_port = region == 1;
        let v = if cmd_port {
            self.status()
        } else {
            self.read_data()
        };
        data.fill(0xFF);
        if let Some(d) = data.first_mut() {
            *d = v;
        }
        self.refill();
    }

    fn write(&mut self, region: usize, _offset: u64, data: &[u8]) -> Option<VmEvent> {
        let v = *data.first()?;
        let cmd_port = region == 1;
        self.last_write_cmd = cmd_port;
        let ev = if cmd_port {
            self.write_command(v)
        } else {
            self.write_data(v)
        };
        self.refill();
        ev
    }
}

mod state;

#[cfg(test)]
mod tests;
