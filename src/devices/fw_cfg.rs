//! QEMU's firmware configuration device (fw_cfg), as SeaBIOS, OVMF and Linux's
//! `qemu_fw_cfg` driver find it on x86 at I/O ports 0x510-0x51B.
//!
//! Items are byte strings named by a 16-bit selector. Selectors below 0x20 are the
//! fixed items (signature, ID, RAM size, CPU counts, kernel images, ...), 0x19 is the
//! file directory, and every named file gets a selector from 0x20 up. Bit 15 of a
//! selector picks the architecture-local set (x86: 0x8000 ACPI tables, 0x8002 IRQ0
//! override, ...); bit 14 (the write channel) is ignored when selecting.
//!
//! Register map (offsets from the I/O base, normally 0x510):
//!
//! | off | access      | register                                                    |
//! |-----|-------------|-------------------------------------------------------------|
//! | 0   | 16-bit write| selector: select an item, rewind to its byte 0               |
//! | 0/1 | 8-bit read  | data: the next byte of the selected item (0 past its end)    |
//! | 1   | 8-bit write | data write: ignored (no item is writable)                    |
//! | 4   | 32-bit write| DMA address, high half, big-endian                           |
//! | 8   | 32-bit write| DMA address, low half, big-endian: starts the transfer       |
//! | 4   | 64-bit write| DMA address, big-endian: starts the transfer                 |
//! | 4-11| reads       | the DMA signature "QEMU CFG" (a big-endian 64-bit value)     |
//!
//! A DMA transfer reads a 16-byte `FWCfgDmaAccess` at the written guest address:
//! `control` (BE32: bit 0 error, 1 read, 2 skip, 3 select, 4 write; bits 31-16 the
//! selector for select), `length` (BE32) and `address` (BE64). The device does the
//! transfer against the selected item, then writes `control` back: 0 on success, the
//! error bit otherwise. Errors: the structure or the buffer outside guest RAM, an
//! address that wraps, a write (no item is writable), an unknown selector (reads still
//! fill the buffer with zeros, as QEMU does). Reading past an item's end gives zeros.
//! Every guest access goes through vm-memory's checked accessors: nothing a guest
//! writes can make the VMM panic.

use std::collections::BTreeMap;

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{BusDevice, VmEvent};
use crate::arch::x86_64::e820::E820Entry;

mod linux;
mod spec;
pub use linux::{LinuxImage, LINUX_CMDLINE_ADDR, LINUX_PROT_ADDR, LINUX_REAL_ADDR};
pub use spec::{firmware_e820, items_for};

pub const FW_CFG_SIGNATURE: u16 = 0x00;
pub const FW_CFG_ID: u16 = 0x01;
pub const FW_CFG_UUID: u16 = 0x02;
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
pub const FW_CFG_NOGRAPHIC: u16 = 0x04;
pub const FW_CFG_NB_CPUS: u16 = 0x05;
pub const FW_CFG_KERNEL_ADDR: u16 = 0x07;
pub const FW_CFG_KERNEL_SIZE: u16 = 0x08;
pub const FW_CFG_INITRD_ADDR: u16 = 0x0a;
pub const FW_CFG_INITRD_SIZE: u16 = 0x0b;
pub const FW_CFG_NUMA: u16 = 0x0d;
pub const FW_CFG_BOOT_MENU: u16 = 0x0e;
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
pub const FW_CFG_KERNEL_ENTRY: u16 = 0x10;
pub const FW_CFG_KERNEL_DATA: u16 = 0x11;
pub const FW_CFG_INITRD_DATA: u16 = 0x12;
pub const FW_CFG_CMDLINE_ADDR: u16 = 0x13;
pub const FW_CFG_CMDLINE_SIZE: u16 = 0x14;
pub const FW_CFG_CMDLINE_DATA: u16 = 0x15;
pub const FW_CFG_SETUP_ADDR: u16 = 0x16;
pub const FW_CFG_SETUP_SIZE: u16 = 0x17;
pub const FW_CFG_SETUP_DATA: u16 = 0x18;
pub const FW_CFG_FILE_DIR: u16 = 0x19;
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
pub const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;
pub const FW_CFG_ARCH_LOCAL: u16 = 0x8000;
/// x86 architecture-local items.
pub const FW_CFG_ACPI_TABLES: u16 = FW_CFG_ARCH_LOCAL;
pub const FW_CFG_IRQ0_OVERRIDE: u16 = FW_CFG_ARCH_LOCAL + 2;

