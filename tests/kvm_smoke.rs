//! End-to-end checks of the KVM side with tiny hand-assembled guests. Needs /dev/kvm:
//! when it is missing every test prints "skipped: /dev/kvm not available" and passes,
//! except under `CI=true`, where it fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_fpu, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED};
use vm_memory::{Bytes, GuestAddress};
use vmrun::arch::x86_64::cpuid::{vcpu_cpuid, CpuTopology};
use vmrun::vmm::event_loop;
use vmrun::vmm::exit::Buses;
use vmrun::vmm::kvm::Kvm;
use vmrun::vmm::vcpu::{self, Vcpu};
use vmrun::vmm::vm::Vm;
use vmrun::vmm::ExitReason;

mod common;
mod kvm_util;
use kvm_util::*;

/// Real mode: "A", "B", the recorder's read value, an unmapped port's value, then
/// a write to the poweroff device (and a HLT that must not be reached as poweroff).
#[rustfmt::skip]
const REAL_MODE_GUEST: &[u8] = &[
    0xba, 0xf8, 0x03,       // mov dx, 0x3f8
    0xb0, b'A', 0xee,       // mov al, 'A'; out dx, al
    0xb0, b'B', 0xee,       // mov al, 'B'; out dx, al
    0xec, 0xee,             // in al, dx (0x5a); out dx, al
    0xba, 0x10, 0x05,       // mov dx, 0x510 (nothing there)
    0xec,                   // in al, dx  -> 0xff
    0xba, 0xf8, 0x03,       // mov dx, 0x3f8
    0xee,                   // out dx, al
    0xba, 0x04, 0x06,       // mov dx, 0x604
    0xee,                   // out dx, al -> poweroff
    0xf4, 0xeb, 0xfd,       // hlt; jmp hlt
];

#[test]
fn real_mode_guest_writes_and_powers_off() {
    let Some(kvm) = kvm_or_skip() else { return };
    let t0 = Instant::now();
    let (_vm, vcpus) = build(&kvm, 1, REAL_MODE_GUEST);
    real_mode_at(&vcpus[0], CODE);
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let running = vcpu::start(vcpus, Arc::new(buses_with(rec.clone()))).unwrap();
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(20)), || {});
    let took = t0.elapsed();
    println!("VM + 1 vCPU + tiny real-mode guest to poweroff: {took:?}");
    assert_eq!(reason, ExitReason::Poweroff);
    assert_eq!(reason.exit_code(), 0);
    assert_eq!(rec.lock().unwrap().0, b"AB\x5a\xff");
}

#[test]
fn time_create_vm_and_run_tiny_guest() {
    // 32-bit: out to the poweroff port at once.
    const GUEST: &[u8] = &[0x66, 0xba, 0x04, 0x06, 0xee, 0xf4];
    if kvm_or_skip().is_none() {
        return;
    }
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let kvm = Kvm::open().unwrap();
        let (_vm, vcpus) = build(&kvm, 1, GUEST);
        protected_mode_at(&vcpus[0], CODE);
        let running = vcpu::start(vcpus, Arc::new(buses_with(Default::default()))).unwrap();
        let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(20)), || {});
        assert_eq!(reason, ExitReason::Poweroff);
        samples.push(t0.elapsed());
    }
    samples.sort();
    println!(
        "open /dev/kvm + VM + 1 vCPU + run to poweroff (32-bit guest): min {:?} median {:?}",
        samples[0], samples[2]
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn guest_ram_is_not_touched() {
    const GUEST: &[u8] = &[0x66, 0xba, 0x04, 0x06, 0xee, 0xf4];
    let Some(kvm) = kvm_or_skip() else { return };
    let before = rss_kib();
    let (vm, vcpus) = build_with_ram(&kvm, 1, GUEST, 128 << 20);
    protected_mode_at(&vcpus[0], CODE);
    let running = vcpu::start(vcpus, Arc::new(buses_with(Default::default()))).unwrap();
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(20)), || {});
    assert_eq!(reason, ExitReason::Poweroff);
    let after = rss_kib();
    println!(
        "RSS: {before} KiB before, {after} KiB after building and running a 128 MiB guest \
         (growth {} KiB; other tests running in parallel add noise)",
        after as i64 - before as i64
    );
    drop(vm);
}

