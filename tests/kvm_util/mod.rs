//! Shared pieces of the KVM smoke tests: building a VM with hand-assembled guest code
//! in real, protected or long mode, and recording devices for the buses.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};
use vmrun::arch::x86_64::cpuid::{vcpu_cpuid, CpuTopology};
use vmrun::devices::{BusDevice, VmEvent};
use vmrun::vmm::exit::Buses;
use vmrun::vmm::kvm::Kvm;
use vmrun::vmm::vcpu::Vcpu;
use vmrun::vmm::vm::Vm;

pub const CODE: u64 = 0x1000;
pub const POWEROFF_PORT: u64 = 0x604;

pub fn kvm_or_skip() -> Option<Kvm> {
    match Kvm::open() {
        Ok(k) => Some(k),
        Err(e) => {
            crate::common::require(false, &format!("/dev/kvm not available ({e})"));
            None
        }
    }
}

/// Records every byte written to it; reads return 0x5A.
#[derive(Default)]
pub struct Recorder(pub Vec<u8>);
impl BusDevice for Recorder {
    fn read(&mut self, _region: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0x5a);
    }
    fn write(&mut self, _region: usize, _offset: u64, data: &[u8]) -> Option<VmEvent> {
        self.0.extend_from_slice(data);
        None
    }
}

/// Any write powers the machine off.
pub struct PowerOff;
impl BusDevice for PowerOff {
    fn read(&mut self, _region: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _region: usize, _offset: u64, _data: &[u8]) -> Option<VmEvent> {
        Some(VmEvent::Poweroff)
    }
}

/// Ignores everything (a POST-port-like sink for the exit-cost loop).
pub struct Sink;
impl BusDevice for Sink {
    fn read(&mut self, _region: usize, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _region: usize, _offset: u64, _data: &[u8]) -> Option<VmEvent> {
        None
    }
}

/// The builder's steps, in order, for a small machine with `cpus` vCPUs.
pub fn build(kvm: &Kvm, cpus: u32, code: &[u8]) -> (Vm, Vec<Vcpu>) {
    build_with_ram(kvm, cpus, code, 2 << 20)
}

pub fn build_with_ram(kvm: &Kvm, cpus: u32, code: &[u8], ram: u64) -> (Vm, Vec<Vcpu>) {
    let mut vm = Vm::new(kvm).unwrap();
    vm.set_tss_address(0xfeff_d000, 0xfeff_c000).unwrap();
    vm.add_ram(&[(0, ram)]).unwrap();
    vm.create_irqchip().unwrap();
    vm.create_pit().unwrap();
    vm.memory().write_slice(code, GuestAddress(CODE)).unwrap();
    let supported = kvm.supported_cpuid().unwrap();
    let topo = CpuTopology {
        sockets: 1,
        cores: cpus,
        threads: 1,
    };
    let vcpus = (0..cpus)
        .map(|i| {
            let v = Vcpu::new(&vm, i).unwrap();
            v.set_cpuid(&vcpu_cpuid(&supported, &topo, i).unwrap())
                .unwrap();
            v.set_msrs(&[]).unwrap();
            v.setup_lapic().unwrap();
            v
        })
        .collect();
    (vm, vcpus)
}

pub fn real_mode_at(v: &Vcpu, ip: u64) {
    let mut s = v.fd().get_sregs().unwrap();
    s.cs.base = 0;
    s.cs.selector = 0;
    let regs = kvm_regs {
        rip: ip,
        rflags: 2,
        ..Default::default()
    };
    v.set_boot_state(
        &regs,
        &s,
        &kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        },
    )
    .unwrap();
}

pub fn flat(type_: u8, selector: u16) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    }
}

/// 32-bit flat protected mode, paging off, an empty IDT (any exception triple-faults).
pub fn protected_mode_at(v: &Vcpu, ip: u64) {
    let cur = v.fd().get_sregs().unwrap();
    let mut s = kvm_sregs {
        apic_base: cur.apic_base,
        ..cur
    };
    s.cs = flat(0xb, 0x8);
    let data = flat(0x3, 0x10);
    (s.ds, s.es, s.fs, s.gs, s.ss) = (data, data, data, data, data);
    s.tr = kvm_segment {
        s: 0,
        type_: 0xb,
        limit: 0x67,
        db: 0,
        g: 0,
        ..flat(0xb, 0x18)
    };
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = 0x11; // PE | ET
    s.cr4 = 0;
    s.efer = 0;
    let regs = kvm_regs {
        rip: ip,
        rflags: 2,
        rsp: 0x8000,
        ..Default::default()
    };
    v.set_boot_state(
        &regs,
        &s,
        &kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        },
    )
    .unwrap();
}

pub fn buses_with(rec: Arc<Mutex<Recorder>>) -> Buses {
    let mut b = Buses::default();
    b.pio.insert(rec, 0x3f8, 8).unwrap();
    b.pio
        .insert(Arc::new(Mutex::new(PowerOff)), POWEROFF_PORT, 2)
        .unwrap();
    b.pio.insert(Arc::new(Mutex::new(Sink)), 0x80, 1).unwrap();
    b
}

pub fn vcpu_thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| s.starts_with("vcpu "))
        .collect();
    names.sort();
    names
}
