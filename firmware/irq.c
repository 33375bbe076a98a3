/* irq.c - IDT, local APIC, 8259 PICs, IOAPIC and the PIT timer test.
 *
 * The timer test programs PIT channel 0 at 1 kHz (mode 2) and counts its
 * interrupts for 20 ms per route: IOAPIC pin 2 (ISA IRQ0 through the usual
 * interrupt source override), then IOAPIC pin 0 (identity routing), then the
 * legacy path (8259 IRQ0 -> LAPIC LINT0 in ExtINT mode).
 */
#include "probe.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_X2 (1u << 10)
#define APIC_BASE_EN (1u << 11)

#define LAPIC_ID 0x20
#define LAPIC_VER 0x30
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LVT_MASKED (1u << 16)
#define LVT_EXTINT (7u << 8)
#define LVT_NMI (4u << 8)

#define IOAPIC_BASE 0xfec00000ul
#define PIC1 0x20
#define PIC2 0xa0
#define PIT_CH0 0x40
#define PIT_CMD 0x43
#define TIMER_HZ 1000

u64 lapic_base = 0xfee00000ul;
int x2apic;

struct idt_entry {
	u16 off_lo, sel;
	u8 ist, attr;
	u16 off_mid;
	u32 off_hi, zero;
} __attribute__((packed));
static struct idt_entry idt[256] __attribute__((aligned(16)));

struct frame {
	u64 rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15;
	u64 vector, error, rip, cs, rflags, rsp, ss;
};

enum { ROUTE_NONE, ROUTE_IOAPIC, ROUTE_PIC };
static volatile u64 rtc_ticks;
static volatile int route;
static volatile u64 ticks, spurious, unexpected;
static volatile u32 faulting;

/* ---------------- local APIC ---------------- */
void lapic_init(void)
{
	u64 base = rdmsr(MSR_APIC_BASE);
	x2apic = (base & APIC_BASE_X2) != 0;
	lapic_base = base & 0xffffff000ul;
	if (!(base & APIC_BASE_EN))
		wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS); /* software enable */
}

u32 lapic_read(u32 reg)
{
	if (x2apic)
		return (u32)rdmsr(0x800 + (reg >> 4));
	return mmio_read32(lapic_base + reg);
}

void lapic_write(u32 reg, u32 v)
{
	if (x2apic)
		wrmsr(0x800 + (reg >> 4), v);
	else
		mmio_write32(lapic_base + reg, v);
}

void lapic_send_ipi(u32 icr_lo, u32 dest)
{
	if (x2apic) {
		wrmsr(0x830, ((u64)dest << 32) | icr_lo);
		return;
	}
	lapic_write(LAPIC_ICR_HI, dest << 24);
	lapic_write(LAPIC_ICR_LO, icr_lo);
	for (u32 i = 0; i < 1000000 && (lapic_read(LAPIC_ICR_LO) & (1u << 12)); i++)
		pause(); /* delivery status: wait until sent */
}

u32 lapic_id(void)
{
	u32 v = lapic_read(LAPIC_ID);
	return x2apic ? v : v >> 24;
}

/* For APs: after INIT a CPU is in xAPIC mode whatever mode the BSP uses, so
 * look at this CPU's own IA32_APIC_BASE rather than the BSP's choice. */
u32 lapic_id_this_cpu(void)
{
	u64 base = rdmsr(MSR_APIC_BASE);
	if (base & APIC_BASE_X2)
		return (u32)rdmsr(0x802);
	return mmio_read32((base & 0xffffff000ul) + LAPIC_ID) >> 24;
}

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

/* ---------------- IDT and dispatch ---------------- */
void idt_init(void)
{
	for (int v = 0; v < 256; v++) {
		u64 h = (u64)isr_stubs + (u64)v * 16;
		idt[v].off_lo = (u16)h;
		idt[v].sel = 0x18;
		idt[v].ist = 0;
		idt[v].attr = 0x8e; /* present, DPL 0, 64-bit interrupt gate */
		idt[v].off_mid = (u16)(h >> 16);
		idt[v].off_hi = (u32)(h >> 32);
		idt[v].zero = 0;
	}
	idt_load();
}

void idt_load(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (u64)idt };
	__asm__ volatile("lidt %0" : : "m"(d));
}

