/* virtio.c - virtio transports and split virtqueues for the probe's drivers.
 *
 * Discovery: virtio-mmio windows from the options virtio_mmio=BASE virtio_mmio_n=N
 * (0x200-byte slots; vmrun's builder passes them for microvm, a benchmark passes
 * QEMU's), and virtio-pci modern functions (1af4:1040+type) on PCI bus 0 through
 * configuration mechanism #1. A PCI function whose BARs are unassigned (direct boot,
 * no firmware) gets them assigned here from VPCI_MMIO_BASE up.
 *
 * PCI: every bus is scanned; bridges without a secondary bus number are numbered
 * depth-first in slot order (as pci.c and SeaBIOS do) and get a memory window
 * around the BARs assigned behind them. The scan also records the e1000 NICs
 * (8086:100E) for e1000.c: pcifn_find / pcifn_bar / pcifn_describe.
 *
 * Polled by default (VIRTQ_AVAIL_F_NO_INTERRUPT, spin on the used index); with
 * d->irq set (virtio_irq.c) the queue asks for interrupts (MSI-X vector 0 or INTx).
 */
#include "probe.h"

#define MMIO_MAGIC 0x74726976u
enum {
	M_MAGIC = 0x00, M_VERSION = 0x04, M_DEVICE_ID = 0x08, M_DEV_FEATURES = 0x10,
	M_DEV_FEATURES_SEL = 0x14, M_DRV_FEATURES = 0x20, M_DRV_FEATURES_SEL = 0x24,
	M_QUEUE_SEL = 0x30, M_QUEUE_NUM_MAX = 0x34, M_QUEUE_NUM = 0x38, M_QUEUE_READY = 0x44,
	M_QUEUE_NOTIFY = 0x50, M_STATUS = 0x70, M_QUEUE_DESC = 0x80, M_CONFIG = 0x100,
};
/* virtio-pci common configuration structure. */
enum {
	C_DFSEL = 0x00, C_DF = 0x04, C_GFSEL = 0x08, C_GF = 0x0c, C_MSIX = 0x10, C_NUMQ = 0x12,
	C_STATUS = 0x14, C_QSEL = 0x16, C_QSIZE = 0x18, C_QMSIX = 0x1a, C_QENABLE = 0x1c,
	C_QNOFF = 0x1e, C_QDESC = 0x20, C_QDRIVER = 0x28, C_QDEVICE = 0x30,
};
#define VPCI_MMIO_BASE 0xe0000000ul
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

static u64 vpci_next_mmio = VPCI_MMIO_BASE;

static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static u32 pci_cfg_read(u32 bdf, u32 off)
{
	outl(0xcf8, 0x80000000u | (bdf << 8) | (off & 0xfc));
	return inl(0xcfc);
}

static void pci_cfg_write(u32 bdf, u32 off, u32 v)
{
	outl(0xcf8, 0x80000000u | (bdf << 8) | (off & 0xfc));
	outl(0xcfc, v);
}

static inline u8 r8(u64 a) { return *(volatile u8 *)a; }
static inline u16 r16(u64 a) { return *(volatile u16 *)a; }
static inline void w8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void w16(u64 a, u16 v) { *(volatile u16 *)a = v; }

/* The address of BAR `bar` of `bdf`, assigning one when the BAR is unprogrammed. */
static u64 pci_bar(u32 bdf, u32 bar)
{
	u32 off = 0x10 + 4 * bar;
	u32 lo = pci_cfg_read(bdf, off);
	if (lo & 1)
		return 0; /* I/O BAR: not used by modern virtio */
	int is64 = ((lo >> 1) & 3) == 2;
	u64 addr = lo & ~0xful;
	if (is64)
		addr |= (u64)pci_cfg_read(bdf, off + 4) << 32;
	if (addr)
		return addr;
	pci_cfg_write(bdf, off, ~0u);
	u64 size = ~(u64)(pci_cfg_read(bdf, off) & ~0xfu) + 1;
	size &= 0xffffffffu;
	if (!size)
		return 0;
	addr = (vpci_next_mmio + size - 1) & ~(size - 1);
	vpci_next_mmio = addr + size;
	pci_cfg_write(bdf, off, (u32)addr);
	if (is64)
		pci_cfg_write(bdf, off + 4, 0);
	return addr;
}