#[test]
fn triple_fault_is_reported() {
    let Some(kvm) = kvm_or_skip() else { return };
    // ud2 with an empty IDT: #UD -> #GP -> #DF -> shutdown.
    let (_vm, vcpus) = build(&kvm, 1, &[0x0f, 0x0b]);
    protected_mode_at(&vcpus[0], CODE);
    let running = vcpu::start(vcpus, Arc::new(Buses::default())).unwrap();
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(20)), || {});
    assert_eq!(reason, ExitReason::TripleFault);
    assert_eq!(reason.exit_code(), 4);
}

#[test]
fn smp_vcpus_are_named_and_stop_on_timeout() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (_vm, vcpus) = build(&kvm, 4, &[0xeb, 0xfe]); // jmp $
    protected_mode_at(&vcpus[0], CODE);
    assert_eq!(vcpus[0].mp_state().unwrap(), KVM_MP_STATE_RUNNABLE);
    for ap in &vcpus[1..] {
        assert_eq!(ap.mp_state().unwrap(), KVM_MP_STATE_UNINITIALIZED);
    }
    let running = vcpu::start(vcpus, Arc::new(Buses::default())).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Other tests run vCPUs in this process too (at most 2 each): look for ours.
    let names = vcpu_thread_names();
    for n in ["vcpu 0", "vcpu 1", "vcpu 2", "vcpu 3"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    let t0 = Instant::now();
    let restored = std::cell::Cell::new(false);
    let reason = event_loop::run(
        running,
        Vec::new(),
        Some(Duration::from_millis(200)),
        || restored.set(true),
    );
    let took = t0.elapsed();
    assert_eq!(reason, ExitReason::Timeout);
    assert_eq!(reason.exit_code(), 124);
    assert!(restored.get());
    println!(
        "200 ms timeout with a spinning BSP and 3 waiting APs: stopped and joined after {took:?}"
    );
    let names = vcpu_thread_names();
    assert!(
        !names.iter().any(|x| x == "vcpu 2" || x == "vcpu 3"),
        "{names:?}"
    );
}

#[test]
fn sigterm_stops_the_run() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (_vm, vcpus) = build(&kvm, 2, &[0xeb, 0xfe]);
    protected_mode_at(&vcpus[0], CODE);
    let running = vcpu::start(vcpus, Arc::new(Buses::default())).unwrap();
    // SAFETY: plain syscalls on our own process/thread ids.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        // Aimed at the thread running the loop (which has SIGTERM blocked and
        // takes it from its signalfd), not the whole test process.
        // SAFETY: tgkill on a live thread of this process.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGTERM) };
    });
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(20)), || {});
    killer.join().unwrap();
    assert_eq!(reason, ExitReason::Signal(libc::SIGTERM));
    assert_eq!(reason.exit_code(), 143);
}

#[test]
fn input_sources_are_fed() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (_vm, vcpus) = build(&kvm, 1, &[0xeb, 0xfe]);
    protected_mode_at(&vcpus[0], CODE);
    let running = vcpu::start(vcpus, Arc::new(Buses::default())).unwrap();
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a 2-int array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: writing 3 bytes from a static buffer to the pipe we just made.
    assert_eq!(
        unsafe { libc::write(fds[1], b"hi\n".as_ptr().cast(), 3) },
        3
    );
    // SAFETY: closing our write end so the reader sees EOF.
    unsafe { libc::close(fds[1]) };
    let got = Arc::new(Mutex::new(Vec::new()));
    let (rfd, sink) = (fds[0], got.clone());
    let source = event_loop::InputSource {
        fd: rfd,
        on_readable: Box::new(move || {
            let mut buf = [0u8; 16];
            // SAFETY: reading into a local buffer from our pipe.
            let n = unsafe { libc::read(rfd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return event_loop::Input::Closed;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n as usize]);
            event_loop::Input::Open
        }),
        space: None,
    };
    let reason = event_loop::run(
        running,
        vec![source],
        Some(Duration::from_millis(200)),
        || {},
    );
    // SAFETY: closing the read end we own.
    unsafe { libc::close(rfd) };
    assert_eq!(reason, ExitReason::Timeout);
    assert_eq!(&*got.lock().unwrap(), b"hi\n");
}