static void fault(struct frame *f)
{
	/* A fault while reporting a fault: give up the clean way out. */
	if (__atomic_fetch_add(&faulting, 1, __ATOMIC_SEQ_CST))
		triple_fault();
	u64 cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	line_start("fault");
	kv_hex("vector", f->vector);
	kv_hex("rip", f->rip);
	kv_hex("error", f->error);
	kv_hex("cr2", cr2);
	kv_hex("rsp", f->rsp);
	out_end();
	probe_exit();
}

void isr_dispatch(struct frame *f)
{
	u64 v = f->vector;
	if (v < 32) {
		fault(f);
	} else if (v == VEC_TIMER) {
		if (route == ROUTE_IOAPIC)
			ticks++;
		lapic_eoi();
	} else if (v == VEC_RTC) {
		outb(0x70, 0x8c); /* read register C: acknowledges the RTC's interrupt */
		if (inb(0x71) & 0x40)
			rtc_ticks++;
		lapic_eoi();
	} else if (v == VEC_VIRTIO) {
		virtio_isr();
		lapic_eoi();
	} else if (v == VEC_WORK) {
		work_isr();
	} else if (v == VEC_SCI || v == VEC_TICK) {
		idle_isr(v);
		lapic_eoi();
	} else if (v >= VEC_PIC_BASE && v < VEC_PIC_BASE + 16) {
		u32 irq = (u32)v - VEC_PIC_BASE;
		u16 port = irq < 8 ? PIC1 : PIC2;
		if ((irq & 7) == 7) {
			outb(port, 0x0b); /* read ISR: IRQ7/15 may be spurious */
			if (!(inb(port) & 0x80)) {
				if (irq == 15)
					outb(PIC1, 0x20); /* the cascade line was real */
				spurious++;
				return;
			}
		}
		if (irq == 0 && route == ROUTE_PIC)
			ticks++;
		else
			unexpected++;
		if (irq >= 8)
			outb(PIC2, 0x20);
		outb(PIC1, 0x20);
	} else if (v == VEC_SPURIOUS) {
		spurious++; /* no EOI for the LAPIC spurious vector */
	} else {
		unexpected++;
		lapic_eoi();
	}
}

/* ---------------- PIC, IOAPIC, PIT ---------------- */
static void ioapic_route_vec(u32 pin, int enable, u32 dest, u32 vec);

/*
 * The RTC's periodic interrupt through IOAPIC pin 8 (ISA IRQ 8, no override):
 * 64 Hz for 100 ms, acknowledged by reading register C.
 *   PROBE rtc irq ok ticks=N ms=100 hz=64
 */
void rtc_irq_test(void)
{
	u32 me = lapic_id();
	outb(0x70, 0x8b);
	u8 b = inb(0x71);
	if (b == 0xff) {
		line_start("rtc irq none");
		out_end();
		return;
	}
	pic_remap_and_mask();
	outb(0x70, 0x8a);
	u8 a = inb(0x71);
	outb(0x70, 0x8a);
	outb(0x71, (u8)((a & 0xf0) | 0x0a)); /* rate 10: 64 Hz */
	outb(0x70, 0x8c);
	(void)inb(0x71);
	rtc_ticks = 0;
	ioapic_route_vec(8, 1, me, VEC_RTC);
	outb(0x70, 0x8b);
	outb(0x71, (u8)(b | 0x40)); /* PIE */
	sti();
	delay_us(100000);
	cli();
	outb(0x70, 0x8b);
	outb(0x71, b);
	ioapic_route_vec(8, 0, me, VEC_RTC);
	outb(0x70, 0x8a);
	outb(0x71, a);
	line_start(rtc_ticks ? "rtc irq ok" : "rtc irq fail");
	kv_dec("ticks", rtc_ticks);
	kv_dec("ms", 100);
	kv_dec("hz", 64);
	out_end();
}