/* Fills the virtio-pci structure addresses from the vendor capabilities. */
static int pci_setup(struct vdev *d)
{
	u32 bdf = d->bdf;
	if (!(pci_cfg_read(bdf, 0x04) & (1u << 20)))
		return -1; /* no capability list */
	u32 cap = pci_cfg_read(bdf, 0x34) & 0xfc;
	for (int guard = 0; cap && guard < 48; guard++) {
		u32 h = pci_cfg_read(bdf, cap);
		if ((h & 0xff) == 0x09) {
			u32 type = (h >> 24) & 0xff;
			u32 bar = pci_cfg_read(bdf, cap + 4) & 0xff;
			u32 off = pci_cfg_read(bdf, cap + 8);
			u64 base = bar < 6 ? pci_bar(bdf, bar) : 0;
			if (base) {
				if (type == 1)
					d->base = base + off;
				else if (type == 2) {
					d->notify = base + off;
					d->notify_mult = pci_cfg_read(bdf, cap + 16);
				} else if (type == 3)
					d->isr = base + off;
				else if (type == 4)
					d->devcfg = base + off;
			}
		}
		cap = (h >> 8) & 0xfc;
	}
	/* Memory decoding and bus mastering on. */
	pci_cfg_write(bdf, 0x04, (pci_cfg_read(bdf, 0x04) & 0xffff) | 0x6);
	return d->base && d->notify && d->devcfg ? 0 : -1;
}

/* ---- enumeration: every bus, bridges numbered depth-first as pci.c does ---- */
#define VPCI_MAX 16
static u32 vpci_found[VPCI_MAX], vpci_count, vpci_next_bus, vpci_done;

/* Assigns every unassigned memory BAR of a virtio function now (bridge windows are
 * programmed around what their buses received). */
static void vpci_assign(u32 bdf)
{
	for (u32 bar = 0; bar < 6; bar++) {
		u32 lo = pci_cfg_read(bdf, 0x10 + 4 * bar);
		if (!(lo & 1))
			pci_bar(bdf, bar);
		if (!(lo & 1) && ((lo >> 1) & 3) == 2)
			bar++;
	}
}

static void vpci_scan(u32 bus, u32 depth)
{
	for (u32 dev = 0; dev < 32; dev++) {
		for (u32 fn = 0; fn < 8; fn++) {
			u32 bdf = bus << 8 | dev << 3 | fn;
			u32 id = pci_cfg_read(bdf, 0);
			if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0) {
				if (fn == 0)
					break;
				continue;
			}
			u32 hdr = (pci_cfg_read(bdf, 0x0c) >> 16) & 0xff;
			int virtio = (id & 0xffff) == 0x1af4 && (id >> 16) >= 0x1041 && (id >> 16) <= 0x107f;
			if ((virtio || id == PCI_ID_E1000) && vpci_count < VPCI_MAX) {
				vpci_found[vpci_count++] = bdf;
				vpci_assign(bdf);
			}
			if ((hdr & 0x7f) == 1 && depth < 8 && vpci_next_bus < 255) {
				u32 r = pci_cfg_read(bdf, 0x18);
				u32 sec = (r >> 8) & 0xff;
				int ours = !sec; /* unnumbered: number it and program its window */
				if (ours) {
					sec = ++vpci_next_bus;
					pci_cfg_write(bdf, 0x18, (r & 0xff000000u) | 0xff << 16 | sec << 8 | bus);
				}
				vpci_next_mmio = (vpci_next_mmio + 0xfffff) & ~0xffffful;
				u64 lo = vpci_next_mmio;
				vpci_scan(sec, depth + 1);
				vpci_next_mmio = (vpci_next_mmio + 0xfffff) & ~0xffffful;
				u64 hi = vpci_next_mmio;
				if (ours) {
					pci_cfg_write(bdf, 0x18,
						      (r & 0xff000000u) | vpci_next_bus << 16 | sec << 8 | bus);
					/* memory window [lo, hi); no I/O or prefetchable window */
					pci_cfg_write(bdf, 0x20, hi > lo ? (u32)(((lo >> 16) & 0xfff0) | ((hi - 1) & 0xfff00000u))
									 : 0x0000fff0u);
					pci_cfg_write(bdf, 0x24, 0x0000fff0u);
					pci_cfg_write(bdf, 0x28, 0);
					pci_cfg_write(bdf, 0x2c, 0);
					pci_cfg_write(bdf, 0x1c, (pci_cfg_read(bdf, 0x1c) & 0xffff0000u) | 0x00f0);
					pci_cfg_write(bdf, 0x04, (pci_cfg_read(bdf, 0x04) & 0xffff) | 0x6);
				} else if (((r >> 16) & 0xff) > vpci_next_bus) {
					vpci_next_bus = (r >> 16) & 0xff; /* numbered by firmware */
				}
			}
			if (fn == 0 && !(hdr & 0x80))
				break;
		}
	}
}

