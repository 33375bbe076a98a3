//! `RunningVcpus::pause` / `resume` with a tiny guest: every vCPU parks outside
//! `KVM_RUN`, no exit is lost (a port read that was pending when the pause came is
//! completed into the guest's register), and the guest goes on after `resume`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmrun::devices::{BusDevice, VmEvent};
use vmrun::vmm::exit::Buses;
use vmrun::vmm::vcpu;

mod common;
mod kvm_util;
use kvm_util::*;

/// Port 0x70 reads a counter; port 0x72 must be written back what 0x70 last gave.
#[derive(Default)]
struct Echo {
    given: u8,
    good: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
}

impl BusDevice for Echo {
    fn read(&mut self, _region: usize, _offset: u64, data: &mut [u8]) {
        self.given = self.given.wrapping_add(1);
        data.fill(self.given);
    }
    fn write(&mut self, _region: usize, _offset: u64, data: &[u8]) -> Option<VmEvent> {
        let n = if data.first() == Some(&self.given) {
            &self.good
        } else {
            &self.bad
        };
        n.fetch_add(1, Ordering::SeqCst);
        None
    }
}

/// CPU time (user + system, in clock ticks) of thread `tid` of this process.
fn cpu_ticks(tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[rustfmt::skip]
const GUEST: &[u8] = &[
    0xe4, 0x70, // in al, 0x70
    0xe6, 0x72, // out 0x72, al
    0xeb, 0xfa, // jmp back
];

#[test]
fn pause_parks_every_vcpu_and_resume_goes_on() {
    let Some(kvm) = kvm_or_skip() else { return };
    // Two vCPUs: the BSP loops, the AP waits for a SIPI that never comes (it parks
    // from the wait-for-SIPI state).
    let (_vm, vcpus) = build(&kvm, 2, GUEST);
    real_mode_at(&vcpus[0], CODE);
    let echo = Echo::default();
    let (good, bad) = (echo.good.clone(), echo.bad.clone());
    let mut buses = Buses::default();
    buses
        .pio
        .insert(Arc::new(Mutex::new(echo)), 0x70, 4)
        .unwrap();
    let running = vcpu::start(vcpus, Arc::new(buses)).unwrap();
    let wait_for = |n: u64| {
        for _ in 0..2000 {
            if good.load(Ordering::SeqCst) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the guest did not get to {n} round trips");
    };
    wait_for(100);
    let tids = running.thread_ids();
    assert!(tids.iter().all(|&t| t > 0), "{tids:?}");
    for round in 0..5 {
        running.pause();
        assert!(running.is_paused());
        assert_eq!(running.parked(), 2, "round {round}");
        let at = good.load(Ordering::SeqCst);
        let cpu0: Vec<u64> = tids.iter().map(|&t| cpu_ticks(t)).collect();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            good.load(Ordering::SeqCst),
            at,
            "the guest ran while paused"
        );
        let cpu1: Vec<u64> = tids.iter().map(|&t| cpu_ticks(t)).collect();
        for (a, b) in cpu0.iter().zip(&cpu1) {
            // A parked vCPU sleeps: at most a tick of rounding in 300 ms.
            assert!(b - a <= 1, "a parked vCPU used CPU: {cpu0:?} -> {cpu1:?}");
        }
        running.pause(); // a second pause changes nothing
        running.resume();
        wait_for(at + 50);
        assert!(!running.is_paused());
    }
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "a port read was lost across a pause"
    );
    // Stop while paused: the parked threads leave too.
    running.pause();
    let reason = vmrun::vmm::event_loop::run(running, Vec::new(), Some(Duration::ZERO), || {});
    assert_eq!(reason, vmrun::vmm::ExitReason::Timeout);
}
