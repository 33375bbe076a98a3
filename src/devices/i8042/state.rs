//! The controller's snapshot state: its RAM (command byte first), output port and
//! buffer, the replies and each device's queue and settings. The IRQ levels are
//! recomputed from the output buffer and the command byte and driven on restore.

use serde::{Deserialize, Serialize};

use super::*;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

/// The most bytes a restored queue may hold. A guest can queue more (each command
/// answers), but no driver leaves that many unread; a bound keeps a state file from
/// making us allocate without limit.
const QUEUE_LIMIT: usize = 4096;

#[derive(Serialize, Deserialize)]
struct KbdState {
    q: Vec<u8>,
    arg_for: Option<u8>,
    scanning: bool,
    set: u8,
    leds: u8,
    typematic: u8,
    last: u8,
}

#[derive(Serialize, Deserialize)]
struct MouseState {
    q: Vec<u8>,
    arg_for: Option<u8>,
    reporting: bool,
    remote: bool,
    wrap: bool,
    scaling_2to1: bool,
    resolution: u8,
    rate: u8,
    last: u8,
}

#[derive(Serialize, Deserialize)]
struct I8042State {
    ram: Vec<u8>,
    sys: bool,
    last_write_cmd: bool,
    outport: u8,
    arg_for: Option<u8>,
    obf: Option<(u8, bool)>,
    last_out: u8,
    replies: Vec<(u8, bool)>,
    kbd: KbdState,
    aux: MouseState,
}

impl Keyboard {
    fn state(&self) -> KbdState {
        KbdState {
            q: self.q.iter().copied().collect(),
            arg_for: self.arg_for,
            scanning: self.scanning,
            set: self.set,
            leds: self.leds,
            typematic: self.typematic,
            last: self.last,
        }
    }

    fn from_state(s: KbdState) -> Result<Self, StateError> {
        ensure(s.q.len() <= QUEUE_LIMIT, || {
            "keyboard queue too long".into()
        })?;
        ensure((1..=3).contains(&s.set), || {
            format!("scancode set {}", s.set)
        })?;
        ensure(s.leds & !7 == 0 && s.typematic & 0x80 == 0, || {
            "keyboard LEDs or typematic rate".into()
        })?;
        ensure(matches!(s.arg_for, None | Some(0xED | 0xF0 | 0xF3)), || {
            "keyboard command argument".into()
        })?;
        Ok(Keyboard {
            q: s.q.into(),
            arg_for: s.arg_for,
            scanning: s.scanning,
            set: s.set,
            leds: s.leds,
            typematic: s.typematic,
            last: s.last,
        })
    }
}

impl Mouse {
    fn state(&self) -> MouseState {
        MouseState {
            q: self.q.iter().copied().collect(),
            arg_for: self.arg_for,
            reporting: self.reporting,
            remote: self.remote,
            wrap: self.wrap,
            scaling_2to1: self.scaling_2to1,
            resolution: self.resolution,
            rate: self.rate,
            last: self.last,
        }
    }

    fn from_state(s: MouseState) -> Result<Self, StateError> {
        ensure(s.q.len() <= QUEUE_LIMIT, || "mouse queue too long".into())?;
        ensure(s.resolution <= 3, || {
            format!("mouse resolution {}", s.resolution)
        })?;
        ensure(matches!(s.arg_for, None | Some(0xE8 | 0xF3)), || {
            "mouse command argument".into()
        })?;
        Ok(Mouse {
            q: s.q.into(),
            arg_for: s.arg_for,
            reporting: s.reporting,
            remote: s.remote,
            wrap: s.wrap,
            scaling_2to1: s.scaling_2to1,
            resolution: s.resolution,
            rate: s.rate,
            last: s.last,
        })
    }
}

impl Stateful for I8042 {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        encode(&I8042State {
            ram: self.ram.to_vec(),
            sys: self.sys,
            last_write_cmd: self.last_write_cmd,
            outport: self.outport,
            arg_for: self.arg_for,
            obf: self.obf,
            last_out: self.last_out,
            replies: self.replies.iter().copied().collect(),
            kbd: self.kbd.state(),
            aux: self.aux.state(),
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: I8042State = decode(bytes)?;
        let ram: [u8; 32] = s
            .ram
            .as_slice()
            .try_into()
            .map_err(|_| StateError::Invalid(format!("{} bytes of 8042 RAM", s.ram.len())))?;
        ensure(s.replies.len() <= QUEUE_LIMIT, || {
            "8042 replies too long".into()
        })?;
        ensure(
            matches!(s.arg_for, None | Some(0x60..=0x7F | 0xD1..=0xD4)),
            || "8042 command argument".into(),
        )?;
        let kbd = Keyboard::from_state(s.kbd)?;
        let aux = Mouse::from_state(s.aux)?;
        self.ram = ram;
        self.sys = s.sys;
        self.last_write_cmd = s.last_write_cmd;
        self.outport = s.outport;
        self.arg_for = s.arg_for;
        self.obf = s.obf;
        self.last_out = s.last_out;
        self.replies = s.replies.into();
        self.kbd = kbd;
        self.aux = aux;
        self.refill();
        Ok(())
    }
}
