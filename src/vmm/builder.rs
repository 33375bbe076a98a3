//! The linear build recipe: a checked [`MachineSpec`] in, a built [`Machine`] out. It
//! reads top to bottom like a PC board's bring-up: KVM → VM → RAM → interrupt
//! controllers and PIT → devices → boot image and tables → vCPUs. Running it is
//! [`Machine::run`]'s job.
//!
//! Every fact comes from the spec: the RAM regions, the reservations, the chipset's
//! windows and every device's resources. Nothing here looks at the board's name.

use std::sync::Arc;

use thiserror::Error;

use super::bus::Bus;
use super::exit::Buses;
use super::kvm::{Kvm, KvmError};
use super::machine::Machine;
use super::vcpu::{Vcpu, VcpuSetupError};
use super::vm::{Vm, VmError};
use super::wire::{self, Devices, WireError};
use crate::arch::x86_64::cpuid::{self, CpuidError};
use crate::arch::x86_64::e820::{E820Entry, E820Type};
use crate::arch::x86_64::layout;
use crate::arch::x86_64::mptable::{self, MpConfig, MpTableError, PciIntx};
use crate::arch::x86_64::regs::{BootEntry, MsrConfig};
use crate::boot::firmware::{self, FirmwareError};
use crate::boot::linux::{self, BootError, BootSetup};
use crate::boot::probe;
use crate::spec::{Kind, MachineSpec};