/// Loop: `N` x `out 0x80, al`, then poweroff (same bytes in 32- and 64-bit mode).
fn pio_loop_guest(n: u32) -> Vec<u8> {
    let mut g = vec![0xb9];
    g.extend_from_slice(&n.to_le_bytes()); // mov ecx, n
    g.extend_from_slice(&[0x66, 0xba, 0x80, 0x00]); // mov dx, 0x80
    g.extend_from_slice(&[0xee, 0xff, 0xc9, 0x75, 0xfb]); // 1: out dx, al; dec ecx; jnz 1b
    g.extend_from_slice(&[0x66, 0xba, 0x04, 0x06, 0xee, 0xf4]); // mov dx, 0x604; out; hlt
    g
}

/// 64-bit long mode with identity-mapped 2 MiB pages over the first 1 GiB.
fn long_mode_at(vm: &Vm, v: &Vcpu, ip: u64) {
    let (pml4, pdpt, pd) = (0x2000u64, 0x3000u64, 0x4000u64);
    let mem = vm.memory();
    mem.write_obj(pdpt | 3, GuestAddress(pml4)).unwrap();
    mem.write_obj(pd | 3, GuestAddress(pdpt)).unwrap();
    for i in 0..512u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(pd + i * 8))
            .unwrap();
    }
    protected_mode_at(v, ip);
    let mut s = v.fd().get_sregs().unwrap();
    s.cs.l = 1;
    s.cs.db = 0;
    s.cr3 = pml4;
    s.cr4 = 1 << 5; // PAE
    s.cr0 = 0x8000_0011; // PG | ET | PE
    s.efer = (1 << 8) | (1 << 10); // LME | LMA
    let regs = v.fd().get_regs().unwrap();
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

fn bare_pio_run(kvm: &Kvm, n: u32) -> Duration {
    let (vm, mut vcpus) = build(kvm, 1, &pio_loop_guest(n));
    long_mode_at(&vm, &vcpus[0], CODE);
    let mut v = vcpus.pop().unwrap();
    let t0 = Instant::now();
    let mut exits = 0u32;
    loop {
        match vcpu_run_raw(&mut v) {
            Some(0x604) => break,
            Some(_) => exits += 1,
            None => panic!("unexpected exit"),
        }
    }
    let took = t0.elapsed();
    assert_eq!(exits, n);
    took
}

fn vmrun_pio_run(kvm: &Kvm, n: u32) -> Duration {
    let (vm, vcpus) = build(kvm, 1, &pio_loop_guest(n));
    long_mode_at(&vm, &vcpus[0], CODE);
    let t0 = Instant::now();
    let running = vcpu::start(vcpus, Arc::new(buses_with(Default::default()))).unwrap();
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(60)), || {});
    let took = t0.elapsed();
    assert_eq!(reason, ExitReason::Poweroff);
    took
}

#[test]
fn pio_exit_cost_vs_bare_loop() {
    const N: u32 = 50_000;
    let Some(kvm) = kvm_or_skip() else { return };
    let (mut bare, mut ours) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        bare = bare.min(bare_pio_run(&kvm, N));
        ours = ours.min(vmrun_pio_run(&kvm, N));
    }
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(N) / 1000.0;
    println!(
        "PIO exit (64-bit guest, best of 3 x {N}): bare KVM loop {:.3} us, vmrun {:.3} us per exit \
         (difference {:.3} us, includes thread start and join)",
        per(bare),
        per(ours),
        per(ours) - per(bare)
    );
}

