//! Guest RAM and ROM: anonymous mappings registered with KVM as memslots.
//!
//! RAM is mapped `MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE` (what vm-memory's
//! `from_ranges` does) and never touched here: a page costs host memory only once the
//! guest or a boot loader writes it. ROMs are small copies registered with
//! `KVM_MEM_READONLY`, so guest reads come from memory and guest writes exit as MMIO.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
    MemoryRegionAddress,
};

/// Memslots need page-aligned addresses and sizes.
pub const PAGE_SIZE: u64 = 4096;

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("guest memory region {base:#x}+{size:#x} is not page-aligned")]
    Unaligned { base: u64, size: u64 },
    #[error("guest memory region {base:#x}+{size:#x} is empty or wraps around")]
    BadRange { base: u64, size: u64 },
    #[error("cannot map guest RAM")]
    Map(#[from] vm_memory::mmap::FromRangesError),
    #[error("cannot map a {size:#x}-byte ROM")]
    MapRom {
        size: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("cannot copy the ROM image into its mapping")]
    FillRom(#[source] vm_memory::GuestMemoryError),
    #[error("KVM_SET_USER_MEMORY_REGION for slot {slot} at {base:#x}+{size:#x} failed")]
    Memslot {
        slot: u32,
        base: u64,
        size: u64,
        source: kvm_ioctls::Error,
    },
}

/// Checks a (base, size) list: page-aligned, non-empty, no wrap. Overlaps are
/// vm-memory's to reject.
fn check_ranges(regions: &[(u64, u64)]) -> Result<(), MemoryError> {
    for &(base, size) in regions {
        if size == 0 || base.checked_add(size).is_none() {
            return Err(MemoryError::BadRange { base, size });
        }
        if !base.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(MemoryError::Unaligned { base, size });
        }
    }
    Ok(())
}

/// Maps guest RAM for the `(base, size)` regions the layout computed (sorted by base).
pub fn map_ram(regions: &[(u64, u64)]) -> Result<GuestMemoryMmap, MemoryError> {
    check_ranges(regions)?;
    let ranges: Vec<(GuestAddress, usize)> = regions
        .iter()
        .map(|&(b, s)| (GuestAddress(b), s as usize))
        .collect();
    Ok(GuestMemoryMmap::from_ranges(&ranges)?)
}

/// Registers one mapped region as memslot `slot`.
fn set_slot(vm: &VmFd, slot: u32, region: &GuestRegionMmap, flags: u32) -> Result<(), MemoryError> {
    let base = region.start_addr().0;
    let size = region.len();
    let entry = kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr: base,
        memory_size: size,
        userspace_addr: region.as_ptr() as u64,
    };
    // SAFETY: a live mapping of exactly `size` bytes, kept alive as long as the VM fd (see
    // `Vm`'s field order: dropped after the fd); the caller hands out distinct slots.
    unsafe { vm.set_user_memory_region(entry) }.map_err(|source| MemoryError::Memslot {
        slot,
        base,
        size,
        source,
    })
}

/// Registers every RAM region as a memslot, numbered from `first_slot`. Returns the
/// next free slot number.
pub fn register_ram(vm: &VmFd, mem: &GuestMemoryMmap, first_slot: u32) -> Result<u32, MemoryError> {
    let mut slot = first_slot;
    for region in mem.iter() {
        set_slot(vm, slot, region, 0)?;
        slot += 1;
    }
    Ok(slot)
}

/// Like [`register_ram`], but leaves the `(base, len)` holes (page-aligned) out of the
/// memslots, so guest accesses there exit as MMIO (the VGA window at 0xA0000 inside
/// the low RAM mapping). The mapping itself stays whole.
pub fn register_ram_except(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    first_slot: u32,
    holes: &[(u64, u64)],
) -> Result<u32, MemoryError> {
    let mut slot = first_slot;
    for region in mem.iter() {
        let (start, end) = (region.start_addr().0, region.start_addr().0 + region.len());
        let mut pieces = vec![(start, end)];
        for &(hb, hl) in holes {
            let he = hb.saturating_add(hl);
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    if he <= s || e <= hb {
                        vec![(s, e)]
                    } else {
                        [(s, hb.max(s)), (he.min(e), e)]
                            .into_iter()
                            .filter(|(a, b)| a < b)
                            .collect()
                    }
                })
                .collect();
        }
        for (s, e) in pieces {
            let entry = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: s,
                memory_size: e - s,
                userspace_addr: region.as_ptr() as u64 + (s - start),
            };
            // SAFETY: as in `set_slot`: a sub-range of a live mapping the Vm keeps alive
            // longer than the VM fd, in a slot nobody else uses.
            unsafe { vm.set_user_memory_region(entry) }.map_err(|source| MemoryError::Memslot {
                slot,
                base: s,
                size: e - s,
                source,
            })?;
            slot += 1;
        }
    }
    Ok(slot)
}

