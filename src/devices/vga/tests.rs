use std::sync::{Arc, Mutex};

use super::*;

use crate::testing::Rng;

fn outb(v: &mut Vga, port: u64, b: u8) {
    v.write(REGION_REGS, port - 0x3b0, &[b]);
}

fn outw_dispi(v: &mut Vga, index: u16, val: u16) {
    v.write(REGION_DISPI, 0, &index.to_le_bytes());
    v.write(REGION_DISPI, 1, &val.to_le_bytes());
}

#[test]
fn text_through_ports_and_window_renders() {
    let mut v = Vga::new(1 << 20).unwrap();
    // Font load as a BIOS does it: plane 2 only, sequential, A0000 map.
    outb(&mut v, 0x3c4, 2);
    outb(&mut v, 0x3c5, 4);
    outb(&mut v, 0x3c4, 4);
    outb(&mut v, 0x3c5, 7);
    outb(&mut v, 0x3ce, 4);
    outb(&mut v, 0x3cf, 2);
    outb(&mut v, 0x3ce, 5);
    outb(&mut v, 0x3cf, 0);
    outb(&mut v, 0x3ce, 6);
    outb(&mut v, 0x3cf, 4);
    for line in 0..16u64 {
        v.write(REGION_WINDOW, b'X' as u64 * 32 + line, &[0xf0]);
    }
    // Back to text: planes 0/1, odd/even, B8000.
    outb(&mut v, 0x3c4, 2);
    outb(&mut v, 0x3c5, 3);
    outb(&mut v, 0x3c4, 4);
    outb(&mut v, 0x3c5, 2);
    outb(&mut v, 0x3ce, 4);
    outb(&mut v, 0x3cf, 0);
    outb(&mut v, 0x3ce, 5);
    outb(&mut v, 0x3cf, 0x10);
    outb(&mut v, 0x3ce, 6);
    outb(&mut v, 0x3cf, 0x0e);
    // Row 1, column 2: 'X' in yellow on blue (a 16-bit store, char + attribute).
    v.write(REGION_WINDOW, 0x18000 + (80 + 2) * 2, &[b'X', 0x1e]);
    let f = v.render();
    assert_eq!((f.width, f.height), (720, 400));
    let (x0, y0) = (2 * 9, 16);
    assert_eq!(f.pixel(x0, y0), Some([0xff, 0xff, 0x55]));
    assert_eq!(f.pixel(x0 + 4, y0), Some([0, 0, 0xaa]));
    assert_eq!(f.pixel(0, 0), Some([0, 0, 0]));
}

#[test]
fn vbe_through_mmio_bar_and_lfb_mapper() {
    struct Rec(Arc<Mutex<Vec<Option<u64>>>>);
    impl LfbMapper for Rec {
        fn map(&mut self, gpa: Option<u64>) {
            self.0.lock().unwrap().push(gpa);
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut v = Vga::new(16 << 20).unwrap();
    v.set_lfb_mapper(Box::new(Rec(log.clone())));
    v.place_lfb(Some(0xfd00_0000));
    v.place_lfb(Some(0xfd00_0000));
    v.place_lfb(None);
    assert_eq!(*log.lock().unwrap(), vec![Some(0xfd00_0000), None]);
    let mut b = [0u8; 2];
    v.mmio_read(0x500, &mut b);
    assert_eq!(u16::from_le_bytes(b), vbe::ID5);
    v.mmio_write(0x502, &320u16.to_le_bytes());
    v.mmio_write(0x504, &200u16.to_le_bytes());
    v.mmio_write(0x506, &32u16.to_le_bytes());
    v.mmio_write(0x508, &(vbe::ENABLED | vbe::LFB_ENABLED).to_le_bytes());
    let mut q = [0u8; 4];
    v.mmio_read(0x600, &mut q);
    assert_eq!(u32::from_le_bytes(q), 8);
    v.vram().set_byte(4 * 10 + 2, 0xff);
    let f = v.render();
    assert_eq!((f.width, f.height), (320, 200));
    assert_eq!(f.pixel(10, 0), Some([0xff, 0, 0]));
    // Banked access through the window sees VRAM linearly.
    outw_dispi(&mut v, vbe::INDEX_BANK, 1);
    v.write(REGION_WINDOW, 4, &[0x77]);
    assert_eq!(v.vram().byte(0x10004), 0x77);
    // The VGA ports through BAR2: 0x3C4 is at 0x414.
    v.mmio_write(0x414, &[2]);
    let mut s = [0u8; 1];
    v.mmio_read(0x414, &mut s);
    assert_eq!(s[0], 2);
}

/// Hostile guest: 100,000 random access sequences over every interface the device
/// has; no panic, VRAM never resized, every render inside the size limit.
#[test]
fn fuzz_random_access_sequences() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut v = Vga::new(1 << 20).unwrap();
    let vram_len = v.vram().len();
    let mut data = [0u8; 8];
    for seq in 0..100_000u32 {
        if seq % 5000 == 0 {
            v = Vga::new(1 << 20).unwrap();
        }
        let steps = 1 + rng.below(12);
        for _ in 0..steps {
            let size = [1usize, 2, 4, 8][rng.below(4) as usize];
            let r = rng.next();
            for (k, b) in data.iter_mut().enumerate() {
                *b = (r >> (k * 8)) as u8;
            }
            let buf = &mut data[..size];
            let write = rng.below(2) == 0;
            match rng.below(6) {
                0 => {
                    let off = rng.below(VGA_IO_LEN);
                    if write {
                        v.write(REGION_REGS, off, buf);
                    } else {
                        v.read(REGION_REGS, off, buf);
                    }
                }
                1 => {
                    let off = rng.below(DISPI_IO_LEN);
                    // Mostly valid indexes, sometimes anything.
                    if off == 0 && write && rng.below(4) != 0 {
                        let idx = (rng.below(12) as u16).to_le_bytes();
                        v.write(REGION_DISPI, 0, &idx);
                    } else if write {
                        v.write(REGION_DISPI, off, buf);
                    } else {
                        v.read(REGION_DISPI, off, buf);
                    }
                }
                2 | 3 => {
                    let off = rng.below(WINDOW_LEN + 16);
                    if write {
                        v.write(REGION_WINDOW, off, buf);
                    } else {
                        v.read(REGION_WINDOW, off, buf);
                    }
                }
                4 => {
                    let off = rng.below(MMIO_BAR_LEN + 8);
                    if write {
                        v.mmio_write(off, buf);
                    } else {
                        v.mmio_read(off, buf);
                    }
                }
                _ => {
                    let at = (rng.below(3) != 0).then(|| rng.next() & !0xfff);
                    v.place_lfb(at);
                    // An access to a region the device does not have.
                    v.read(rng.next() as usize, rng.next(), buf);
                }
            }
        }
        if seq % 2000 == 0 {
            let f = v.render();
            assert!(f.width <= render::MAX_DIM && f.height <= render::MAX_DIM);
            assert_eq!(f.rgb.len(), (f.width * f.height * 3) as usize);
        }
        assert_eq!(v.vram().len(), vram_len);
    }
}
