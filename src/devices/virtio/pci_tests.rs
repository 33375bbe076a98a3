use std::sync::atomic::AtomicU32;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::backends::disk::DiskImage;
use crate::devices::virtio::blk::{Blk, S_OK, T_OUT};
use crate::devices::virtio::testutil::{memory, Ring};
use crate::devices::virtio::{F_VERSION_1, STATUS_NEEDS_RESET};

#[derive(Default)]
struct Msis(Mutex<Vec<(u64, u32)>>);
impl MsiSender for Msis {
    fn send_msi(&self, address: u64, data: u32) -> bool {
        self.0.lock().unwrap().push((address, data));
        true
    }
}

#[derive(Default)]
struct Level(AtomicU32);
impl IrqLine for Level {
    fn set_level(&self, high: bool) {
        self.0.store(high as u32, Ordering::Relaxed);
    }
}

fn w(d: &mut VirtioPci, off: u64, v: u64, n: usize) {
    d.bar_write(0, off, &v.to_le_bytes()[..n]);
}
fn r(d: &mut VirtioPci, off: u64, n: usize) -> u64 {
    let mut b = [0u8; 8];
    d.bar_read(0, off, &mut b[..n]);
    u64::from_le_bytes(b)
}

fn setup(
    name: &str,
) -> (
    VirtioPci,
    GuestMemoryMmap,
    Arc<Msis>,
    Arc<Level>,
    std::path::PathBuf,
) {
    let p = std::env::temp_dir().join(format!("vmrun-vpci-{}-{name}", std::process::id()));
    std::fs::write(&p, vec![0u8; 8192]).unwrap();
    let mem = memory(1 << 20);
    let msis = Arc::new(Msis::default());
    let blk = Blk::new(
        std::sync::Arc::new(DiskImage::open(&p, false, "raw").unwrap()),
        "pci",
    );
    let mut d = VirtioPci::new(Box::new(blk), mem.clone(), 0x018000, msis.clone());
    let line = Arc::new(Level::default());
    d.set_intx_line(line.clone());
    (d, mem, msis, line, p)
}

/// The driver's init sequence through the common configuration structure.
fn init(d: &mut VirtioPci, ring: &Ring, qvec: u16) -> u32 {
    w(d, 0x14, 0, 1);
    w(d, 0x14, 3, 1);
    w(d, 0x08, 1, 4);
    w(d, 0x0c, 1, 4); // VERSION_1
    w(d, 0x14, 0xb, 1);
    w(d, 0x16, 0, 2);
    w(d, 0x18, ring.size as u64, 2);
    w(d, 0x1a, qvec as u64, 2);
    w(d, 0x20, ring.desc, 8);
    w(d, 0x28, ring.avail, 4);
    w(d, 0x2c, 0, 4);
    w(d, 0x30, ring.used, 8);
    w(d, 0x1c, 1, 2);
    w(d, 0x14, 0xf, 1);
    r(d, 0x14, 1) as u32
}

fn write_req(mem: &GuestMemoryMmap, ring: &mut Ring) {
    mem.write_obj(T_OUT, GuestAddress(0x10000)).unwrap();
    mem.write_obj(1u64, GuestAddress(0x10008)).unwrap();
    mem.write_slice(&[0x77; 512], GuestAddress(0x11000))
        .unwrap();
    ring.push(
        mem,
        &[
            (0x10000, 16, false),
            (0x11000, 512, false),
            (0x12000, 1, true),
        ],
    );
}

#[test]
fn identity_and_capabilities() {
    let (mut d, _, _, _, p) = setup("ids");
    let mut b = [0u8; 4];
    d.config_read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1042_1af4);
    // Walk the capabilities: MSI-X, then common/ISR/device/notify vendor caps.
    let mut kinds = Vec::new();
    let mut off = d.config().u8(0x34) as u16;
    while off != 0 {
        let id = d.config().u8(off);
        kinds.push(if id == 9 { d.config().u8(off + 3) } else { id });
        off = d.config().u8(off + 1) as u16;
    }
    assert_eq!(kinds, vec![0x11, 1, 3, 4, 2]);
    assert_eq!(r(&mut d, 0x12, 2), 1); // num_queues
    assert_eq!(r(&mut d, 0x04, 4) as u32 & (1 << 9), 1 << 9); // F_FLUSH offered
    assert_eq!(r(&mut d, DEVICE_CFG, 8), 16); // capacity
    std::fs::remove_file(p).unwrap();
}

