use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::testutil::{memory, mmio_init, w32, Ring};
use crate::devices::virtio::{F_VERSION_1, STATUS_NEEDS_RESET};
use crate::devices::{BusDevice, IrqLine};

fn image(name: &str, len: usize) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let p = dir.join(format!("vmrun-blk-{}-{name}", std::process::id()));
    std::fs::write(&p, vec![0u8; len]).unwrap();
    p
}

#[derive(Default)]
struct Count(AtomicU32);
impl IrqLine for Count {
    fn set_level(&self, high: bool) {
        if high {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

const HDR: u64 = 0x10000;
const DATA: u64 = 0x11000;
const STATUS: u64 = 0x18000;

fn request(mem: &GuestMemoryMmap, rtype: u32, sector: u64) {
    mem.write_obj(rtype, GuestAddress(HDR)).unwrap();
    mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
    mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
}

fn status(mem: &GuestMemoryMmap) -> u8 {
    mem.read_obj(GuestAddress(STATUS)).unwrap()
}

#[test]
fn read_write_flush_id() {
    let p = image("rw", 8 * 512);
    let mem = memory(1 << 20);
    let blk = Blk::new(
        std::sync::Arc::new(DiskImage::open(&p, false, "raw").unwrap()),
        "disk0-serial",
    );
    let irq = Arc::new(Count::default());
    let mut t = MmioTransport::new(Box::new(blk), mem.clone(), irq.clone());
    let mut cfg = [0u8; 8];
    t.read(0, reg::CONFIG, &mut cfg);
    assert_eq!(u64::from_le_bytes(cfg), 8);
    let mut r = Ring::new(16, 0x1000);
    assert_eq!(
        mmio_init(&mut t, F_VERSION_1 | F_FLUSH, &[Ring::new(16, 0x1000)]),
        0xf
    );

    // Write sector 2.
    mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    request(&mem, T_OUT, 2);
    r.push(
        &mem,
        &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)],
    );
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(status(&mem), S_OK);
    assert_eq!(r.take_used(&mem), vec![(0, 1)]);
    assert_eq!(irq.0.load(Ordering::Relaxed), 1);
    let f = std::fs::read(&p).unwrap();
    assert!(f[1024..1536].iter().all(|&b| b == 0xab));
    assert!(f[..1024].iter().all(|&b| b == 0));

    // Read it back, split over two descriptors, through an indirect table.
    request(&mem, T_IN, 2);
    r.push_indirect(
        &mem,
        0x20000,
        &[
            (HDR, 16, false),
            (DATA + 0x1000, 256, true),
            (DATA + 0x2000, 256, true),
            (STATUS, 1, true),
        ],
    );
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(status(&mem), S_OK);
    assert_eq!(r.take_used(&mem)[0].1, 513);
    let mut b = [0u8; 256];
    mem.read_slice(&mut b, GuestAddress(DATA + 0x2000)).unwrap();
    assert_eq!(b, [0xab; 256]);

    // Past the end, flush, get-id, unknown.
    request(&mem, T_IN, 8);
    r.push(
        &mem,
        &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)],
    );
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(status(&mem), S_IOERR);
    request(&mem, T_FLUSH, 0);
    r.push(&mem, &[(HDR, 16, false), (STATUS, 1, true)]);
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(status(&mem), S_OK);
    request(&mem, T_GET_ID, 0);
    r.push(
        &mem,
        &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)],
    );
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(status(&mem), S_OK);
    let mut id = [0u8; 20];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..12], b"disk0-serial");
    request(&mem, 99, 0);
    r.push(&mem, &[(HDR, 16, false), (STATUS, 1, true)]);
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(status(&mem), S_UNSUPP);

    // No status byte: the queue is broken.
    r.push(&mem, &[(HDR, 16, false)]);
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_ne!(t.status() & STATUS_NEEDS_RESET, 0);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn readonly_rejects_writes() {
    let p = image("ro", 4 * 512);
    let mem = memory(1 << 20);
    let blk = Blk::new(
        std::sync::Arc::new(DiskImage::open(&p, true, "raw").unwrap()),
        "ro",
    );
    assert_ne!(blk.features() & F_RO, 0);
    let mut t = MmioTransport::new(Box::new(blk), mem.clone(), Arc::new(crate::devices::NoIrq));
    let mut r = Ring::new(8, 0x1000);
    mmio_init(&mut t, F_VERSION_1 | F_RO, &[Ring::new(8, 0x1000)]);
    mem.write_slice(&[1; 512], GuestAddress(DATA)).unwrap();
    request(&mem, T_OUT, 0);
    r.push(
        &mem,
        &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)],
    );
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(status(&mem), S_IOERR);
    assert!(std::fs::read(&p).unwrap().iter().all(|&b| b == 0));
    std::fs::remove_file(&p).unwrap();
}

#[path = "blk_fuzz.rs"]
mod fuzz;