/// FW_CFG_ID feature bits: the traditional I/O interface and DMA.
pub const FW_CFG_VERSION: u32 = 0x01;
pub const FW_CFG_VERSION_DMA: u32 = 0x02;

pub const DMA_CTL_ERROR: u32 = 0x01;
pub const DMA_CTL_READ: u32 = 0x02;
pub const DMA_CTL_SKIP: u32 = 0x04;
pub const DMA_CTL_SELECT: u32 = 0x08;
pub const DMA_CTL_WRITE: u32 = 0x10;

/// What reads of the DMA register return, byte by byte.
pub const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";
/// The usual I/O base on x86.
pub const FW_CFG_IO_BASE: u64 = 0x510;
/// A file name is at most this many bytes (the directory holds 56 with the NUL).
pub const FILE_NAME_MAX: usize = 55;
/// One directory entry: size (BE32), select (BE16), reserved (2), name (56).
pub const DIR_ENTRY_LEN: usize = 64;
/// Zero fills of DMA reads are written in chunks of this many bytes.
const ZERO_CHUNK: usize = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("cannot read {path}: {reason}")]
    Read {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("fw_cfg file name \"{0}\" must be 1-{FILE_NAME_MAX} bytes")]
    BadName(String),
    #[error("fw_cfg file \"{0}\" is added twice")]
    Duplicate(String),
    #[error("fw_cfg item {name} is {len} bytes; items are limited to 4 GiB - 1")]
    TooBig { name: String, len: usize },
    #[error("too many fw_cfg files")]
    TooManyFiles,
    #[error("the kernel image: {0}")]
    Kernel(String),
}

/// The items of a fw_cfg device: fixed items by selector, and named files.
#[derive(Debug, Clone, Default)]
pub struct FwCfgItems {
    entries: BTreeMap<u16, Vec<u8>>,
    /// Files by name; selectors follow the name order, as in QEMU.
    files: BTreeMap<String, Vec<u8>>,
}

/// What the standard items say about the machine.
#[derive(Debug, Clone, Default)]
pub struct MachineInfo {
    /// All guest RAM in bytes (FW_CFG_RAM_SIZE).
    pub ram_size: u64,
    /// CPUs at boot (FW_CFG_NB_CPUS).
    pub cpus: u16,
    /// The highest APIC ID + 1 (FW_CFG_MAX_CPUS, as QEMU's x86 boards fill it).
    pub apic_id_limit: u16,
    /// The guest memory map for firmware (`etc/e820`).
    pub e820: Vec<E820Entry>,
    /// FW_CFG_NOGRAPHIC.
    pub nographic: bool,
    /// FW_CFG_BOOT_MENU.
    pub boot_menu: bool,
    /// `bootorder`: one OpenFirmware device path per line (may be empty).
    pub bootorder: Vec<String>,
}

impl FwCfgItems {
    /// The items every fw_cfg device has: signature, ID (I/O + DMA) and the directory.
    pub fn new() -> Self {
        let mut s = Self::default();
        s.entries.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        s.add_u32(FW_CFG_ID, FW_CFG_VERSION | FW_CFG_VERSION_DMA);
        s.rebuild_dir();
        s
    }