/// One KVM_RUN; the port of an IoOut exit.
fn vcpu_run_raw(v: &mut Vcpu) -> Option<u16> {
    match v.fd_mut().run() {
        Ok(kvm_ioctls::VcpuExit::IoOut(port, _)) => Some(port),
        _ => None,
    }
}

/// Collects what the guest writes to the UART.
#[derive(Clone, Default)]
struct SharedOut(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Boots the probe (PVH) with 2 vCPUs through the VM/vCPU API and the boot module, a
/// 16550 on COM1 (IRQ 4 through KVM_IRQ_LINE) and a power-off sink at 0x604.
#[test]
fn probe_boots_with_two_vcpus() {
    use vmrun::arch::x86_64::layout::{RamRegion, KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};
    use vmrun::arch::x86_64::mptable::{write_mptable, MpConfig};
    use vmrun::arch::x86_64::regs::MsrConfig;
    use vmrun::boot::linux::{setup, BootInput};
    use vmrun::devices::serial::Serial;

    let Some(kvm) = kvm_or_skip() else { return };
    const CPUS: u32 = 2;
    let ram = [RamRegion {
        base: 0,
        size: 128 << 20,
    }];
    let mut vm = Vm::new(&kvm).unwrap();
    vm.set_tss_address(KVM_TSS_ADDR, KVM_IDENTITY_MAP_ADDR)
        .unwrap();
    vm.add_ram(&ram.iter().map(|r| (r.base, r.size)).collect::<Vec<_>>())
        .unwrap();
    vm.create_irqchip().unwrap();
    vm.create_pit().unwrap();
    let boot = setup(
        vm.memory(),
        &BootInput {
            kernel: vmrun::boot::probe::PROBE_ELF,
            initrd: None,
            cmdline: "cpus=2 pm=0x604 timerms=20",
            ram: &ram,
            extra_e820: &[],
            rsdp: None,
            msr: MsrConfig {
                mmio_hole_start: None,
                phys_bits: 36,
            },
        },
    )
    .unwrap();
    let topo = CpuTopology {
        sockets: 1,
        cores: CPUS,
        threads: 1,
    };
    write_mptable(
        vm.memory(),
        &MpConfig {
            apic_ids: (0..CPUS).map(|i| topo.apic_id(i)).collect(),
            ioapic_id: CPUS as u8,
            pci: None,
            irq0_override: true,
        },
    )
    .unwrap();
    let supported = kvm.supported_cpuid().unwrap();
    let vcpus: Vec<Vcpu> = (0..CPUS)
        .map(|i| {
            let v = Vcpu::new(&vm, i).unwrap();
            v.set_cpuid(&vcpu_cpuid(&supported, &topo, i).unwrap())
                .unwrap();
            v.set_msrs(&boot.msrs).unwrap();
            v.setup_lapic().unwrap();
            if i == 0 {
                let sregs = boot.sregs(&v.fd().get_sregs().unwrap());
                v.set_boot_state(&boot.regs(), &sregs, &boot.fpu()).unwrap();
            }
            v
        })
        .collect();

    let out = SharedOut::default();
    let serial = Serial::new(Box::new(out.clone()), Arc::new(vm.irq_line(4)));
    let mut buses = Buses::default();
    buses
        .pio
        .insert(Arc::new(Mutex::new(serial)), 0x3f8, 8)
        .unwrap();
    buses
        .pio
        .insert(Arc::new(Mutex::new(PowerOff)), POWEROFF_PORT, 2)
        .unwrap();
    buses
        .pio
        .insert(Arc::new(Mutex::new(Sink)), 0x80, 1)
        .unwrap();

    let t0 = Instant::now();
    let running = vcpu::start(vcpus, Arc::new(buses)).unwrap();
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(30)), || {});
    let text = String::from_utf8_lossy(&out.0.lock().unwrap()).replace('\r', "");
    println!(
        "probe ({CPUS} vCPUs) ended after {:?} with {reason}:\n{text}",
        t0.elapsed()
    );
    assert!(text.contains("PROBE hello"), "{text}");
    assert!(text.contains("PROBE cpus count=2 expected=2 ok"), "{text}");
    assert!(text.contains("PROBE done"), "{text}");
    assert_eq!(reason, ExitReason::Poweroff);
}

