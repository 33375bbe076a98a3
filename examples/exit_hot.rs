//! The user-space half of one port-I/O exit, without KVM: `handle_exit` on a fake
//! `outb` to port 0x80 (the POST device) over a microvm-like port map. Run it plain
//! for ns per exit, or under callgrind for instructions per exit:
//!
//! ```text
//! cargo build --release --example exit_hot
//! target/release/examples/exit_hot 5000000
//! valgrind --tool=callgrind target/release/examples/exit_hot 100000
//! ```
//!
//! On the development host (nested KVM) one real exit costs ~17 us; this part ~45 ns.
use std::sync::{Arc, Mutex};

use kvm_ioctls::VcpuExit;
use vmrun::devices::post::Post;
use vmrun::vmm::exit::{handle_exit, Buses};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut b = Buses::default();
    // Stand-ins at the ports the microvm board uses, so the lookup walks a real map.
    for (base, len) in [
        (0x20u64, 2u64),
        (0x40, 4),
        (0x60, 1),
        (0x64, 1),
        (0x70, 2),
        (0xa0, 2),
        (0x2f8, 8),
        (0x3f8, 8),
        (0x402, 1),
        (0x510, 12),
        (0x600, 8),
    ] {
        b.pio
            .insert(Arc::new(Mutex::new(Post::new())), base, len)
            .expect("disjoint ranges");
    }
    let post = Post::new();
    let stats = post.stats();
    b.pio
        .insert(Arc::new(Mutex::new(post)), 0x80, 1)
        .expect("disjoint ranges");
    let t = std::time::Instant::now();
    for i in 0..n {
        let d = [i as u8];
        let exit = VcpuExit::IoOut(0x80, std::hint::black_box(&d));
        let _ = std::hint::black_box(handle_exit(exit, &b));
    }
    let dt = t.elapsed();
    println!(
        "{} exits, {:.1} ns each",
        stats.writes(),
        dt.as_nanos() as f64 / n.max(1) as f64
    );
}
