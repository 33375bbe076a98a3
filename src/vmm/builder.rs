//! The linear build recipe: a checked [`MachineSpec`] in, a running machine out. It
//! reads top to bottom like a PC board's bring-up: KVM → VM → RAM → interrupt
//! controllers and PIT → devices → boot image and tables → vCPUs → run.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::attach::{self, AttachError};
use super::bus::Bus;
use super::event_loop;
use super::exit::{Buses, ExitReason};
use super::kvm::{Kvm, KvmError};
use super::vcpu::{self, Vcpu, VcpuSetupError};
use super::vm::{Vm, VmError};
use crate::arch::x86_64::cpuid::{self, CpuidError};
use crate::arch::x86_64::e820::{E820Entry, E820Type};
use crate::arch::x86_64::layout::{self, RamRegion};
use crate::arch::x86_64::mptable::{self, MpConfig, MpTableError, PciIntx};
use crate::arch::x86_64::regs::BootEntry;
use crate::arch::x86_64::regs::MsrConfig;
use crate::boot::firmware::{self, FirmwareError};
use crate::boot::linux::{self, BootError, BootSetup};
use crate::boot::probe;
use crate::spec::{DeviceKind, MachineSpec};

#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Kvm(#[from] KvmError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("this host's KVM runs at most {max} vCPUs; the machine has {want}")]
    TooManyVcpus { want: u32, max: usize },
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("booting {what}: {source}")]
    Boot { what: String, source: BootError },
    #[error("firmware {path}: {source}")]
    Firmware {
        path: std::path::PathBuf,
        source: FirmwareError,
    },
    #[error("a kernel for the firmware is handed over through fw_cfg; this machine has no fw_cfg device")]
    NoFwCfg,
    #[error("writing the BIOS data area: {0}")]
    Bda(vm_memory::GuestMemoryError),
    #[error("writing the MP table: {0}")]
    MpTable(#[from] MpTableError),
    #[error("CPUID: {0}")]
    Cpuid(#[from] CpuidError),
    #[error(transparent)]
    Acpi(#[from] crate::acpi::AcpiError),
    #[error("adding the ACPI tables to fw_cfg: {0}")]
    AcpiFwCfg(crate::devices::fw_cfg::FwCfgError),
    #[error(transparent)]
    Vcpu(#[from] VcpuSetupError),
}

/// How to run a machine, beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// End the run after this long.
    pub timeout: Option<Duration>,
    /// Boot the built-in probe instead of the machine's kernel, with these extra options
    /// on its command line.
    pub probe: Option<String>,
    /// Write a screenshot of the VGA here when the run ends; SIGUSR1 shots go next to
    /// it as `<FILE>-N.png` (`<machine name>-N.png` without it).
    pub screenshot_on_exit: Option<std::path::PathBuf>,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    pub reason: ExitReason,
    /// Writes to the POST port 0x80.
    pub post_writes: u64,
}

/// Builds the machine and runs it to the end.
pub fn run(spec: &MachineSpec, opts: &RunOptions) -> Result<RunReport, BuildError> {
    // The exit signals wait for the event loop's signalfd from here on, in this thread
    // and in the vCPU threads it spawns.
    let old_mask = event_loop::block_exit_signals();
    let result = build_and_run(spec, opts);
    // SAFETY: restores the mask saved above; the pointer arguments are valid.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
    result
}

fn build_and_run(spec: &MachineSpec, opts: &RunOptions) -> Result<RunReport, BuildError> {
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
    let ram = ram_regions(spec);
    // A VGA's legacy window is MMIO, not RAM: no memslot there.
    let holes: Vec<(u64, u64)> = spec
        .devices
        .iter()
        .filter(|d| matches!(d.kind, DeviceKind::Vga { .. }))
        .filter_map(|d| d.mmio)
        .collect();
    vm.add_ram_with_holes(
        &ram.iter().map(|r| (r.base, r.size)).collect::<Vec<_>>(),
        &holes,
    )?;
    vm.set_tss_address(layout::KVM_TSS_ADDR, layout::KVM_IDENTITY_MAP_ADDR)?;

    // Interrupt controllers and the PIT, before any vCPU.
    vm.create_irqchip()?;
    if spec.devices_of("pit").next().is_some() {
        vm.create_pit()?;
    }

    // Devices.
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let attached = attach::attach(spec, &vm, &mut pio, &mut mmio)?;
    for m in &attached.missing {
        eprintln!("vmrun: warning: device {m} is not emulated yet; the guest will not see it");
    }

    // Boot image, boot structures and the MP table.
    let supported = kvm.supported_cpuid()?;
    let msr = MsrConfig {
        mmio_hole_start: Some(spec.ram_below_4g.max(1 << 20)),
        phys_bits: phys_bits(&supported),
    };
    // A firmware builds its own MP table, BDA and boot structures.
    let boot = if spec.boot.firmware.is_some() {
        add_acpi_fw_cfg(spec, &attached)?;
        load_firmware(spec, opts, &mut vm, &ram, attached.fw_cfg.as_ref())?
    } else {
        let acpi = crate::acpi::write_direct(
            vm.memory(),
            &crate::acpi::build(spec),
            crate::acpi::DIRECT_BASE,
            crate::acpi::DIRECT_END,
        )?;
        let boot = load_boot(spec, opts, &vm, &ram, msr, &acpi)?;
        let apic_ids: Vec<u32> = (0..cpus).map(|i| spec.cpus.apic_id(i)).collect();
        mptable::write_mptable(vm.memory(), &mp_config(spec, &apic_ids))?;
        layout::write_bda(vm.memory()).map_err(BuildError::Bda)?;
        BootCpu::from(boot)
    };

    // vCPUs: every one gets CPUID, MSRs and LAPIC set up; the boot CPU gets the entry
    // state, the others wait for the guest's INIT/SIPI.
    let topo = spec.cpus;
    let mut vcpus = Vec::with_capacity(cpus as usize);
    for i in 0..cpus {
        let vcpu = Vcpu::new(&vm, i)?;
        vcpu.set_cpuid(&cpuid::vcpu_cpuid(&supported, &topo, i)?)?;
        vcpu.set_msrs(&boot.msrs)?;
        vcpu.setup_lapic()?;
        if i == 0 {
            let sregs = vcpu.fd().get_sregs().map_err(|e| VcpuSetupError::Ioctl {
                index: 0,
                what: "KVM_GET_SREGS",
                source: e,
            })?;
            let e = boot.entry;
            vcpu.set_boot_state(&e.regs(), &e.sregs(&sregs), &e.fpu())?;
        }
        vcpus.push(vcpu);
    }

    // Run: the vCPU threads and the main event loop, until something ends the run.
    let buses = Arc::new(Buses {
        pio,
        mmio,
        pci: attached.pci.clone(),
    });
    let running = vcpu::start(vcpus, buses)?;
    let terminal = attached.terminal;
    let shots = screenshots(spec, opts, attached.vga.clone());
    let mut on_usr1 = shots.on_request();
    let reason = event_loop::run_with_usr1(
        running,
        attached.sources,
        opts.timeout,
        &mut on_usr1,
        move || drop(terminal),
    );
    shots.on_exit();
    Ok(RunReport {
        reason,
        post_writes: attached.post.writes(),
    })
}

/// Screenshots of the machine's VGA: on request (SIGUSR1) and at the end of the run.
struct Screenshots {
    vga: Option<Arc<std::sync::Mutex<crate::devices::vga::pci::StdVga>>>,
    on_exit: Option<std::path::PathBuf>,
    base: std::path::PathBuf,
}

fn screenshots(
    spec: &MachineSpec,
    opts: &RunOptions,
    vga: Option<Arc<std::sync::Mutex<crate::devices::vga::pci::StdVga>>>,
) -> Screenshots {
    Screenshots {
        vga,
        on_exit: opts.screenshot_on_exit.clone(),
        base: opts
            .screenshot_on_exit
            .clone()
            .unwrap_or_else(|| spec.name.clone().into()),
    }
}

impl Screenshots {
    fn shoot(
        vga: &Option<Arc<std::sync::Mutex<crate::devices::vga::pci::StdVga>>>,
        path: &std::path::Path,
    ) {
        use crate::devices::vga::screenshot;
        let Some(vga) = vga else {
            eprintln!(
                "vmrun: no screenshot {}: the machine has no VGA",
                path.display()
            );
            return;
        };
        let frame = vga.lock().unwrap_or_else(|p| p.into_inner()).vga().render();
        match screenshot::save_png(&frame, path) {
            Ok(()) => eprintln!(
                "vmrun: screenshot {} ({}x{})",
                path.display(),
                frame.width,
                frame.height
            ),
            Err(e) => eprintln!("vmrun: {e}"),
        }
    }

    /// The SIGUSR1 handler: the next numbered file.
    fn on_request(&self) -> impl FnMut() + '_ {
        let mut n = 0u32;
        move || {
            n += 1;
            let path = crate::devices::vga::screenshot::numbered_path(&self.base, n);
            Self::shoot(&self.vga, &path);
        }
    }

    fn on_exit(&self) {
        if let Some(p) = &self.on_exit {
            Self::shoot(&self.vga, p);
        }
    }
}

/// The guest's physical address width, as CPUID leaf 0x8000_0008 reports it.
fn phys_bits(supported: &kvm_bindings::CpuId) -> u8 {
    supported
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map_or(36, |e| (e.eax & 0xff) as u8)
}

/// Guest RAM: below the board's PCI hole, the rest from 4 GiB.
fn ram_regions(spec: &MachineSpec) -> Vec<RamRegion> {
    let board = spec.board.board();
    layout::ram_regions(spec.memory, board.low_limit(spec.memory))
}

/// Loads the kernel (or the probe) and writes the zero page / start_info, e820 and
/// command line.
fn load_boot(
    spec: &MachineSpec,
    opts: &RunOptions,
    vm: &Vm,
    ram: &[RamRegion],
    msr: MsrConfig,
    acpi: &crate::acpi::DirectTables,
) -> Result<BootSetup, BuildError> {
    let use_probe = opts.probe.is_some() || spec.boot.kernel.is_none();
    let (what, kernel, initrd, cmdline): (
        String,
        std::borrow::Cow<'_, [u8]>,
        Option<Vec<u8>>,
        String,
    ) = if use_probe {
        (
            "the probe".into(),
            probe::probe_elf().into(),
            None,
            probe_cmdline(spec, opts.probe.as_deref().unwrap_or("")),
        )
    } else {
        let k = spec
            .boot
            .kernel
            .as_ref()
            .map(|a| a.path.clone())
            .unwrap_or_default();
        let bytes = std::fs::read(&k).map_err(|source| BuildError::Read {
            what: "kernel",
            path: k.clone(),
            source,
        })?;
        let initrd = match &spec.boot.initrd {
            Some(a) => Some(std::fs::read(&a.path).map_err(|source| BuildError::Read {
                what: "initrd",
                path: a.path.clone(),
                source,
            })?),
            None => None,
        };
        (
            k.display().to_string(),
            bytes.into(),
            initrd,
            spec.boot.cmdline.clone(),
        )
    };
    let mut extra = extra_e820(spec);
    extra.extend_from_slice(&acpi.e820);
    let input = linux::BootInput {
        kernel: &kernel,
        initrd: initrd.as_deref(),
        cmdline: &cmdline,
        ram,
        extra_e820: &extra,
        rsdp: Some(acpi.rsdp),
        msr,
    };
    linux::setup(vm.memory(), &input).map_err(|source| BuildError::Boot { what, source })
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

/// Firmware boot: the ACPI tables go to fw_cfg with QEMU's table-loader script.
fn add_acpi_fw_cfg(spec: &MachineSpec, attached: &attach::Attached) -> Result<(), BuildError> {
    let Some(fw) = &attached.fw_cfg else {
        return Ok(());
    };
    let mut fw = fw.lock().unwrap_or_else(|e| e.into_inner());
    for (name, data) in crate::acpi::build(spec).fw_cfg_files() {
        fw.add_file(name, data).map_err(BuildError::AcpiFwCfg)?;
    }
    Ok(())
}

/// Firmware boot: the image at the top of 4 GiB (read-only) and its legacy copy below
/// 1 MiB (see `boot::firmware`); the boot CPU starts at the reset vector.
/// The payload (the machine's kernel, or the probe under `vmrun probe`) goes to the
/// firmware as QEMU's `-kernel` does: an option ROM in fw_cfg's `genroms/`, first in
/// `bootorder`, and the fw_cfg items it reads.
fn load_firmware(
    spec: &MachineSpec,
    opts: &RunOptions,
    vm: &mut Vm,
    ram: &[RamRegion],
    fw_cfg: Option<&Arc<std::sync::Mutex<crate::devices::fw_cfg::FwCfg>>>,
) -> Result<BootCpu, BuildError> {
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
    let payload = match (&opts.probe, &spec.boot.kernel) {
        (Some(extra), _) => Some((
            "the probe".to_string(),
            probe::probe_elf().to_vec(),
            false,
            probe_cmdline(spec, extra),
        )),
        (None, Some(k)) => Some((
            k.path.display().to_string(),
            std::fs::read(&k.path).map_err(|source| BuildError::Read {
                what: "kernel",
                path: k.path.clone(),
                source,
            })?,
            spec.boot.initrd.is_some(),
            spec.boot.cmdline.clone(),
        )),
        (None, None) => None,
    };
    if let Some((what, kernel, initrd, cmdline)) = payload {
        let fw_err = |source| BuildError::Firmware {
            path: what.clone().into(),
            source,
        };
        let dev = fw_cfg.ok_or(BuildError::NoFwCfg)?;
        let low_top = layout::low_ram_top(ram);
        let p = firmware::prepare_payload(vm.memory(), &kernel, initrd, &cmdline, low_top)
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
            })?;
    }
    Ok(BootCpu {
        entry: fw.entry,
        msrs: fw.msrs,
    })
}