    /// The items QEMU's x86 boards provide, from `info`.
    pub fn standard(info: &MachineInfo) -> Self {
        let mut s = Self::new();
        s.add_item(FW_CFG_UUID, vec![0; 16]);
        s.add_u64(FW_CFG_RAM_SIZE, info.ram_size);
        s.add_u16(FW_CFG_NOGRAPHIC, info.nographic as u16);
        s.add_u16(FW_CFG_NB_CPUS, info.cpus);
        s.add_u16(FW_CFG_MAX_CPUS, info.apic_id_limit);
        s.add_u16(FW_CFG_BOOT_MENU, info.boot_menu as u16);
        // Zero NUMA nodes: the node count, one node per APIC ID, no memory ranges.
        s.add_item(FW_CFG_NUMA, vec![0; 8 * (1 + info.apic_id_limit as usize)]);
        // No -acpitable tables: a zero 16-bit count.
        s.add_item(FW_CFG_ACPI_TABLES, vec![0; 2]);
        s.add_u32(FW_CFG_IRQ0_OVERRIDE, 1);
        let mut e820 = Vec::with_capacity(info.e820.len() * 20);
        for e in &info.e820 {
            e820.extend_from_slice(&e.addr.to_le_bytes());
            e820.extend_from_slice(&e.size.to_le_bytes());
            e820.extend_from_slice(&(e.kind as u32).to_le_bytes());
        }
        let order = bootorder_bytes(&info.bootorder);
        // The names below are valid and distinct, so these cannot fail.
        let _ = s.add_file("etc/e820", e820);
        let _ = s.add_file("bootorder", order);
        // -1: never reboot after a failed boot (QEMU's default reboot-timeout).
        let _ = s.add_file("etc/boot-fail-wait", (-1i32).to_le_bytes().to_vec());
        s
    }

    /// Sets a fixed item (replacing it).
    pub fn add_item(&mut self, key: u16, data: Vec<u8>) {
        self.entries.insert(key & !FW_CFG_WRITE_CHANNEL, data);
    }

    pub fn add_u16(&mut self, key: u16, v: u16) {
        self.add_item(key, v.to_le_bytes().to_vec());
    }

    pub fn add_u32(&mut self, key: u16, v: u32) {
        self.add_item(key, v.to_le_bytes().to_vec());
    }

    pub fn add_u64(&mut self, key: u16, v: u64) {
        self.add_item(key, v.to_le_bytes().to_vec());
    }

    /// Adds a named file; the directory and every file's selector follow the names'
    /// byte order.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        if name.is_empty() || name.len() > FILE_NAME_MAX || name.contains('\0') {
            return Err(FwCfgError::BadName(name.to_string()));
        }
        if self.files.contains_key(name) {
            return Err(FwCfgError::Duplicate(name.to_string()));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooBig {
                name: name.to_string(),
                len: data.len(),
            });
        }
        if self.files.len() + 1 >= (FW_CFG_WRITE_CHANNEL - FW_CFG_FILE_FIRST) as usize {
            return Err(FwCfgError::TooManyFiles);
        }
        self.files.insert(name.to_string(), data);
        self.rebuild_dir();
        Ok(())
    }

    /// Adds an option ROM as `genroms/<name>` (SeaBIOS runs those) and puts it first
    /// in `bootorder` (`/rom@genroms/<name>`), as QEMU does for its linuxboot/pvh ROMs.
    pub fn add_boot_rom(&mut self, name: &str, rom: Vec<u8>) -> Result<(), FwCfgError> {
        let file = format!("genroms/{name}");
        self.add_file(&file, rom)?;
        let mut paths = vec![format!("/rom@{file}")];
        let old = self.files.get("bootorder").cloned().unwrap_or_default();
        let old = old.strip_suffix(&[0]).unwrap_or(&old);
        paths.extend(
            String::from_utf8_lossy(old)
                .split('\n')
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
        self.set_file("bootorder", bootorder_bytes(&paths))
    }

    /// Replaces a named file's contents (adds it when it does not exist).
    pub fn set_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        match self.files.get_mut(name) {
            Some(d) if u32::try_from(data.len()).is_ok() => {
                *d = data;
                self.rebuild_dir();
                Ok(())
            }
            _ => self.add_file(name, data),
        }
    }

    /// The files in directory order: (name, selector, contents).
    pub fn files(&self) -> impl Iterator<Item = (&str, u16, &[u8])> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, (n, d))| (n.as_str(), FW_CFG_FILE_FIRST + i as u16, d.as_slice()))
    }

    /// The item a selector names (write-channel bit ignored), if any.
    pub fn get(&self, key: u16) -> Option<&[u8]> {
        let key = key & !FW_CFG_WRITE_CHANNEL;
        if key & FW_CFG_ARCH_LOCAL == 0 && key >= FW_CFG_FILE_FIRST {
            let i = (key - FW_CFG_FILE_FIRST) as usize;
            return self.files.values().nth(i).map(Vec::as_slice);
        }
        self.entries.get(&key).map(Vec::as_slice)
    }

    fn rebuild_dir(&mut self) {
        let mut dir = Vec::with_capacity(4 + self.files.len() * DIR_ENTRY_LEN);
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (name, select, data) in self.files() {
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&select.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; 56];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.entries.insert(FW_CFG_FILE_DIR, dir);
    }
}