#[test]
fn intx_and_msix() {
    let (mut d, mem, msis, line, p) = setup("irq");
    let mut ring = Ring::new(16, 0x1000);
    assert_eq!(init(&mut d, &ring, 0), 0xf);
    // INTx (MSI-X off): the ISR says "used ring", the line goes up, reading clears.
    write_req(&mem, &mut ring);
    w(&mut d, NOTIFY, 0, 2);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0x12000)).unwrap(), S_OK);
    assert_eq!(std::fs::read(&p).unwrap()[512], 0x77);
    assert_eq!(line.0.load(Ordering::Relaxed), 1);
    let mut st = [0u8; 2];
    d.config_read(6, &mut st);
    assert_ne!(st[0] & 8, 0);
    assert_eq!(r(&mut d, ISR, 1), 1);
    assert_eq!(line.0.load(Ordering::Relaxed), 0);
    assert_eq!(r(&mut d, ISR, 1), 0);

    // MSI-X on: vector 0 for the queue, masked first (pending), then unmasked.
    let cap = d.msix_cap;
    d.config_write(cap + 2, &[0, 0x80]);
    w(&mut d, MSIX_TABLE, 0xfee0_0000, 8);
    w(&mut d, MSIX_TABLE + 8, 0x41, 4);
    write_req(&mem, &mut ring);
    w(&mut d, NOTIFY, 0, 2);
    assert!(msis.0.lock().unwrap().is_empty());
    assert_eq!(r(&mut d, MSIX_PBA, 8), 1);
    w(&mut d, MSIX_TABLE + 12, 0, 4);
    assert_eq!(*msis.0.lock().unwrap(), vec![(0xfee0_0000, 0x41)]);
    assert_eq!(r(&mut d, MSIX_PBA, 8), 0);
    write_req(&mem, &mut ring);
    w(&mut d, NOTIFY, 0, 2);
    assert_eq!(msis.0.lock().unwrap().len(), 2);
    assert_eq!(line.0.load(Ordering::Relaxed), 0);

    // A vector past the table reads back as NO_VECTOR.
    w(&mut d, 0x10, 7, 2);
    assert_eq!(r(&mut d, 0x10, 2), 0xffff);
    // A broken chain: DEVICE_NEEDS_RESET.
    ring.push(&mem, &[(0x10000, 16, false)]);
    w(&mut d, NOTIFY, 0, 2);
    assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
    let _ = F_VERSION_1;
    std::fs::remove_file(p).unwrap();
}

/// 100,000 random config, BAR and MSI-X accesses (with a working queue set up now
/// and then): no panic, no access outside guest memory.
#[test]
fn fuzz_pci_transport() {
    let (mut d, mem, _, _, p) = setup("fuzz");
    let mut s = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut ring = Ring::new(16, 0x1000);
    for _ in 0..100_000 {
        let x = next();
        let n = [1usize, 2, 4, 8][(x >> 8) as usize % 4];
        let v = next();
        match x % 8 {
            0 => {
                ring = Ring::new(16, (next() % 0x100000) & !15);
                init(&mut d, &ring, (next() % 3) as u16);
            }
            1 => d.config_write((next() % 0x110) as u16, &v.to_le_bytes()[..n.min(4)]),
            2 => {
                let mut b = [0u8; 8];
                d.config_read((next() % 0x110) as u16, &mut b[..n.min(4)]);
            }
            3 => w(&mut d, next() % BAR_SIZE, v, n),
            4 => {
                r(&mut d, next() % BAR_SIZE, n);
            }
            5 => write_req(&mem, &mut ring),
            6 => {
                let _ = mem.write_obj(v, GuestAddress(next() % (1 << 20)));
            }
            _ => w(&mut d, NOTIFY + 4 * (next() % 2), 0, 2),
        }
    }
    std::fs::remove_file(p).unwrap();
}