#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Kvm(#[from] KvmError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("this host's KVM runs at most {max} vCPUs; the machine has {want}")]
    TooManyVcpus { want: u32, max: usize },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("booting {what}")]
    Boot {
        what: String,
        #[source]
        source: BootError,
    },
    #[error("firmware {path}")]
    Firmware {
        path: std::path::PathBuf,
        #[source]
        source: FirmwareError,
    },
    #[error("a kernel for the firmware is handed over through fw_cfg; this machine has no fw_cfg device")]
    NoFwCfg,
    #[error("writing the BIOS data area")]
    Bda(#[source] vm_memory::GuestMemoryError),
    #[error("writing the MP table")]
    MpTable(#[from] MpTableError),
    #[error("CPUID")]
    Cpuid(#[from] CpuidError),
    #[error(transparent)]
    Acpi(#[from] crate::acpi::AcpiError),
    #[error("adding the ACPI tables to fw_cfg")]
    AcpiFwCfg(#[source] crate::devices::fw_cfg::FwCfgError),
    #[error(transparent)]
    Vcpu(#[from] VcpuSetupError),
    #[error("restoring the snapshot")]
    Snapshot(#[from] super::snapshot::SnapshotError),
}

/// How to build a machine, beyond its spec.
#[derive(Default)]
pub struct BuildOptions {
    /// Start from this snapshot (opened and checked by `vmm::snapshot::load`) instead
    /// of booting: its memory, vCPUs, in-kernel and device state.
    pub restore: Option<crate::vmm::snapshot::Restore>,
}

/// Builds the machine `spec` describes, ready to run.
pub fn build(spec: &MachineSpec, opts: &BuildOptions) -> Result<Machine, BuildError> {
    let kvm = Kvm::open()?;
    let cpus = spec.cpus.count();
    if cpus as usize > kvm.max_vcpus() {
        return Err(BuildError::TooManyVcpus {
            want: cpus,
            max: kvm.max_vcpus(),
        });
    }

    // Machine init and memory.
    let mut vm = Vm::new(&kvm)?;
    let restore = opts.restore.as_ref();
    match restore {
        Some(r) => add_snapshot_ram(spec, &mut vm, r)?,
        None => add_ram(spec, &mut vm)?,
    }
    vm.set_tss_address(layout::KVM_TSS_ADDR, layout::KVM_IDENTITY_MAP_ADDR)?;

    // Interrupt controllers and the PIT, before any vCPU.
    vm.create_irqchip()?;
    if spec.has(Kind::Pit) {
        vm.create_pit()?;
    }

    // Devices.
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let frozen = restore.map(|r| r.frozen_disks()).unwrap_or_default();
    let devices = wire::wire(spec, &vm, &mut pio, &mut mmio, &frozen)?;

    // Boot image, boot structures and tables. A firmware builds its own MP table, BDA
    // and boot structures, and gets the ACPI tables through fw_cfg.
    let supported = kvm.supported_cpuid()?;
    let vcpus = match restore {
        None => {
            let boot = match &spec.boot.firmware {
                Some(_) => firmware_boot(spec, &mut vm, &devices)?,
                None => direct_boot(spec, &vm, &supported)?,
            };
            create_vcpus(spec, &vm, &supported, &boot)?
        }
        Some(r) => {
            // The firmware's ROM and fw_cfg contents are the machine's, as at boot;
            // what the boot steps write to RAM goes to a scratch copy, not the guest's.
            if spec.boot.firmware.is_some() {
                let ram: Vec<(u64, u64)> =
                    spec.memory.ram.iter().map(|r| (r.base, r.size)).collect();
                let scratch = super::memory::map_ram(&ram).map_err(VmError::from)?;
                let real = vm.swap_memory(scratch);
                let booted = firmware_boot(spec, &mut vm, &devices);
                vm.swap_memory(real);
                booted?;
            }
            super::snapshot::restore::restore(spec, &vm, &supported, r, &devices)?
        }
    };
    let buses = Arc::new(Buses {
        pio,
        mmio,
        pci: devices.pci.clone(),
    });
    let msr_list = kvm
        .fd()
        .get_msr_index_list()
        .map(|l| l.as_slice().to_vec())
        .unwrap_or_default();
    Ok(Machine::new(
        spec.clone(),
        kvm,
        vm,
        (vcpus, msr_list),
        buses,
        devices,
    ))
}

/// Guest RAM as the spec lays it out; a VGA's legacy window is MMIO, not RAM.
fn add_ram(spec: &MachineSpec, vm: &mut Vm) -> Result<(), BuildError> {
    let holes = vga_holes(spec);
    let ram: Vec<(u64, u64)> = spec.memory.ram.iter().map(|r| (r.base, r.size)).collect();
    vm.add_ram_with_holes(&ram, &holes)?;
    Ok(())
}

/// Guest RAM mapped copy-on-write from the snapshot's memory file, which must lay out
/// the same regions as the spec.
fn add_snapshot_ram(
    spec: &MachineSpec,
    vm: &mut Vm,
    r: &crate::vmm::snapshot::Restore,
) -> Result<(), BuildError> {
    let same = r.manifest.regions.len() == spec.memory.ram.len()
        && (r.manifest.regions.iter())
            .zip(&spec.memory.ram)
            .all(|(a, b)| a.base == b.base && a.size == b.size);
    if !same {
        return Err(BuildError::Snapshot(
            super::snapshot::SnapshotError::Mismatch(
                "its memory regions are not the machine's".into(),
            ),
        ));
    }
    let memory =
        crate::snapshot::memory::map(&r.memory, &r.manifest.regions).map_err(|source| {
            super::snapshot::SnapshotError::Memory {
                path: r.dir.join(crate::snapshot::manifest::MEMORY),
                source,
            }
        })?;
    vm.add_mapped_ram(memory, &vga_holes(spec))?;
    Ok(())
}

fn vga_holes(spec: &MachineSpec) -> Vec<(u64, u64)> {
    spec.devices_of(Kind::Vga)
        .flat_map(|d| d.mmio.iter().map(|m| (m.base, m.len)))
        .collect()
}

/// How the boot CPU starts: its entry state and MSRs.
struct BootCpu {
    entry: BootEntry,
    msrs: Vec<kvm_bindings::kvm_msr_entry>,
}

impl From<BootSetup> for BootCpu {
    fn from(b: BootSetup) -> Self {
        BootCpu {
            entry: b.entry,
            msrs: b.msrs,
        }
    }
}

/// Every vCPU gets CPUID, MSRs and its LAPIC; the boot CPU gets the entry state, the
/// others wait for the guest's INIT/SIPI.
fn create_vcpus(
    spec: &MachineSpec,
    vm: &Vm,
    supported: &kvm_bindings::CpuId,
    boot: &BootCpu,
) -> Result<Vec<Vcpu>, BuildError> {
    let topo = spec.cpus;
    let mut vcpus = Vec::with_capacity(topo.count() as usize);
    for i in 0..topo.count() {
        let vcpu = Vcpu::new(vm, i)?;
        vcpu.set_cpuid(&cpuid::vcpu_cpuid(supported, &topo, i)?)?;
        vcpu.set_msrs(&boot.msrs)?;
        vcpu.setup_lapic()?;
        if i == 0 {
            let e = boot.entry;
            let sregs = vcpu.sregs()?;
            vcpu.set_boot_state(&e.regs(), &e.sregs(&sregs), &e.fpu())?;
        }
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

/// The guest's physical address width, as CPUID leaf 0x8000_0008 reports it.
fn phys_bits(supported: &kvm_bindings::CpuId) -> u8 {
    supported
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map_or(36, |e| (e.eax & 0xff) as u8)
}

/// Direct boot: ACPI tables in the F-segment, the kernel (or the probe) with its zero
/// page / start_info, e820 and command line, the MP table and the BDA.
fn direct_boot(
    spec: &MachineSpec,
    vm: &Vm,
    supported: &kvm_bindings::CpuId,
) -> Result<BootCpu, BuildError> {
    let acpi = crate::acpi::write_direct(
        vm.memory(),
        &crate::acpi::build(spec),
        crate::acpi::DIRECT_BASE,
        crate::acpi::DIRECT_END,
    )?;
    let msr = MsrConfig {
        mmio_hole_start: Some(spec.memory.below_4g.max(1 << 20)),
        phys_bits: phys_bits(supported),
    };
    let boot = load_kernel(spec, vm, msr, &acpi)?;
    mptable::write_mptable(vm.memory(), &mp_config(spec))?;
    layout::write_bda(vm.memory()).map_err(BuildError::Bda)?;
    Ok(boot.into())
}

/// What boots: a name for messages, the kernel image, the initrd, the command line.
type Payload = (String, Vec<u8>, Option<Vec<u8>>, String);

/// The kernel, initrd and command line the spec names, or the built-in probe.
fn payload(spec: &MachineSpec) -> Result<Payload, BuildError> {
    let read = |what, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| BuildError::Read {
            what,
            path: path.into(),
            source,
        })
    };
    match (&spec.boot.kernel, spec.boot.probe) {
        (_, true) | (None, false) => Ok((
            "the probe".into(),
            probe::probe_elf().to_vec(),
            None,
            probe::cmdline(spec),
        )),
        (Some(k), false) => {
            let initrd = match &spec.boot.initrd {
                Some(a) => Some(read("initrd", &a.path)?),
                None => None,
            };
            Ok((
                k.path.display().to_string(),
                read("kernel", &k.path)?,
                initrd,
                spec.boot.cmdline.clone(),
            ))
        }
    }
}

fn load_kernel(
    spec: &MachineSpec,
    vm: &Vm,
    msr: MsrConfig,
    acpi: &crate::acpi::DirectTables,
) -> Result<BootSetup, BuildError> {
    let (what, kernel, initrd, cmdline) = payload(spec)?;
    let mut extra = reserved_e820(spec);
    extra.extend_from_slice(&acpi.e820);
    let input = linux::BootInput {
        kernel: &kernel,
        initrd: initrd.as_deref(),
        cmdline: &cmdline,
        ram: &spec.memory.ram,
        extra_e820: &extra,
        rsdp: Some(acpi.rsdp),
        msr,
    };
    linux::setup(vm.memory(), &input).map_err(|source| BuildError::Boot { what, source })
}

/// Firmware boot: the ACPI tables go to fw_cfg with QEMU's table-loader script; the
/// image sits at the top of 4 GiB (read-only) with its legacy copy below 1 MiB (see
/// `boot::firmware`); the boot CPU starts at the reset vector. The payload (the
/// machine's kernel, or the probe) goes to the firmware as QEMU's `-kernel` does: an
/// option ROM in fw_cfg's `genroms/`, first in `bootorder`, and the fw_cfg items it
/// reads.
fn firmware_boot(
    spec: &MachineSpec,
    vm: &mut Vm,
    devices: &Devices,
) -> Result<BootCpu, BuildError> {
    let fw_cfg = devices.fw_cfg.as_ref();
    if let Some(fw) = fw_cfg {
        let mut fw = fw.lock().unwrap_or_else(|e| e.into_inner());
        for (name, data) in crate::acpi::build(spec).fw_cfg_files() {
            fw.add_file(name, data).map_err(BuildError::AcpiFwCfg)?;
        }
    }
    let path = spec
        .boot
        .firmware
        .as_ref()
        .map(|a| a.path.clone())
        .unwrap_or_default();
    let image = std::fs::read(&path).map_err(|source| BuildError::Read {
        what: "firmware",
        path: path.clone(),
        source,
    })?;
    let fw = firmware::setup(vm.memory(), &image)
        .map_err(|source| BuildError::Firmware { path, source })?;
    vm.add_rom(fw.layout.rom_base, &image)?;
    // A machine with neither a kernel nor the probe boots the firmware alone.
    if spec.boot.kernel.is_some() || spec.boot.probe {
        hand_payload_to_firmware(spec, vm, fw_cfg)?;
    }
    Ok(BootCpu {
        entry: fw.entry,
        msrs: fw.msrs,
    })
}

fn hand_payload_to_firmware(
    spec: &MachineSpec,
    vm: &Vm,
    fw_cfg: Option<&Arc<std::sync::Mutex<crate::devices::fw_cfg::FwCfg>>>,
) -> Result<(), BuildError> {
    let (what, kernel, initrd, cmdline) = payload(spec)?;
    let fw_err = |source| BuildError::Firmware {
        path: what.clone().into(),
        source,
    };
    let dev = fw_cfg.ok_or(BuildError::NoFwCfg)?;
    let low_top = layout::low_ram_top(&spec.memory.ram);
    let p = firmware::prepare_payload(vm.memory(), &kernel, initrd.is_some(), &cmdline, low_top)
        .map_err(fw_err)?;
    let rom_path = firmware::find_option_rom(p.rom).map_err(fw_err)?;
    let rom = std::fs::read(&rom_path).map_err(|source| BuildError::Read {
        what: "option ROM",
        path: rom_path.clone(),
        source,
    })?;
    let mut dev = dev.lock().unwrap_or_else(|e| e.into_inner());
    let items = dev.items_mut();
    for (key, data) in p.items.iter().cloned() {
        items.add_item(key, data);
    }
    items
        .set_file(&p.rom_file(), rom)
        .and_then(|()| items.set_file("bootorder", p.bootorder.into_bytes()))
        .map_err(|e| BuildError::Firmware {
            path: rom_path,
            source: firmware::FirmwareError::Payload(e.to_string()),
        })
}

/// What the spec's memory layout reserves beyond the standard PC ranges.
fn reserved_e820(spec: &MachineSpec) -> Vec<E820Entry> {
    spec.memory
        .reserved
        .iter()
        .map(|r| E820Entry {
            addr: r.base,
            size: r.len,
            kind: E820Type::Reserved,
        })
        .collect()
}

fn mp_config(spec: &MachineSpec) -> MpConfig {
    let apic_ids: Vec<u32> = (0..spec.cpus.count())
        .map(|i| spec.cpus.apic_id(i))
        .collect();
    let pci = spec.chipset.pci.as_ref().map(|_| {
        spec.devices
            .iter()
            .filter_map(|d| d.pci.as_ref())
            .filter(|p| p.bus_number == 0)
            .filter_map(|p| {
                Some(PciIntx {
                    bus: 0,
                    device: p.addr.slot,
                    pin: p.pin.checked_sub(1)?,
                    ioapic_pin: p.gsi? as u8,
                })
            })
            .collect()
    });
    MpConfig {
        apic_ids,
        ioapic_id: spec.ioapic().map_or(1, |(_, id)| id),
        pci,
        irq0_override: true,
    }
}