/// A memslot a device maps and moves at run time (the VGA's framebuffer BAR): host
/// memory the device owns, shown at whatever guest address its BAR holds.
pub struct DeviceSlot {
    vm: std::sync::Arc<VmFd>,
    slot: u32,
    host: u64,
    size: u64,
    /// Keeps the host mapping alive while the slot may point at it.
    _keep: std::sync::Arc<dyn Send + Sync>,
    mapped: bool,
}

impl DeviceSlot {
    /// `host`..`host + size` must be a live mapping that `keep` owns.
    pub fn new(
        vm: std::sync::Arc<VmFd>,
        slot: u32,
        host: u64,
        size: u64,
        keep: std::sync::Arc<dyn Send + Sync>,
    ) -> Self {
        Self {
            vm,
            slot,
            host,
            size,
            _keep: keep,
            mapped: false,
        }
    }

    /// Shows the memory at `gpa` (page-aligned), or removes it (None).
    pub fn map(&mut self, gpa: Option<u64>) -> Result<(), MemoryError> {
        if self.mapped {
            self.set(0, 0)?;
            self.mapped = false;
        }
        if let Some(gpa) = gpa {
            check_ranges(&[(gpa, self.size)])?;
            self.set(gpa, self.size)?;
            self.mapped = true;
        }
        Ok(())
    }

    fn set(&self, gpa: u64, size: u64) -> Result<(), MemoryError> {
        let entry = kvm_userspace_memory_region {
            slot: self.slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: self.host,
        };
        // SAFETY: a live mapping of `self.size` bytes kept alive by `_keep` (dropped after
        // the slot is deleted, or with the VM); the slot was reserved for this device alone.
        unsafe { self.vm.set_user_memory_region(entry) }.map_err(|source| MemoryError::Memslot {
            slot: self.slot,
            base: gpa,
            size,
            source,
        })
    }
}

/// A read-only region: the guest reads it as memory, its writes exit as MMIO (and,
/// with nothing on the MMIO bus there, are dropped, as a real ROM ignores them).
pub struct Rom {
    region: GuestRegionMmap,
}

impl Rom {
    /// Copies `bytes` into a fresh mapping for guest address `gpa`, padded with 0xFF
    /// (erased flash) up to a whole page.
    pub fn new(gpa: u64, bytes: &[u8]) -> Result<Self, MemoryError> {
        let size = (bytes.len() as u64).div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
        check_ranges(&[(gpa, size)])?;
        let region = GuestRegionMmap::from_range(GuestAddress(gpa), size as usize, None)
            .map_err(|source| MemoryError::MapRom { size, source })?;
        let pad = vec![0xffu8; (size as usize) - bytes.len()];
        region
            .write_slice(bytes, MemoryRegionAddress(0))
            .map_err(MemoryError::FillRom)?;
        region
            .write_slice(&pad, MemoryRegionAddress(bytes.len() as u64))
            .map_err(MemoryError::FillRom)?;
        Ok(Self { region })
    }

    /// Registers the ROM as memslot `slot`, read-only when `readonly`.
    pub fn register(&self, vm: &VmFd, slot: u32, readonly: bool) -> Result<(), MemoryError> {
        set_slot(
            vm,
            slot,
            &self.region,
            if readonly { KVM_MEM_READONLY } else { 0 },
        )
    }

    /// Guest-physical base address.
    pub fn base(&self) -> u64 {
        self.region.start_addr().0
    }

    /// Size in bytes (a whole number of pages).
    pub fn size(&self) -> u64 {
        self.region.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(matches!(
            map_ram(&[(0x1000, 0x800)]),
            Err(MemoryError::Unaligned { .. })
        ));
        assert!(matches!(
            map_ram(&[(0, 0)]),
            Err(MemoryError::BadRange { .. })
        ));
        assert!(matches!(
            map_ram(&[(!0xfff, 0x2000)]),
            Err(MemoryError::BadRange { .. })
        ));
        assert!(map_ram(&[(0, 0x10000), (0x8000, 0x10000)]).is_err());
    }

    #[test]
    fn ram_maps_without_touching() {
        let mem = map_ram(&[(0, 0x10_0000), (0x1_0000_0000, 0x20_0000)]).unwrap();
        assert_eq!(mem.num_regions(), 2);
        let mut b = [1u8; 4];
        mem.read_slice(&mut b, GuestAddress(0x1_0000_0100)).unwrap();
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn rom_is_padded_with_ff() {
        let rom = Rom::new(0xffff_f000, &[0xea, 0x5b]).unwrap();
        assert_eq!((rom.base(), rom.size()), (0xffff_f000, 0x1000));
        let mut b = [0u8; 4];
        rom.region
            .read_slice(&mut b, MemoryRegionAddress(0))
            .unwrap();
        assert_eq!(b, [0xea, 0x5b, 0xff, 0xff]);
        assert!(matches!(
            Rom::new(0x123, &[1]),
            Err(MemoryError::Unaligned { .. })
        ));
    }
}