/// A ROM at 4 GiB - 4 KiB: the guest reads it as memory, its write exits as MMIO (and
/// lands on the MMIO bus) and leaves the ROM unchanged.
#[test]
fn rom_is_read_only() {
    #[rustfmt::skip]
    const GUEST: &[u8] = &[
        0xa1, 0x00, 0xf0, 0xff, 0xff,                   // mov eax, [0xfffff000]
        0x66, 0xba, 0xf8, 0x03,                         // mov dx, 0x3f8
        0xee,                                           // out dx, al
        0xc6, 0x05, 0x00, 0xf0, 0xff, 0xff, 0x99,       // mov byte [0xfffff000], 0x99
        0xa1, 0x00, 0xf0, 0xff, 0xff,                   // mov eax, [0xfffff000]
        0xee,                                           // out dx, al
        0x66, 0xba, 0x04, 0x06, 0xee, 0xf4,             // poweroff
    ];
    let Some(kvm) = kvm_or_skip() else { return };
    if !common::require(
        kvm.has_readonly_mem(),
        "this host's KVM lacks KVM_CAP_READONLY_MEM",
    ) {
        return;
    }
    let (mut vm, vcpus) = build(&kvm, 1, GUEST);
    assert!(
        vm.add_rom(0x1000, &[1]).is_err(),
        "a ROM over RAM must be refused"
    );
    assert!(
        vm.set_tss_address(0x1000, 0xfeff_c000).is_err(),
        "a TSS in RAM must be refused"
    );
    vm.add_rom(0xffff_f000, &[0xea, 0x5b, 0xe0]).unwrap();
    protected_mode_at(&vcpus[0], CODE);
    let pio = Arc::new(Mutex::new(Recorder::default()));
    let mmio = Arc::new(Mutex::new(Recorder::default()));
    let mut buses = buses_with(pio.clone());
    buses
        .mmio
        .insert(mmio.clone(), 0xffff_f000, 0x1000)
        .unwrap();
    let running = vcpu::start(vcpus, Arc::new(buses)).unwrap();
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(20)), || {});
    assert_eq!(reason, ExitReason::Poweroff);
    assert_eq!(pio.lock().unwrap().0, [0xea, 0xea]);
    assert_eq!(mmio.lock().unwrap().0, [0x99]);
}

