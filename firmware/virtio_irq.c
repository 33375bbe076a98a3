/* virtio_irq.c - completion interrupts for a virtio-pci function (virtirq=msix|intx).
 *
 * MSI-X: table entry 0 -> this CPU's LAPIC (physical destination), vector VEC_VIRTIO,
 * unmasked; MSI-X enabled with the function mask clear; the config vector stays
 * NO_VECTOR and every queue set up afterwards uses entry 0 (vq_setup).
 * INTx: the IOAPIC pin is the one the MP table's I/O interrupt entry names for the
 * function's slot and pin (PCI bus 0); the entry is level triggered, active high
 * (what the MADT implies: no override for PCI GSIs); the handler reads the ISR
 * register, which lowers the line, before the EOI.
 * The PICs are masked, the LAPIC software-enabled (also with quick=1).
 */
#include "probe.h"

static struct vdev *irq_dev;
static volatile u64 irq_count;

u64 vdev_irqs(void) { return irq_count; }

void virtio_isr(void)
{
	struct vdev *d = irq_dev;
	if (d && d->irq == VIRQ_INTX && d->isr)
		(void)*(volatile u8 *)d->isr; /* read-to-clear: deasserts INTx */
	irq_count++;
}

static u32 rd8(u64 a) { return *(volatile u8 *)a; }

/* An MP floating pointer ("_MP_", 16 bytes, checksum 0) in [lo, hi), or 0. */
static u64 mp_scan(u64 lo, u64 hi)
{
	for (u64 a = lo; a + 16 <= hi; a += 16) {
		if (mmio_read32(a) != 0x5f504d5fu) /* "_MP_" */
			continue;
		u8 sum = 0;
		for (u32 i = 0; i < 16; i++)
			sum = (u8)(sum + rd8(a + i));
		if (!sum)
			return a;
	}
	return 0;
}

/* The IOAPIC pin the MP table routes PCI bus 0 `slot` INT`pin` (1 = INTA) to, or -1. */
static int mp_pci_gsi(u32 slot, u32 pin)
{
	u64 bda = 0x40e; /* a variable: the compiler would call a constant address out of bounds */
	__asm__("" : "+r"(bda));
	u64 ebda = (u64)(*(volatile u16 *)bda) << 4;
	u64 fp = ebda >= 0x80000 && ebda < 0xa0000 ? mp_scan(ebda, ebda + 1024) : 0;
	if (!fp)
		fp = mp_scan(0x9fc00, 0xa0000);
	if (!fp)
		fp = mp_scan(0xf0000, 0x100000);
	if (!fp)
		return -1;
	u64 t = mmio_read32(fp + 4);
	if (!t || t >= 0x100000 || mmio_read32(t) != 0x504d4350u) /* "PCMP" */
		return -1;
	u32 len = *(volatile u16 *)(t + 4), count = *(volatile u16 *)(t + 34);
	u64 e = t + 44, end = t + len;
	int pci_bus = -1;
	for (u32 k = 0; k < count && e < end; k++) {
		u32 type = rd8(e);
		if (type == 0) {
			e += 20;
			continue;
		}
		if (type == 1 && rd8(e + 2) == 'P' && rd8(e + 3) == 'C' && rd8(e + 4) == 'I')
			pci_bus = (int)rd8(e + 1);
		if (type == 3 && pci_bus >= 0 && (int)rd8(e + 4) == pci_bus &&
		    rd8(e + 5) == (slot << 2 | (pin - 1)))
			return (int)rd8(e + 7);
		e += 8;
	}
	return -1;
}

/* The address BAR `bar` of `bdf` decodes (memory BARs only). */
static u64 bar_addr(u32 bdf, u32 bar)
{
	u32 lo = pcicfg_read32(bdf, 0x10 + 4 * bar);
	if (lo & 1)
		return 0;
	u64 a = lo & ~0xful;
	if (((lo >> 1) & 3) == 2 && bar < 5)
		a |= (u64)pcicfg_read32(bdf, 0x14 + 4 * bar) << 32;
	return a;
}

static int msix_setup(struct vdev *d, u32 apic)
{
	u32 bdf = d->bdf, cap = pcicfg_read32(bdf, 0x34) & 0xfc;
	for (int guard = 0; cap && guard < 48; guard++) {
		u32 h = pcicfg_read32(bdf, cap);
		if ((h & 0xff) == 0x11) {
			u32 tbl = pcicfg_read32(bdf, cap + 4);
			u64 base = bar_addr(bdf, tbl & 7);
			if (!base)
				return -1;
			u64 e = base + (tbl & ~7u);
			mmio_write32(e + 0, 0xfee00000u | (apic & 0xff) << 12);
			mmio_write32(e + 4, 0);
			mmio_write32(e + 8, VEC_VIRTIO); /* fixed, edge */
			mmio_write32(e + 12, 0);         /* unmasked */
			/* Message control: enable (bit 15), function mask (bit 14) clear. */
			pcicfg_write32(bdf, cap, (h & 0x3fffffffu) | 0x80000000u);
			return 0;
		}
		cap = (h >> 8) & 0xfc;
	}
	return -1;
}

int vdev_irq_setup(struct vdev *d, u32 mode)
{
	d->irq = VIRQ_POLL;
	if (!d->pci || mode == VIRQ_POLL)
		return -1;
	outb(0x21, 0xff); /* PICs masked: nothing but our vector comes in */
	outb(0xa1, 0xff);
	lapic_init();
	u32 apic = lapic_id();
	u32 cmd = pcicfg_read32(d->bdf, 0x04) & 0xffff;
	if (mode == VIRQ_MSIX) {
		if (msix_setup(d, apic) < 0)
			return -1;
	} else {
		u32 pin = (pcicfg_read32(d->bdf, 0x3c) >> 8) & 0xff;
		int gsi = (d->bdf >> 8) == 0 && pin >= 1 && pin <= 4 ?
				  mp_pci_gsi((d->bdf >> 3) & 0x1f, pin) : -1;
		if (gsi < 0 || gsi >= 24 || !d->isr)
			return -1;
		d->gsi = (u32)gsi;
		pcicfg_write32(d->bdf, 0x04, cmd & ~(1u << 10)); /* INTx Disable off */
		ioapic_redirect(d->gsi, VEC_VIRTIO | (1u << 15), apic); /* level, active high */
	}
	irq_dev = d;
	d->irq = mode;
	return 0;
}

void vdev_irq_off(struct vdev *d)
{
	if (d->irq == VIRQ_INTX)
		ioapic_redirect(d->gsi, VEC_VIRTIO | (1u << 16), 0); /* masked */
	else if (d->irq == VIRQ_MSIX)
		mmio_write32(d->base + 0x1a, 0xffff); /* queue_msix_vector (queue 0 still selected) */
	irq_dev = NULL;
}

int vq_wait_irq(struct vq *q, u32 *len, u64 seen)
{
	u64 deadline = tsc_deadline_us(2000000);
	sti();
	while (irq_count == seen && !tsc_passed(deadline))
		pause();
	cli();
	int h = vq_poll(q, len);
	if (irq_count == seen)
		return h >= 0 ? -3 : -1; /* no interrupt (completed or not) */
	if (h < 0 && (vdev_status(q->dev) & 0x40))
		return -2;
	return h;
}
