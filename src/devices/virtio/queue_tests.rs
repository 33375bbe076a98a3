use super::*;
use crate::devices::virtio::testutil::{memory, Ring};

fn queue(r: &Ring) -> Queue {
    let mut q = Queue::new(r.size);
    q.size = r.size;
    q.ready = true;
    q.desc_table = r.desc;
    q.avail_ring = r.avail;
    q.used_ring = r.used;
    q
}

#[test]
fn chain_and_used() {
    let mem = memory(1 << 20);
    let mut r = Ring::new(8, 0x1000);
    let mut q = queue(&r);
    q.validate(&mem).unwrap();
    assert_eq!(q.pop(&mem).unwrap(), None);
    let h = r.push(
        &mem,
        &[(0x8000, 16, false), (0x9000, 512, true), (0xa000, 1, true)],
    );
    let c = q.pop(&mem).unwrap().unwrap();
    assert_eq!(c.head, h);
    assert_eq!(c.descs.len(), 3);
    assert_eq!(c.readable().count(), 1);
    assert_eq!(c.writable().map(|d| d.len).sum::<u32>(), 513);
    assert_eq!(q.pop(&mem).unwrap(), None);
    q.add_used(&mem, c.head, 513).unwrap();
    assert!(q.needs_notification(&mem).unwrap());
    assert_eq!(r.take_used(&mem), vec![(h as u32, 513)]);
    // Indirect.
    let h = r.push_indirect(&mem, 0x20000, &[(0x8000, 16, false), (0xa000, 1, true)]);
    let c = q.pop(&mem).unwrap().unwrap();
    assert_eq!((c.head, c.descs.len()), (h, 2));
}

#[test]
fn malformed_rings_are_errors() {
    let mem = memory(1 << 20);
    // A loop.
    let mut r = Ring::new(4, 0x1000);
    let mut q = queue(&r);
    r.write_desc(&mem, 0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 1);
    r.write_desc(&mem, 1, 0x8000, 4, VIRTQ_DESC_F_NEXT, 0);
    r.publish(&mem, 0);
    assert_eq!(q.pop(&mem), Err(QueueError::ChainTooLong(4)));
    // Head out of range.
    let mut r = Ring::new(4, 0x1000);
    let mut q = queue(&r);
    r.publish(&mem, 9);
    assert!(matches!(q.pop(&mem), Err(QueueError::DescOutOfRange(9, 4))));
    // Buffer outside RAM.
    let mut r = Ring::new(4, 0x1000);
    let mut q = queue(&r);
    r.push(&mem, &[(0xff000, 0x2000, false)]);
    assert!(matches!(q.pop(&mem), Err(QueueError::BadBuffer { .. })));
    // Avail index far ahead.
    let r = Ring::new(4, 0x1000);
    let mut q = queue(&r);
    mem.write_obj(100u16, GuestAddress(r.avail + 2)).unwrap();
    assert!(matches!(q.pop(&mem), Err(QueueError::AvailOverrun(100, 4))));
    // Indirect with NEXT, bad length, nested.
    let mut r = Ring::new(4, 0x1000);
    let mut q = queue(&r);
    r.write_desc(
        &mem,
        0,
        0x8000,
        16,
        VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
        1,
    );
    r.publish(&mem, 0);
    assert!(matches!(q.pop(&mem), Err(QueueError::BadIndirect(_))));
    let mut r = Ring::new(4, 0x1000);
    let mut q = queue(&r);
    r.write_desc(&mem, 0, 0x8000, 17, VIRTQ_DESC_F_INDIRECT, 0);
    r.publish(&mem, 0);
    assert!(matches!(q.pop(&mem), Err(QueueError::BadIndirect(_))));
    // Readable after writable.
    let mut r = Ring::new(4, 0x1000);
    let mut q = queue(&r);
    r.push(&mem, &[(0x8000, 4, true), (0x9000, 4, false)]);
    assert_eq!(q.pop(&mem), Err(QueueError::ReadableAfterWritable));
    // Rings outside RAM or misaligned.
    let mut q = queue(&Ring::new(4, 0xffff0));
    assert!(q.validate(&mem).is_err());
    q = queue(&Ring::new(4, 0x1001));
    assert!(q.validate(&mem).is_err());
    q.size = 3;
    assert_eq!(q.validate(&mem), Err(QueueError::BadSize(3)));
}

#[test]
fn event_idx() {
    let mem = memory(1 << 20);
    let mut r = Ring::new(8, 0x1000);
    let mut q = queue(&r);
    q.set_event_idx(true);
    assert_eq!(q.pop(&mem).unwrap(), None);
    // The device asked to be kicked at avail index 0.
    let ev: u16 = mem.read_obj(GuestAddress(r.used + 4 + 8 * 8)).unwrap();
    assert_eq!(ev, 0);
    for _ in 0..3 {
        r.push(&mem, &[(0x8000, 4, true)]);
    }
    // The driver wants an interrupt once used idx passes 1 (used_event = 1).
    mem.write_obj(1u16, GuestAddress(r.avail + 4 + 2 * 8))
        .unwrap();
    let c = q.pop(&mem).unwrap().unwrap();
    q.add_used(&mem, c.head, 0).unwrap();
    assert!(!q.needs_notification(&mem).unwrap()); // used idx 1: event not passed
    let c = q.pop(&mem).unwrap().unwrap();
    q.add_used(&mem, c.head, 0).unwrap();
    assert!(q.needs_notification(&mem).unwrap()); // used idx 2 passed 1
    let c = q.pop(&mem).unwrap().unwrap();
    q.add_used(&mem, c.head, 0).unwrap();
    assert!(!q.needs_notification(&mem).unwrap());
    assert_eq!(q.pop(&mem).unwrap(), None);
    let ev: u16 = mem.read_obj(GuestAddress(r.used + 4 + 8 * 8)).unwrap();
    assert_eq!(ev, 3);
}
