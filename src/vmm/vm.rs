//! The KVM VM: its fd, guest memory and memslots, the in-kernel irqchip and PIT.
//!
//! The builder calls the steps in board bring-up order:
//!
//! ```text
//! let mut vm = Vm::new(&kvm)?;
//! vm.set_tss_address(tss, identity_map)?;   // the 4-page hole below 4 GiB
//! vm.add_ram(&layout.ram_regions())?;       // memslots 0..n
//! vm.create_irqchip()?;                     // PIC + IOAPIC + LAPICs, before any vCPU
//! vm.create_pit()?;                         // i8254 at 0x40, speaker dummy
//! vm.add_rom(4 GiB - size, &firmware)?;     // optional, read-only memslot
//! ```

use std::sync::Arc;

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::irq::KvmIrqLine;
use super::kvm::Kvm;
use super::memory::{self, MemoryError, Rom, PAGE_SIZE};

/// `KVM_SET_TSS_ADDR` needs three pages.
pub const TSS_PAGES: u64 = 3;

#[derive(Debug, Error)]
pub enum VmError {
    #[error("KVM_CREATE_VM failed")]
    Create(#[source] kvm_ioctls::Error),
    #[error("KVM_SET_TSS_ADDR({addr:#x}) failed")]
    TssAddr {
        addr: u64,
        source: kvm_ioctls::Error,
    },
    #[error("KVM_SET_IDENTITY_MAP_ADDR({addr:#x}) failed")]
    IdentityMap {
        addr: u64,
        source: kvm_ioctls::Error,
    },
    #[error("the TSS ({tss:#x}, 3 pages) and identity map ({identity_map:#x}, 1 page) must be page-aligned, below 4 GiB, disjoint and outside guest RAM")]
    BadTssHole { tss: u64, identity_map: u64 },
    #[error("guest RAM was already added; add all regions in one call")]
    RamTwice,
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("ROM at {gpa:#x}+{size:#x} overlaps guest RAM")]
    RomOverRam { gpa: u64, size: u64 },
    #[error("KVM_CREATE_IRQCHIP failed")]
    Irqchip(#[source] kvm_ioctls::Error),
    #[error(transparent)]
    Routing(#[from] super::irq::IrqError),
    #[error("KVM_CREATE_PIT2 failed")]
    Pit(#[source] kvm_ioctls::Error),
    #[error("the in-kernel PIT needs the irqchip: call create_irqchip first")]
    PitBeforeIrqchip,
}

/// First memslot number for device memory mapped at run time (RAM and ROMs use
/// the numbers below; every KVM offers at least 509 slots).
pub const DEVICE_SLOT_BASE: u32 = 256;

/// A KVM VM and the memory it owns.
///
/// Field order matters: the VM fd is dropped before the mappings its memslots point at.
pub struct Vm {
    fd: Arc<VmFd>,
    memory: GuestMemoryMmap,
    roms: Vec<Rom>,
    next_slot: u32,
    irqchip: bool,
    readonly_mem: bool,
    device_slots: std::sync::atomic::AtomicU32,
}

impl Vm {
    /// `KVM_CREATE_VM`: an empty VM, no memory, no vCPUs.
    pub fn new(kvm: &Kvm) -> Result<Self, VmError> {
        let fd = kvm.fd().create_vm().map_err(VmError::Create)?;
        Ok(Self {
            fd: Arc::new(fd),
            memory: GuestMemoryMmap::new(),
            roms: Vec::new(),
            next_slot: 0,
            irqchip: false,
            readonly_mem: kvm.has_readonly_mem(),
            device_slots: DEVICE_SLOT_BASE.into(),
        })
    }

    /// `KVM_SET_TSS_ADDR` (3 pages at `tss`) and `KVM_SET_IDENTITY_MAP_ADDR` (1 page at
    /// `identity_map`). Both must lie in a hole no memslot or device uses, below 4 GiB;
    /// QEMU uses 0xfeffc000 for the identity map and 0xfeffd000 for the TSS. Call before
    /// creating vCPUs.
    pub fn set_tss_address(&self, tss: u64, identity_map: u64) -> Result<(), VmError> {
        let bad = || VmError::BadTssHole { tss, identity_map };
        let tss_end = tss + TSS_PAGES * PAGE_SIZE;
        let id_end = identity_map + PAGE_SIZE;
        if !tss.is_multiple_of(PAGE_SIZE)
            || !identity_map.is_multiple_of(PAGE_SIZE)
            || tss_end > 1 << 32
            || id_end > 1 << 32
            || (identity_map < tss_end && tss < id_end)
        {
            return Err(bad());
        }
        if self.overlaps_ram(tss, tss_end) || self.overlaps_ram(identity_map, id_end) {
            return Err(bad());
        }
        self.fd
            .set_identity_map_address(identity_map)
            .map_err(|source| VmError::IdentityMap {
                addr: identity_map,
                source,
            })?;
        self.fd
            .set_tss_address(tss as usize)
            .map_err(|source| VmError::TssAddr { addr: tss, source })
    }

    /// Maps guest RAM for the `(base, size)` regions (sorted, page-aligned) and registers
    /// each as a memslot. Call once, with every region.
    pub fn add_ram(&mut self, regions: &[(u64, u64)]) -> Result<(), VmError> {
        if self.memory.num_regions() != 0 {
            return Err(VmError::RamTwice);
        }
        let memory = memory::map_ram(regions)?;
        self.next_slot = memory::register_ram(&self.fd, &memory, self.next_slot)?;
        self.memory = memory;
        Ok(())
    }

    /// Like [`Self::add_ram`], but the `(base, len)` holes inside RAM get no memslot:
    /// guest accesses there exit as MMIO (a VGA's 0xA0000 window).
    pub fn add_ram_with_holes(
        &mut self,
        regions: &[(u64, u64)],
        holes: &[(u64, u64)],
    ) -> Result<(), VmError> {
        if self.memory.num_regions() != 0 {
            return Err(VmError::RamTwice);
        }
        let memory = memory::map_ram(regions)?;
        self.next_slot = memory::register_ram_except(&self.fd, &memory, self.next_slot, holes)?;
        self.memory = memory;
        Ok(())
    }

    /// Like [`Self::add_ram_with_holes`] for RAM already mapped (a snapshot's memory
    /// file, mapped copy-on-write).
    pub fn add_mapped_ram(
        &mut self,
        memory: GuestMemoryMmap,
        holes: &[(u64, u64)],
    ) -> Result<(), VmError> {
        if self.memory.num_regions() != 0 {
            return Err(VmError::RamTwice);
        }
        self.next_slot = memory::register_ram_except(&self.fd, &memory, self.next_slot, holes)?;
        self.memory = memory;
        Ok(())
    }

    /// Puts `other` where [`Self::memory`] is (the memslots keep pointing at the old
    /// mapping) and returns the old one: a restore lets the boot steps write to a
    /// scratch copy while the guest's RAM is the snapshot's.
    pub fn swap_memory(&mut self, other: GuestMemoryMmap) -> GuestMemoryMmap {
        std::mem::replace(&mut self.memory, other)
    }

    /// A memslot number of its own for a device that maps memory at run time (see
    /// [`memory::DeviceSlot`]).
    /// Device slots count from [`DEVICE_SLOT_BASE`], clear of RAM and ROM slots.
    pub fn reserve_slot(&self) -> u32 {
        self.device_slots
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// `KVM_CREATE_IRQCHIP`: the in-kernel 8259 pair, IOAPIC and per-vCPU LAPICs, with
    /// a PC chipset's GSI routing (ISA IRQ 0 on IOAPIC pin 2, see
    /// [`super::irq::pc_gsi_routes`]; the MP table and MADT must say the same).
    pub fn create_irqchip(&mut self) -> Result<(), VmError> {
        self.fd.create_irq_chip().map_err(VmError::Irqchip)?;
        super::irq::set_pc_routing(&self.fd)?;
        self.irqchip = true;
        Ok(())
    }

    /// `KVM_CREATE_PIT2` with a dummy speaker port (0x61 reads the PIT's channel 2
    /// output without a user-space device).
    pub fn create_pit(&self) -> Result<(), VmError> {
        if !self.irqchip {
            return Err(VmError::PitBeforeIrqchip);
        }
        let config = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(config).map_err(VmError::Pit)
    }

    /// A read-only memslot holding `bytes` at `gpa` (page-aligned; padded with 0xFF to
    /// a page). Without `KVM_CAP_READONLY_MEM` the slot is writable, which only a guest
    /// that writes its ROM can tell.
    pub fn add_rom(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), VmError> {
        let rom = Rom::new(gpa, bytes)?;
        let size = rom.size();
        if self.overlaps_ram(gpa, gpa + size) {
            return Err(VmError::RomOverRam { gpa, size });
        }
        rom.register(&self.fd, self.next_slot, self.readonly_mem)?;
        self.next_slot += 1;
        self.roms.push(rom);
        Ok(())
    }

    fn overlaps_ram(&self, start: u64, end: u64) -> bool {
        self.memory
            .iter()
            .any(|r| start < r.start_addr().0 + r.len() && r.start_addr().0 < end)
    }

    /// Guest RAM, for the boot loaders (and devices that do DMA).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// The VM fd, shared with interrupt lines.
    pub fn fd(&self) -> &Arc<VmFd> {
        &self.fd
    }

    /// Whether the in-kernel irqchip exists (vCPUs may only be created after it).
    pub fn has_irqchip(&self) -> bool {
        self.irqchip
    }

    /// An interrupt line for `gsi`, driven through `KVM_IRQ_LINE` (see [`super::irq`]).
    pub fn irq_line(&self, gsi: u32) -> KvmIrqLine {
        KvmIrqLine::new(self.fd.clone(), gsi)
    }
}