void pic_remap_and_mask(void)
{
	outb(PIC1, 0x11); /* ICW1: edge, cascade, ICW4 */
	outb(PIC2, 0x11);
	outb(PIC1 + 1, VEC_PIC_BASE);     /* ICW2: vector base */
	outb(PIC2 + 1, VEC_PIC_BASE + 8);
	outb(PIC1 + 1, 0x04); /* ICW3: slave on IRQ2 */
	outb(PIC2 + 1, 0x02); /* ICW3: slave identity */
	outb(PIC1 + 1, 0x01); /* ICW4: 8086 mode */
	outb(PIC2 + 1, 0x01);
	outb(PIC1 + 1, 0xff); /* OCW1: mask everything */
	outb(PIC2 + 1, 0xff);
}

static u32 ioapic_read(u32 reg)
{
	mmio_write32(IOAPIC_BASE, reg);
	return mmio_read32(IOAPIC_BASE + 0x10);
}

static void ioapic_write(u32 reg, u32 v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}

static void ioapic_route_vec(u32 pin, int enable, u32 dest, u32 vec)
{
	/* fixed delivery, physical destination, edge, active high */
	ioapic_write(0x10 + 2 * pin + 1, dest << 24);
	ioapic_write(0x10 + 2 * pin, vec | (enable ? 0 : LVT_MASKED));
}

/* Redirection entry `pin`: low dword `lo` (vector, trigger, polarity, mask), physical `dest`. */
void ioapic_redirect(u32 pin, u32 lo, u32 dest)
{
	ioapic_write(0x10 + 2 * pin + 1, dest << 24);
	ioapic_write(0x10 + 2 * pin, lo);
}

static void ioapic_route(u32 pin, int enable, u32 dest)
{
	ioapic_route_vec(pin, enable, dest, VEC_TIMER);
}

static void pit_start(void)
{
	u16 div = (u16)((1193182 + TIMER_HZ / 2) / TIMER_HZ);
	outb(PIT_CMD, 0x34); /* ch0, lo/hi, mode 2 */
	outb(PIT_CH0, (u8)div);
	outb(PIT_CH0, (u8)(div >> 8));
}

static u64 count_ticks(int r)
{
	ticks = 0;
	route = r;
	sti();
	delay_us((u64)opt.timer_ms * 1000);
	cli();
	route = ROUTE_NONE;
	return ticks;
}

void timer_test(void)
{
	u32 me = lapic_id();
	pic_remap_and_mask();
	u32 ver = ioapic_read(1);
	int have_ioapic = ver != 0xffffffff;
	u32 pins = have_ioapic ? ((ver >> 16) & 0xff) + 1 : 0;
	for (u32 p = 0; p < pins && p < 24; p++)
		ioapic_route(p, 0, me);
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED | LVT_EXTINT);
	lapic_write(LAPIC_LVT_LINT1, LVT_NMI);
	pit_start();

	u64 n = 0;
	u32 pin = 0;
	const char *path = "none";
	static const u32 try_pins[] = { 2, 0 };
	for (u32 i = 0; i < ARRAY_LEN(try_pins) && !n && have_ioapic; i++) {
		pin = try_pins[i];
		if (pin >= pins)
			continue;
		ioapic_route(pin, 1, me);
		n = count_ticks(ROUTE_IOAPIC);
		ioapic_route(pin, 0, me);
		if (n)
			path = "ioapic";
	}
	if (!n) {
		lapic_write(LAPIC_LVT_LINT0, LVT_EXTINT);
		outb(PIC1 + 1, 0xfe); /* unmask IRQ0 only */
		n = count_ticks(ROUTE_PIC);
		outb(PIC1 + 1, 0xff);
		lapic_write(LAPIC_LVT_LINT0, LVT_MASKED | LVT_EXTINT);
		if (n)
			path = "pic";
	}
	outb(PIT_CMD, 0x30); /* ch0 mode 0, no reload: stop periodic IRQs */
	outb(PIT_CH0, 0x01);
	outb(PIT_CH0, 0x00);

	line_start(n ? "timer ok" : "timer fail");
	kv_str("path", path);
	if (n && path[0] == 'i')
		kv_dec("pin", pin);
	kv_dec("ticks", n);
	kv_dec("ms", opt.timer_ms);
	kv_dec("hz", TIMER_HZ);
	if (have_ioapic)
		kv_dec("ioapic_pins", pins);
	if (spurious)
		kv_dec("spurious", spurious);
	if (unexpected)
		kv_dec("unexpected", unexpected);
	out_end();
}