/// The probe's options: where to power off, how many CPUs to expect, and the user's.
pub fn probe_cmdline(spec: &MachineSpec, extra: &str) -> String {
    let mut c = format!("cpus={}", spec.cpus.count());
    if let Some(pm) = spec.devices_of("pm").next() {
        if let (Some(io), DeviceKind::Pm { s5_typ }) = (pm.io, &pm.kind) {
            c += &format!(" pm={:#x} s5={s5_typ}", io as u32 + 4);
        }
    }
    // virtio-mmio windows: the first and how many 0x200-byte slots to scan.
    let bases: Vec<u64> = (spec.devices.iter())
        .filter(|d| matches!(d.kind, DeviceKind::Disk { .. } | DeviceKind::Nic { .. }))
        .filter_map(|d| d.mmio.map(|m| m.0))
        .collect();
    if let (Some(lo), Some(hi)) = (bases.iter().min(), bases.iter().max()) {
        c += &format!(
            " virtio_mmio={lo:#x} virtio_mmio_n={}",
            (hi - lo) / 0x200 + 1
        );
    }
    if !extra.is_empty() {
        c.push(' ');
        c.push_str(extra);
    }
    c
}

/// Reserved ranges the guest must not use as RAM beyond the standard ones.
fn extra_e820(spec: &MachineSpec) -> Vec<E820Entry> {
    let mut v = Vec::new();
    if spec.board == crate::board::BoardKind::Q35 {
        v.push(E820Entry {
            addr: 0xb000_0000,
            size: 0x1000_0000,
            kind: E820Type::Reserved,
        });
    }
    v
}

fn mp_config(spec: &MachineSpec, apic_ids: &[u32]) -> MpConfig {
    let pci = spec.board.board().pci.as_ref().map(|_| {
        spec.devices
            .iter()
            .filter_map(|d| d.pci.as_ref())
            .filter(|p| p.bus_number == 0)
            .map(|p| PciIntx {
                bus: 0,
                device: p.addr.slot,
                pin: p.pin - 1,
                ioapic_pin: p.gsi as u8,
            })
            .collect()
    });
    let ioapic_id = apic_ids.iter().max().map_or(1, |m| (m + 1).min(254)) as u8;
    MpConfig {
        apic_ids: apic_ids.to_vec(),
        ioapic_id,
        pci,
        irq0_override: true,
    }
}
