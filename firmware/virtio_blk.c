/* virtio_blk.c - the probe's virtio-blk driver: find every disk, report it, check
 * that sectors written read back (writable disks) or that writes are refused
 * (read-only disks), and measure throughput (blkbench=MiB).
 *
 * Report lines (README.md):
 *   PROBE blk dev=<transport>@<addr> capacity=N ro=0|1 blk_size=B features=<hex> id="..."
 *   PROBE blk rw ok sectors=N           (or: blk rw fail sectors=N write=S read=S flush=S bad=OFF)
 *   PROBE blk ro ok status=S            (a write to a read-only disk got status S != 0)
 *   PROBE blk read ok sectors=N sum=X   (blkwrite=0: bytes of sectors 0..N-1 added up;
 *                                        read-only disks too, after their ro line)
 *   PROBE blk bench mib=M write_us=T read_us=T write_mib_s=W read_mib_s=R
 *   PROBE blk error dev=... what=...
 * The pattern written to sector s, byte i, is (s * 31 + i * 7 + 1) & 0xff.
 */
#include "probe.h"

#define VIRTIO_ID_BLOCK 2
#define F_RO (1ul << 5)
#define F_BLK_SIZE (1ul << 6)
#define F_FLUSH (1ul << 9)
#define F_VERSION_1 (1ul << 32)
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define BUF_BYTES (64u << 10)
#define SPINS 2000000ul

struct req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

static u8 ring_page[4096] __attribute__((aligned(4096)));
static u8 data[BUF_BYTES] __attribute__((aligned(4096)));
static struct req_hdr hdr __attribute__((aligned(16)));
static volatile u8 status_byte;
static u32 irq_misses; /* requests whose completion raised no interrupt (virtirq=) */

/* One request; returns the status byte, or 0x100 + error when it did not complete. */
static u32 blk_request(struct vq *q, u32 type, u64 sector, void *buf, u32 len)
{
	struct vbuf b[3];
	u32 n = 0;
	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	status_byte = 0xff;
	b[n++] = (struct vbuf){ (u64)&hdr, sizeof(hdr), 0 };
	if (len)
		b[n++] = (struct vbuf){ (u64)buf, len, type != T_OUT };
	b[n++] = (struct vbuf){ (u64)&status_byte, 1, 1 };
	u64 seen = vdev_irqs();
	if (vq_submit(q, b, n) < 0)
		return 0x1ff;
	int h = q->dev->irq ? vq_wait_irq(q, NULL, seen) : vq_wait(q, NULL, SPINS);
	if (h == -3)
		irq_misses++;
	if (h < 0)
		return 0x100 + (u32)(-h);
	return status_byte;
}

u32 blk_rw(struct vq *q, int write, u64 sector, void *buf, u32 len)
{
	return blk_request(q, write ? T_OUT : T_IN, sector, buf, len);
}

static u8 pattern(u64 s, u32 i) { return (u8)(s * 31 + i * 7 + 1); }

static void error_line(struct vdev *d, const char *what)
{
	line_start("blk error");
	out_str(" dev=");
	vdev_describe(d);
	kv_str("what", what);
	out_end();
}

static void rw_test(struct vq *q, u64 sectors)
{
	u32 bytes = (u32)sectors * 512;
	for (u32 i = 0; i < bytes; i++)
		data[i] = pattern(i / 512, i % 512);
	u32 ws = blk_request(q, T_OUT, 0, data, bytes);
	memset(data, 0, bytes);
	u32 rs = blk_request(q, T_IN, 0, data, bytes);
	u64 bad = ~0ul;
	for (u32 i = 0; i < bytes; i++)
		if (data[i] != pattern(i / 512, i % 512)) {
			bad = i;
			break;
		}
	u32 fs = blk_request(q, T_FLUSH, 0, NULL, 0);
	int ok = !ws && !rs && !fs && bad == ~0ul;
	line_start(ok ? "blk rw ok" : "blk rw fail");
	kv_dec("sectors", sectors);
	if (!ok) {
		kv_hex("write", ws);
		kv_hex("read", rs);
		kv_hex("flush", fs);
		kv_hex("bad", bad);
	}
	out_end();
}

static void ro_test(struct vq *q)
{
	memset(data, 0xee, 512);
	u32 s = blk_request(q, T_OUT, 0, data, 512);
	line_start(s && s < 0x100 ? "blk ro ok" : "blk ro fail");
	kv_hex("status", s);
	out_end();
}

static void read_test(struct vq *q, u64 sectors)
{
	u32 s = blk_request(q, T_IN, 0, data, (u32)sectors * 512);
	u64 sum = 0;
	for (u32 i = 0; i < sectors * 512; i++)
		sum += data[i];
	line_start(s ? "blk read fail" : "blk read ok");
	kv_dec("sectors", sectors);
	kv_hex("sum", sum);
	if (s)
		kv_hex("status", s);
	out_end();
}

