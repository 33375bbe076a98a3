//! [`PciConfig`]: one function's configuration space with the rules hardware applies to
//! guest writes — a write mask per byte (read-only bits keep their value), a
//! write-1-to-clear mask per byte (status error bits), BARs whose low bits are
//! hard-wired so writing all ones reads back the size mask, a capability list, an
//! expansion-ROM BAR, and the INTx level with the command register's INTx Disable.
//!
//! Device-side helpers (`set_u8`/`set_u16`/`set_u32`, `u8`/`u16`/`u32`) ignore the
//! masks: they are how the device itself fills or reads its registers.

use std::sync::Arc;

use thiserror::Error;

use super::regs::*;
use crate::devices::IrqLine;

/// Conventional config space.
pub const CONFIG_SIZE: usize = 256;
/// PCI Express extended config space.
pub const PCIE_CONFIG_SIZE: usize = 4096;
/// Where the capability list starts (after the header).
const CAP_START: u16 = 0x40;
/// Where extended capabilities start.
const EXT_CAP_START: u16 = 0x100;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciConfigError {
    #[error("no room for a {len}-byte capability in config space")]
    NoRoom { len: usize },
    #[error("extended capabilities need a 4 KiB (PCIe) config space")]
    NotPcie,
    #[error("BAR {0} is not available (index > 5, taken, or BAR 5 for a 64-bit BAR; bridges have BAR 0-1)")]
    BadBar(u8),
}

/// What identifies a function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PciIds {
    pub vendor: u16,
    pub device: u16,
    /// Class code, subclass and programming interface: 0x010000 = SCSI storage.
    pub class: u32,
    pub revision: u8,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

/// The kind of a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
    /// The expansion ROM (memory, enabled by bit 0 of its register too).
    Rom,
}

impl BarKind {
    pub fn is_io(self) -> bool {
        self == BarKind::Io
    }
}

/// A BAR a device declares: kind and size (rounded up to a power of two, at least 4
/// bytes for I/O and 16 for memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarDef {
    pub kind: BarKind,
    pub size: u64,
    pub prefetchable: bool,
}

impl BarDef {
    pub fn io(size: u64) -> Self {
        Self {
            kind: BarKind::Io,
            size: size.max(4).next_power_of_two(),
            prefetchable: false,
        }
    }
    pub fn mem32(size: u64) -> Self {
        Self {
            kind: BarKind::Mem32,
            size: size.max(16).next_power_of_two(),
            prefetchable: false,
        }
    }
    pub fn mem64(size: u64) -> Self {
        Self {
            kind: BarKind::Mem64,
            size: size.max(16).next_power_of_two(),
            prefetchable: false,
        }
    }
    pub fn prefetchable(mut self) -> Self {
        self.prefetchable = self.kind != BarKind::Io;
        self
    }
    /// The low bits of the register: space, type, prefetchable.
    fn flags(&self) -> u32 {
        match self.kind {
            BarKind::Io => 1,
            BarKind::Mem32 => u32::from(self.prefetchable) << 3,
            BarKind::Mem64 => 0b100 | u32::from(self.prefetchable) << 3,
            BarKind::Rom => 0,
        }
    }
}

/// Where a BAR is now, as the guest programmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRegion {
    /// 0-5, or [`super::ROM_BAR`].
    pub bar: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    pub base: u64,
    pub size: u64,
    /// The function decodes it: the command register's I/O / memory bit is set (and
    /// the ROM enable bit for the ROM), and the base is not 0.
    pub enabled: bool,
}

/// One function's config space.
pub struct PciConfig {
    data: Vec<u8>,
    wmask: Vec<u8>,
    w1c: Vec<u8>,
    bars: [Option<BarDef>; 6],
    rom: Option<(u64, Vec<u8>)>,
    next_cap: u16,
    last_cap: Option<u16>,
    next_ext_cap: u16,
    last_ext_cap: Option<u16>,
    intx_level: bool,
    intx_driven: bool,
    intx_line: Option<Arc<dyn IrqLine>>,
}

impl std::fmt::Debug for PciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfig")
            .field("vendor", &format_args!("{:#06x}", self.u16(VENDOR_ID)))
            .field("device", &format_args!("{:#06x}", self.u16(DEVICE_ID)))
            .field("bars", &self.bars)
            .finish_non_exhaustive()
    }
}

impl PciConfig {
    /// A type-0 (endpoint) function with a 256-byte config space.
    pub fn new(ids: PciIds) -> Self {
        Self::with_size(ids, CONFIG_SIZE, 0)
    }