/// A source whose device fills up waits for the device's waker, then resumes; a quit
/// from the console ends the run.
#[test]
fn full_device_waits_for_waker_and_quit_ends_run() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (_vm, vcpus) = build(&kvm, 1, &[0xeb, 0xfe]);
    protected_mode_at(&vcpus[0], CODE);
    let running = vcpu::start(vcpus, Arc::new(Buses::default())).unwrap();
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a 2-int array; write 5 bytes from a static buffer.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        assert_eq!(libc::write(fds[1], b"abcdq".as_ptr().cast(), 5), 5);
    }
    // The "device": a 2-byte FIFO the "guest" thread drains, waking the loop.
    let fifo = Arc::new(Mutex::new(Vec::<u8>::new()));
    let drained = Arc::new(Mutex::new(Vec::<u8>::new()));
    let waker = event_loop::Waker::new().unwrap();
    let guest = {
        let (fifo, drained, waker) = (fifo.clone(), drained.clone(), waker.clone());
        std::thread::spawn(move || {
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(10));
                let mut f = fifo.lock().unwrap();
                if f.len() == 2 {
                    drained.lock().unwrap().append(&mut f);
                    waker.wake();
                }
            }
        })
    };
    let rfd = fds[0];
    let calls = Arc::new(Mutex::new(0u32));
    let calls2 = calls.clone();
    let source = event_loop::InputSource {
        fd: rfd,
        on_readable: Box::new(move || {
            *calls2.lock().unwrap() += 1;
            let mut f = fifo.lock().unwrap();
            if f.len() >= 2 {
                return event_loop::Input::Full;
            }
            let mut b = [0u8; 1];
            // SAFETY: one-byte read into a local from our pipe.
            if unsafe { libc::read(rfd, b.as_mut_ptr().cast(), 1) } != 1 {
                return event_loop::Input::Closed;
            }
            if b[0] == b'q' {
                return event_loop::Input::Quit;
            }
            f.push(b[0]);
            event_loop::Input::Open
        }),
        space: Some(waker),
    };
    let reason = event_loop::run(running, vec![source], Some(Duration::from_secs(5)), || {});
    guest.join().unwrap();
    // SAFETY: closing the pipe fds we own.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    assert_eq!(reason, ExitReason::Quit);
    assert_eq!(reason.exit_code(), 130);
    assert_eq!(drained.lock().unwrap().as_slice(), b"abcd");
    // Waiting on the waker, not spinning on the readable pipe.
    assert!(
        *calls.lock().unwrap() < 20,
        "handler called {} times",
        calls.lock().unwrap()
    );
}

/// `rep outsb`: KVM hands over several 1-byte accesses in one exit; the device must see
/// each of them, in order.
#[rustfmt::skip]
const REP_OUTS_GUEST: &[u8] = &[
    0xbe, 0x13, 0x10,       // mov si, 0x1013 (the message below)
    0xb9, 0x05, 0x00,       // mov cx, 5
    0xba, 0xf8, 0x03,       // mov dx, 0x3f8
    0xfc,                   // cld
    0xf3, 0x6e,             // rep outsb
    0xba, 0x04, 0x06,       // mov dx, 0x604
    0xee,                   // out dx, al -> poweroff
    0xf4, 0xeb, 0xfd,       // hlt; jmp hlt
    b'H', b'E', b'L', b'L', b'O',
];

/// Records each write as its own access.
#[derive(Default)]
struct Accesses(Vec<Vec<u8>>);

impl vmrun::devices::BusDevice for Accesses {
    fn read(&mut self, _region: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(
        &mut self,
        _region: usize,
        _offset: u64,
        data: &[u8],
    ) -> Option<vmrun::devices::VmEvent> {
        self.0.push(data.to_vec());
        None
    }
}

#[test]
fn string_io_reaches_the_device_one_access_at_a_time() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (_vm, vcpus) = build(&kvm, 1, REP_OUTS_GUEST);
    real_mode_at(&vcpus[0], CODE);
    let acc = Arc::new(Mutex::new(Accesses::default()));
    let mut buses = buses_with(Arc::new(Mutex::new(Recorder::default())));
    buses.pio = vmrun::vmm::bus::Bus::new();
    buses.pio.insert(acc.clone(), 0x3f8, 8).unwrap();
    buses
        .pio
        .insert(Arc::new(Mutex::new(PowerOff)), POWEROFF_PORT, 2)
        .unwrap();
    let running = vcpu::start(vcpus, Arc::new(buses)).unwrap();
    let reason = event_loop::run(running, Vec::new(), Some(Duration::from_secs(20)), || {});
    assert_eq!(reason, ExitReason::Poweroff);
    let got = acc.lock().unwrap().0.clone();
    assert_eq!(got, [b"H", b"E", b"L", b"L", b"O"].map(|b| b.to_vec()));
}