static void bench(struct vq *q, u64 capacity, u32 mib)
{
	u32 per = BUF_BYTES / 512;
	u64 reqs = (u64)mib * (1 << 20) / BUF_BYTES;
	u64 t[3];
	u32 err = 0;
	for (u32 i = 0; i < BUF_BYTES; i++)
		data[i] = (u8)i;
	t[0] = rdtsc();
	for (u64 r = 0; r < reqs && !err; r++)
		err = blk_request(q, T_OUT, (r * per) % (capacity - per + 1), data, BUF_BYTES);
	err |= blk_request(q, T_FLUSH, 0, NULL, 0);
	t[1] = rdtsc();
	for (u64 r = 0; r < reqs && !err; r++)
		err = blk_request(q, T_IN, (r * per) % (capacity - per + 1), data, BUF_BYTES);
	t[2] = rdtsc();
	line_start(err ? "blk bench fail" : "blk bench");
	kv_dec("mib", mib);
	if (tsc_khz) {
		u64 wus = (t[1] - t[0]) * 1000 / tsc_khz, rus = (t[2] - t[1]) * 1000 / tsc_khz;
		kv_dec("write_us", wus);
		kv_dec("read_us", rus);
		kv_dec("write_mib_s", wus ? (u64)mib * 1000000 / wus : 0);
		kv_dec("read_mib_s", rus ? (u64)mib * 1000000 / rus : 0);
	} else {
		kv_dec("write_cycles", t[1] - t[0]);
		kv_dec("read_cycles", t[2] - t[1]);
	}
	if (err)
		kv_hex("status", err);
	out_end();
}

static void blk_one(struct vdev *d)
{
	struct vq q;
	u64 f = vdev_init(d, F_VERSION_1 | F_RO | F_BLK_SIZE | F_FLUSH);
	if (f == ~0ul) {
		error_line(d, "features");
		return;
	}
	u64 irqs0 = vdev_irqs();
	irq_misses = 0;
	if (opt.virt_irq && d->pci && vdev_irq_setup(d, opt.virt_irq) < 0) {
		line_start("blk irq");
		out_str(opt.virt_irq == VIRQ_MSIX ? " msix fail" : " intx fail");
		kv_str("reason", "setup");
		out_end();
	}
	if (vq_setup(d, &q, 0, VQ_MAX, ring_page) < 0) {
		vdev_irq_off(d);
		error_line(d, "queue");
		return;
	}
	vdev_driver_ok(d);
	u64 capacity = vdev_cfg32(d, 0) | (u64)vdev_cfg32(d, 4) << 32;
	u32 blk_size = (f & F_BLK_SIZE) ? vdev_cfg32(d, 20) : 512;
	char id[21];
	memset(data, 0, 20);
	u32 ids = blk_request(&q, T_GET_ID, 0, data, 20);
	memcpy(id, data, 20);
	id[ids ? 0 : 20] = 0;
	int ro = (f & F_RO) != 0;
	line_start("blk");
	out_str(" dev=");
	vdev_describe(d);
	kv_dec("capacity", capacity);
	kv_dec("ro", (u64)ro);
	kv_dec("blk_size", blk_size);
	kv_hex("features", d->offered);
	out_str(" id=");
	out_quoted(id, 21);
	out_end();

	u64 sectors = opt.blk_sectors < capacity ? opt.blk_sectors : capacity;
	if (sectors > BUF_BYTES / 512)
		sectors = BUF_BYTES / 512;
	if (!sectors)
		; /* nothing to test */
	else if (ro) {
		ro_test(&q);
		if (!opt.blk_write)
			read_test(&q, sectors);
	}
	else if (opt.blk_write)
		rw_test(&q, sectors);
	else
		read_test(&q, sectors);
	if (opt.blk_bench && !ro && capacity >= BUF_BYTES / 512)
		bench(&q, capacity, opt.blk_bench);
	if (d->irq) {
		u64 count = vdev_irqs() - irqs0;
		line_start("blk irq");
		out_str(d->irq == VIRQ_MSIX ? " msix" : " intx");
		out_str(count && !irq_misses ? " ok" : " fail");
		if (d->irq == VIRQ_INTX)
			kv_dec("gsi", d->gsi);
		kv_dec("count", count);
		if (irq_misses)
			kv_dec("missed", irq_misses);
		out_end();
		vdev_irq_off(d);
	}
	if (opt.work && !ro && capacity >= 96)
		work_keep_disk(d, &q);
}

void blk_report(void)
{
	struct vdev d;
	for (u32 k = 0; k < 8; k++) {
		if (vdev_find(VIRTIO_ID_BLOCK, k, &d) < 0)
			break;
		blk_one(&d);
	}
}