/// `bootorder` as QEMU writes it: the paths joined by newlines, NUL-terminated; empty
/// when there are none.
fn bootorder_bytes(paths: &[String]) -> Vec<u8> {
    if paths.is_empty() {
        return Vec::new();
    }
    let mut v = paths.join("\n").into_bytes();
    v.push(0);
    v
}

/// The device: an item store, the guest's RAM for DMA, and the I/O state.
pub struct FwCfg {
    mem: GuestMemoryMmap,
    items: FwCfgItems,
    selector: u16,
    offset: u64,
    dma_high: u32,
}

impl FwCfg {
    /// A device serving `items`, doing DMA into `mem`.
    pub fn new(mem: GuestMemoryMmap, items: FwCfgItems) -> Self {
        FwCfg {
            mem,
            items,
            selector: FW_CFG_SIGNATURE,
            offset: 0,
            dma_high: 0,
        }
    }

    /// The register offset (as from the x86 base 0x510) of an access to `region`:
    /// region 0 is the selector/data pair, region 1 the DMA address at +4.
    fn rel(region: usize, offset: u64) -> u64 {
        match region {
            0 => offset,
            1 => 4 + offset,
            _ => u64::MAX,
        }
    }

    /// Adds a named file (ACPI tables, table-loader, ...).
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        self.items.add_file(name, data)
    }

    /// The item store.
    pub fn items(&self) -> &FwCfgItems {
        &self.items
    }

    /// Mutable access to the item store.
    pub fn items_mut(&mut self) -> &mut FwCfgItems {
        &mut self.items
    }

    fn select(&mut self, key: u16) {
        self.selector = key;
        self.offset = 0;
    }

    fn read_data_byte(&mut self) -> u8 {
        let b = self
            .items
            .get(self.selector)
            .and_then(|d| usize::try_from(self.offset).ok().and_then(|o| d.get(o)))
            .copied()
            .unwrap_or(0);
        if self.items.get(self.selector).is_some() {
            self.offset = self.offset.saturating_add(1);
        }
        b
    }

    /// Runs the DMA request whose descriptor is at `addr`.
    pub fn dma(&mut self, addr: u64) {
        let mut desc = [0u8; 16];
        if self.mem.read_slice(&mut desc, GuestAddress(addr)).is_err() {
            // As QEMU: try to flag the error where the descriptor should be.
            let _ = self
                .mem
                .write_slice(&DMA_CTL_ERROR.to_be_bytes(), GuestAddress(addr));
            return;
        }
        let be32 = |i: usize| u32::from_be_bytes([desc[i], desc[i + 1], desc[i + 2], desc[i + 3]]);
        let control = be32(0);
        let length = be32(4);
        let mut buf_addr = u64::from_be_bytes([
            desc[8], desc[9], desc[10], desc[11], desc[12], desc[13], desc[14], desc[15],
        ]);
        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        #[derive(PartialEq)]
        enum Op {
            Read,
            Write,
            Skip,
        }
        let op = if control & DMA_CTL_READ != 0 {
            Op::Read
        } else if control & DMA_CTL_WRITE != 0 {
            Op::Write
        } else {
            Op::Skip
        };
        let mut remaining = if control & (DMA_CTL_READ | DMA_CTL_WRITE | DMA_CTL_SKIP) != 0 {
            u64::from(length)
        } else {
            0
        };
        let mut status = 0u32;
        if remaining > 0 && buf_addr.checked_add(remaining).is_none() {
            remaining = 0;
            status |= DMA_CTL_ERROR;
        }
        let item_len = self.items.get(self.selector).map(|d| d.len() as u64);
        if remaining > 0 && (item_len.is_none() || op == Op::Write) {
            // Unknown selector, or a write to a read-only item.
            status |= DMA_CTL_ERROR;
        }
        while remaining > 0 {
            let avail = item_len.map_or(0, |l| l.saturating_sub(self.offset));
            let n = if avail == 0 {
                remaining
            } else {
                remaining.min(avail)
            };
            let ok = match op {
                Op::Read if avail == 0 => self.zero_fill(buf_addr, n),
                Op::Read => {
                    let data = self.items.get(self.selector).unwrap_or(&[]);
                    let start = self.offset as usize;
                    match data.get(start..start + n as usize) {
                        Some(s) => self.mem.write_slice(s, GuestAddress(buf_addr)).is_ok(),
                        None => false,
                    }
                }
                Op::Write => false,
                Op::Skip => true,
            };
            if !ok {
                status |= DMA_CTL_ERROR;
                break;
            }
            if avail > 0 {
                self.offset += n;
            }
            buf_addr += n;
            remaining -= n;
            if op == Op::Read && item_len.is_none() {
                // The zeros are written; the selector error stands.
                break;
            }
        }
        let _ = self
            .mem
            .write_slice(&status.to_be_bytes(), GuestAddress(addr));
    }

    fn zero_fill(&self, addr: u64, len: u64) -> bool {
        let zeros = [0u8; ZERO_CHUNK];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK as u64) as usize;
            if self
                .mem
                .write_slice(&zeros[..n], GuestAddress(addr + done))
                .is_err()
            {
                return false;
            }
            done += n as u64;
        }
        true
    }
}

impl BusDevice for FwCfg {
    /// Region 0 is the selector/data pair (offsets 0-1), region 1 the DMA address
    /// register (offsets 0-7; at base + 4 on x86).
    fn read(&mut self, region: usize, offset: u64, data: &mut [u8]) {
        let rel = Self::rel(region, offset);
        match rel {
            0 | 1 => {
                for b in data.iter_mut() {
                    *b = self.read_data_byte();
                }
            }
            4..=11 => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = DMA_SIGNATURE
                        .get((rel - 4) as usize + i)
                        .copied()
                        .unwrap_or(0);
                }
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        let rel = Self::rel(region, offset);
        match (rel, data.len()) {
            // A 16-bit write at either port of the pair selects (QEMU decodes by size).
            (0 | 1, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            (4, 4) => self.dma_high = u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
            (8, 4) => {
                let low = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let addr = (u64::from(self.dma_high) << 32) | u64::from(low);
                self.dma_high = 0;
                self.dma(addr);
            }
            (4, 8) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                self.dma_high = 0;
                self.dma(u64::from_be_bytes(b));
            }
            // Data writes (8-bit) and anything else: ignored.
            _ => {}
        }
        None
    }
}

mod state;

#[cfg(test)]
mod tests;