/* Scans every bus once. -1 when there is no PCI. */
static int vpci_enumerate(void)
{
	if (!vpci_done) {
		outl(0xcf8, 0x80000000u);
		if (inl(0xcf8) != 0x80000000u)
			return -1; /* no PCI */
		vpci_done = 1;
		vpci_scan(0, 0);
	}
	return 0;
}

int pcifn_find(u32 id, u32 nth, u32 *bdf)
{
	if (vpci_enumerate() < 0)
		return -1;
	for (u32 i = 0; i < vpci_count; i++) {
		if (pci_cfg_read(vpci_found[i], 0) != id || nth--)
			continue;
		*bdf = vpci_found[i];
		return 0;
	}
	return -1;
}

u64 pcifn_bar(u32 bdf, u32 bar)
{
	return pci_bar(bdf, bar);
}

int vdev_find(u32 type, u32 nth, struct vdev *d)
{
	memset(d, 0, sizeof(*d));
	d->type = type;
	u64 base = 0, n = 1;
	if (opt.virtio_mmio) {
		base = opt.virtio_mmio;
		n = opt.virtio_mmio_n ? opt.virtio_mmio_n : 8;
	}
	for (u64 k = 0; base && k < n && k < 64; k++) {
		u64 b = base + k * 0x200;
		if (mmio_read32(b + M_MAGIC) == MMIO_MAGIC && mmio_read32(b + M_VERSION) == 2 &&
		    mmio_read32(b + M_DEVICE_ID) == type && !nth--) {
			d->base = b;
			d->devcfg = b + M_CONFIG;
			return 0;
		}
	}
	if (!opt.virtio_pci || vpci_enumerate() < 0)
		return -1;
	for (u32 i = 0; i < vpci_count; i++) {
		u32 bdf = vpci_found[i];
		if ((pci_cfg_read(bdf, 0) >> 16) != 0x1040 + type || nth--)
			continue;
		d->pci = 1;
		d->bdf = bdf;
		return pci_setup(d);
	}
	return -1;
}

static void out_hex2(u32 v)
{
	out_char("0123456789abcdef"[(v >> 4) & 0xf]);
	out_char("0123456789abcdef"[v & 0xf]);
}

void pcifn_describe(u32 bdf)
{
	out_str("pci@");
	out_hex2(bdf >> 8);
	out_char(':');
	out_hex2((bdf >> 3) & 0x1f);
	out_char('.');
	out_char((char)('0' + (bdf & 7)));
}

void vdev_describe(const struct vdev *d)
{
	if (d->pci) {
		pcifn_describe(d->bdf);
	} else {
		out_str("mmio@");
		out_hex(d->base);
	}
}

static void set_status(struct vdev *d, u8 s)
{
	if (d->pci)
		w8(d->base + C_STATUS, s);
	else
		mmio_write32(d->base + M_STATUS, s);
}

void vdev_reset(struct vdev *d)
{
	set_status(d, 0);
}

u32 vdev_status(struct vdev *d)
{
	return d->pci ? r8(d->base + C_STATUS) : mmio_read32(d->base + M_STATUS);
}

u64 vdev_init(struct vdev *d, u64 want)
{
	u32 sel = d->pci ? C_DFSEL : M_DEV_FEATURES_SEL, feat = d->pci ? C_DF : M_DEV_FEATURES;
	u32 gsel = d->pci ? C_GFSEL : M_DRV_FEATURES_SEL, gfeat = d->pci ? C_GF : M_DRV_FEATURES;
	set_status(d, 0);
	set_status(d, 1);
	set_status(d, 3);
	mmio_write32(d->base + sel, 0);
	u64 f = mmio_read32(d->base + feat);
	mmio_write32(d->base + sel, 1);
	f |= (u64)mmio_read32(d->base + feat) << 32;
	d->offered = f;
	f &= want;
	mmio_write32(d->base + gsel, 0);
	mmio_write32(d->base + gfeat, (u32)f);
	mmio_write32(d->base + gsel, 1);
	mmio_write32(d->base + gfeat, (u32)(f >> 32));
	set_status(d, 0xb);
	return (vdev_status(d) & 8) ? f : ~0ul;
}

void vdev_driver_ok(struct vdev *d) { set_status(d, 0xf); }