    /// A type-0 PCI Express function (4 KiB config space).
    pub fn new_pcie(ids: PciIds) -> Self {
        Self::with_size(ids, PCIE_CONFIG_SIZE, 0)
    }

    /// A type-1 (PCI-to-PCI bridge) header: bus numbers, 16-bit I/O window, memory
    /// window and 64-bit prefetchable window, bridge control all guest-programmable.
    pub fn new_bridge(ids: PciIds, pcie: bool) -> Self {
        let size = if pcie { PCIE_CONFIG_SIZE } else { CONFIG_SIZE };
        let mut c = Self::with_size(ids, size, 1);
        c.set_wmask(PRIMARY_BUS, &[0xff; 4]);
        c.set_wmask(IO_BASE, &[0xf0, 0xf0]);
        c.set_w1c(SECONDARY_STATUS, &0xf900u16.to_le_bytes());
        c.set_wmask(MEMORY_BASE, &[0xf0, 0xff, 0xf0, 0xff]);
        c.set_wmask(PREF_MEMORY_BASE, &[0xf0, 0xff, 0xf0, 0xff]);
        // 64-bit prefetchable window.
        c.set_u16(PREF_MEMORY_BASE, 1);
        c.set_u16(PREF_MEMORY_LIMIT, 1);
        c.set_wmask(PREF_BASE_UPPER, &[0xff; 8]);
        c.set_wmask(BRIDGE_CONTROL, &0x007fu16.to_le_bytes());
        c.set_wmask(INTERRUPT_LINE, &[0xff]);
        c
    }

    fn with_size(ids: PciIds, size: usize, header_type: u8) -> Self {
        let mut c = Self {
            data: vec![0; size],
            wmask: vec![0; size],
            w1c: vec![0; size],
            bars: [None; 6],
            rom: None,
            next_cap: CAP_START,
            last_cap: None,
            next_ext_cap: EXT_CAP_START,
            last_ext_cap: None,
            intx_level: false,
            intx_driven: false,
            intx_line: None,
        };
        c.set_u16(VENDOR_ID, ids.vendor);
        c.set_u16(DEVICE_ID, ids.device);
        c.set_u8(REVISION, ids.revision);
        c.set_u8(CLASS_PROG, ids.class as u8);
        c.set_u16(CLASS_PROG + 1, (ids.class >> 8) as u16);
        c.set_u8(HEADER_TYPE, header_type);
        let cmd = CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE;
        c.set_wmask(COMMAND, &cmd.to_le_bytes());
        c.set_w1c(STATUS, &STATUS_W1C.to_le_bytes());
        c.set_wmask(CACHE_LINE, &[0xff, 0xff]);
        if header_type == 0 {
            c.set_u16(SUBSYSTEM_VENDOR, ids.subsystem_vendor);
            c.set_u16(SUBSYSTEM_ID, ids.subsystem);
            c.set_wmask(INTERRUPT_LINE, &[0xff]);
        }
        c
    }

    /// Config space size: 256 or 4096.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Header type without the multi-function bit: 0 endpoint, 1 bridge.
    pub fn header_type(&self) -> u8 {
        self.u8(HEADER_TYPE) & 0x7f
    }

    /// Sets the multi-function bit (function 0 of a device with more functions).
    pub fn set_multifunction(&mut self, on: bool) {
        let h = self.header_type() | if on { 0x80 } else { 0 };
        self.set_u8(HEADER_TYPE, h);
    }

    /// The interrupt pin register: 0 none, 1 INTA# .. 4 INTD#.
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.set_u8(INTERRUPT_PIN, pin.min(4));
    }

    pub fn interrupt_pin(&self) -> u8 {
        self.u8(INTERRUPT_PIN)
    }

    pub fn command(&self) -> u16 {
        self.u16(COMMAND)
    }

    /// Declares BAR `index` (a 64-bit BAR takes `index` and `index + 1`). The register
    /// starts at 0 (unassigned); its low bits say the kind, and the write mask makes
    /// writing all ones read back `!(size - 1) | flags`.
    pub fn add_bar(&mut self, index: u8, def: BarDef) -> Result<(), PciConfigError> {
        let max = if self.header_type() == 1 { 2 } else { 6 };
        let i = usize::from(index);
        let wide = def.kind == BarKind::Mem64;
        if i >= max
            || def.kind == BarKind::Rom
            || (wide && i + 1 >= max)
            || self.bars[i].is_some()
            || (wide && self.bars[i + 1].is_some())
            || (i > 0 && matches!(self.bars[i - 1], Some(d) if d.kind == BarKind::Mem64))
        {
            return Err(PciConfigError::BadBar(index));
        }
        let off = BAR0 + 4 * u16::from(index);
        let mask = !(def.size - 1);
        self.set_u32(off, def.flags());
        self.set_wmask(off, &((mask as u32) & !0xf).to_le_bytes());
        if def.kind == BarKind::Io {
            self.set_wmask(off, &((mask as u32) & !0x3).to_le_bytes());
        }
        if wide {
            self.set_wmask(off + 4, &((mask >> 32) as u32).to_le_bytes());
        }
        self.bars[i] = Some(def);
        Ok(())
    }

    /// The BARs the device declared (index, definition).
    pub fn bar_defs(&self) -> impl Iterator<Item = (u8, BarDef)> + '_ {
        self.bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| (i as u8, b)))
    }

    /// Gives the function an expansion ROM holding `image` (its BAR size is the image
    /// rounded up to a power of two, at least 2 KiB). Reads past the image give 0xFF.
    pub fn set_rom(&mut self, image: Vec<u8>) {
        let size = (image.len() as u64).max(2048).next_power_of_two();
        let off = self.rom_offset();
        self.set_u32(off, 0);
        self.set_wmask(off, &((!(size - 1) as u32) | 1).to_le_bytes());
        self.rom = Some((size, image));
    }

    fn rom_offset(&self) -> u16 {
        if self.header_type() == 1 {
            BRIDGE_ROM_ADDRESS
        } else {
            ROM_ADDRESS
        }
    }

    /// Reads the ROM image at `offset` (0xFF past its end).
    pub fn rom_read(&self, offset: u64, data: &mut [u8]) {
        let img: &[u8] = self.rom.as_ref().map(|(_, v)| v.as_slice()).unwrap_or(&[]);
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| img.get(o))
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// Where the BARs (and the ROM) are now.
    pub fn bar_regions(&self) -> Vec<BarRegion> {
        let cmd = self.command();
        let mut out = Vec::new();
        for (i, def) in self.bar_defs() {
            let off = BAR0 + 4 * u16::from(i);
            let lo = u64::from(self.u32(off));
            let base = match def.kind {
                BarKind::Io => lo & !0x3,
                BarKind::Mem32 | BarKind::Rom => lo & !0xf,
                BarKind::Mem64 => (lo & !0xf) | u64::from(self.u32(off + 4)) << 32,
            };
            let on = if def.kind.is_io() {
                cmd & CMD_IO != 0
            } else {
                cmd & CMD_MEMORY != 0
            };
            out.push(BarRegion {
                bar: i,
                kind: def.kind,
                prefetchable: def.prefetchable,
                base,
                size: def.size,
                enabled: on && base != 0,
            });
        }
        if let Some((size, _)) = &self.rom {
            let v = self.u32(self.rom_offset());
            let base = u64::from(v & !0x7ff);
            out.push(BarRegion {
                bar: super::ROM_BAR,
                kind: BarKind::Rom,
                prefetchable: false,
                base,
                size: *size,
                enabled: v & 1 != 0 && cmd & CMD_MEMORY != 0 && base != 0,
            });
        }
        out
    }

    /// Appends a capability: `id`, the next pointer, then `body` (so the capability is
    /// `2 + body.len()` bytes, 4-byte aligned). Returns its offset; the body is
    /// read-only to the guest until the device opens bits with [`Self::set_wmask`].
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> Result<u16, PciConfigError> {
        let len = 2 + body.len();
        let off = self.next_cap;
        if usize::from(off) + len > CONFIG_SIZE {
            return Err(PciConfigError::NoRoom { len });
        }
        self.set_u8(off, id);
        self.set_u8(off + 1, 0);
        self.set_bytes(off + 2, body);
        match self.last_cap {
            None => self.set_u8(CAP_PTR, off as u8),
            Some(prev) => self.set_u8(prev + 1, off as u8),
        }
        let st = self.u16(STATUS) | STATUS_CAP_LIST;
        self.set_u16(STATUS, st);
        self.last_cap = Some(off);
        self.next_cap = (off + len as u16 + 3) & !3;
        Ok(off)
    }

    /// Appends a PCIe extended capability (`id`, `version`, then `body`) at 0x100 and
    /// up. Returns its offset.
    pub fn add_ext_capability(
        &mut self,
        id: u16,
        version: u8,
        body: &[u8],
    ) -> Result<u16, PciConfigError> {
        if self.data.len() != PCIE_CONFIG_SIZE {
            return Err(PciConfigError::NotPcie);
        }
        let len = 4 + body.len();
        let off = self.next_ext_cap;
        if usize::from(off) + len > PCIE_CONFIG_SIZE {
            return Err(PciConfigError::NoRoom { len });
        }
        self.set_u32(off, u32::from(id) | u32::from(version & 0xf) << 16);
        self.set_bytes(off + 4, body);
        if let Some(prev) = self.last_ext_cap {
            let h = self.u32(prev) & 0x000f_ffff | u32::from(off) << 20;
            self.set_u32(prev, h);
        }
        self.last_ext_cap = Some(off);
        self.next_ext_cap = (off + len as u16 + 3) & !3;
        Ok(off)
    }

    /// The offset of the first capability with `id`, walking the list as a guest does.
    pub fn find_capability(&self, id: u8) -> Option<u16> {
        let mut off = u16::from(self.u8(CAP_PTR));
        for _ in 0..48 {
            if off < CAP_START {
                return None;
            }
            if self.u8(off) == id {
                return Some(off);
            }
            off = u16::from(self.u8(off + 1) & !3);
        }
        None
    }

    /// Makes the bits set in `mask` guest-writable (per byte, from `offset`).
    pub fn set_wmask(&mut self, offset: u16, mask: &[u8]) {
        put(&mut self.wmask, offset, mask);
    }

    /// Makes the bits set in `mask` write-1-to-clear (per byte, from `offset`).
    pub fn set_w1c(&mut self, offset: u16, mask: &[u8]) {
        put(&mut self.w1c, offset, mask);
    }

    /// Device-side write of raw bytes (no masks). Out-of-range bytes are dropped.
    pub fn set_bytes(&mut self, offset: u16, bytes: &[u8]) {
        put(&mut self.data, offset, bytes);
    }
    pub fn set_u8(&mut self, offset: u16, v: u8) {
        self.set_bytes(offset, &[v]);
    }
    pub fn set_u16(&mut self, offset: u16, v: u16) {
        self.set_bytes(offset, &v.to_le_bytes());
    }
    pub fn set_u32(&mut self, offset: u16, v: u32) {
        self.set_bytes(offset, &v.to_le_bytes());
    }

    /// Device-side reads (0xFF past the end).
    pub fn u8(&self, offset: u16) -> u8 {
        self.data.get(usize::from(offset)).copied().unwrap_or(0xff)
    }
    pub fn u16(&self, offset: u16) -> u16 {
        let mut b = [0; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }
    pub fn u32(&self, offset: u16) -> u32 {
        let mut b = [0; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// A guest read: bytes past the end read 0xFF.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self
                .data
                .get(usize::from(offset) + i)
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// A guest write: read-only bits keep their value, write-1-to-clear bits clear
    /// where the guest wrote 1; bytes past the end are dropped. A write to the command
    /// register re-evaluates the INTx output (INTx Disable).
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let o = usize::from(offset) + i;
            let (Some(cur), Some(&wm), Some(&wc)) =
                (self.data.get(o), self.wmask.get(o), self.w1c.get(o))
            else {
                continue;
            };
            let new = (cur & !wm) | (v & wm);
            self.data[o] = new & !(v & wc);
        }
        let end = usize::from(offset) + data.len();
        if usize::from(offset) <= usize::from(COMMAND) + 1 && end > usize::from(COMMAND) {
            self.update_intx();
        }
    }

    /// Sets the line INTx drives (the root calls it through
    /// [`super::PciDevice::set_intx_line`]).
    pub fn set_intx_line(&mut self, line: Arc<dyn IrqLine>) {
        self.intx_driven = false;
        self.intx_line = Some(line);
        self.update_intx();
    }

    /// The device asserts (`true`) or deasserts its INTx pin. Status bit 3 follows the
    /// level; the line is driven only while INTx Disable is clear.
    pub fn set_intx(&mut self, level: bool) {
        self.intx_level = level;
        self.update_intx();
    }

    /// The INTx level the device asserts (before INTx Disable).
    pub fn intx(&self) -> bool {
        self.intx_level
    }

    fn update_intx(&mut self) {
        let mut st = self.u16(STATUS) & !STATUS_INTERRUPT;
        if self.intx_level {
            st |= STATUS_INTERRUPT;
        }
        self.set_u16(STATUS, st);
        let out = self.intx_level && self.command() & CMD_INTX_DISABLE == 0;
        if out != self.intx_driven {
            if let Some(l) = &self.intx_line {
                l.set_level(out);
            }
            self.intx_driven = out;
        }
    }
}

fn put(buf: &mut [u8], offset: u16, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(d) = buf.get_mut(usize::from(offset) + i) {
            *d = b;
        }
    }
}

#[path = "config_state.rs"]
mod state;
pub use state::PciConfigState;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