int vq_setup(struct vdev *d, struct vq *q, u16 index, u16 size, u8 *page)
{
	u32 max;
	if (d->pci) {
		w16(d->base + C_QSEL, index);
		max = r16(d->base + C_QSIZE);
	} else {
		mmio_write32(d->base + M_QUEUE_SEL, index);
		max = mmio_read32(d->base + M_QUEUE_NUM_MAX);
	}
	if (max < size)
		size = (u16)max;
	if (!size || size > VQ_MAX)
		return -1;
	memset(page, 0, 4096);
	memset(q, 0, sizeof(*q));
	q->dev = d;
	q->index = index;
	q->size = size;
	q->desc = (struct vq_desc *)page;
	q->avail = (volatile u16 *)(page + 16 * VQ_MAX);
	q->used = (volatile u32 *)(page + 2048);
	q->avail[0] = d->irq ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
	u64 a[3] = { (u64)q->desc, (u64)q->avail, (u64)q->used };
	if (d->pci) {
		w16(d->base + C_QSIZE, size);
		w16(d->base + C_QMSIX, d->irq == VIRQ_MSIX ? 0 : 0xffff);
		if (d->irq == VIRQ_MSIX && r16(d->base + C_QMSIX) != 0)
			return -1; /* the device refused the vector */
		for (int i = 0; i < 3; i++) {
			mmio_write32(d->base + C_QDESC + 8 * (u32)i, (u32)a[i]);
			mmio_write32(d->base + C_QDESC + 8 * (u32)i + 4, (u32)(a[i] >> 32));
		}
		q->notify_addr = d->notify + (u64)r16(d->base + C_QNOFF) * d->notify_mult;
		w16(d->base + C_QENABLE, 1);
	} else {
		mmio_write32(d->base + M_QUEUE_NUM, size);
		for (int i = 0; i < 3; i++) {
			mmio_write32(d->base + M_QUEUE_DESC + 0x10 * (u32)i, (u32)a[i]);
			mmio_write32(d->base + M_QUEUE_DESC + 0x10 * (u32)i + 4, (u32)(a[i] >> 32));
		}
		q->notify_addr = d->base + M_QUEUE_NOTIFY;
		mmio_write32(d->base + 0x44, 1);
	}
	return 0;
}

void vq_kick(struct vq *q)
{
	__asm__ volatile("mfence" ::: "memory");
	if (q->dev->pci)
		w16(q->notify_addr, q->index);
	else
		mmio_write32(q->notify_addr, q->index);
}

void vq_post(struct vq *q, u16 i, u64 addr, u32 len, u32 write)
{
	if (i >= q->size)
		return;
	q->desc[i] = (struct vq_desc){ addr, len, write ? 2 : 0, 0 };
	u16 idx = q->avail[1];
	q->avail[2 + idx % q->size] = i;
	__asm__ volatile("sfence" ::: "memory");
	q->avail[1] = (u16)(idx + 1);
}

int vq_submit(struct vq *q, const struct vbuf *bufs, u32 n)
{
	if (!n || n > q->size)
		return -1;
	u16 head = q->next;
	for (u32 k = 0; k < n; k++) {
		u16 i = (u16)((head + k) % q->size);
		u16 flags = (bufs[k].write ? 2 : 0) | (k + 1 < n ? 1 : 0);
		q->desc[i] = (struct vq_desc){ bufs[k].addr, bufs[k].len, flags, (u16)((i + 1) % q->size) };
	}
	q->next = (u16)((head + n) % q->size);
	u16 idx = q->avail[1];
	q->avail[2 + idx % q->size] = head;
	__asm__ volatile("sfence" ::: "memory");
	q->avail[1] = (u16)(idx + 1);
	vq_kick(q);
	return head;
}

int vq_poll(struct vq *q, u32 *len)
{
	u16 idx = (u16)(q->used[0] >> 16);
	if (idx == q->last_used)
		return -1;
	barrier();
	u32 slot = q->last_used % q->size;
	u32 id = q->used[1 + 2 * slot];
	if (len)
		*len = q->used[2 + 2 * slot];
	q->last_used++;
	return (int)id;
}

int vq_wait(struct vq *q, u32 *len, u64 spins)
{
	for (u64 i = 0; i < spins; i++) {
		int h = vq_poll(q, len);
		if (h >= 0)
			return h;
		if (vdev_status(q->dev) & 0x40)
			return -2; /* DEVICE_NEEDS_RESET */
		pause();
	}
	return -1;
}

u8 vdev_cfg8(struct vdev *d, u32 off) { return r8(d->devcfg + off); }
u32 vdev_cfg32(struct vdev *d, u32 off) { return mmio_read32(d->devcfg + off); }
