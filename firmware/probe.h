/* probe.h - shared declarations for the vmrun probe guest.
 *
 * The probe is a tiny PVH guest: entry.S gets it from 32-bit protected mode into
 * long mode with bootstrap page tables, then probe_main() (main.c) runs in C.
 * Every report line goes out on COM1 and starts with "PROBE ".
 */
#ifndef PROBE_H
#define PROBE_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;
typedef unsigned long usize;

#define NULL ((void *)0)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define PROBE_VERSION 1
#define MAX_CPUS 64
#define AP_STACK_SIZE 4096

/* Interrupt vectors used by the probe. */
#define VEC_PIC_BASE 0x20   /* 8259 master 0x20..0x27, slave 0x28..0x2f */
#define VEC_TIMER 0x30      /* IOAPIC-routed PIT interrupt */
#define VEC_RTC 0x31        /* IOAPIC-routed RTC interrupt (IRQ 8) */
#define VEC_VIRTIO 0x40     /* virtio completion (MSI-X or IOAPIC-routed INTx) */
#define VEC_SCI 0x41        /* ACPI SCI through its IOAPIC pin (idle=1) */
#define VEC_TICK 0x42       /* LAPIC timer (idle=1 ticks) */
#define VEC_WORK 0x43       /* work=1: the boot CPU wakes the others */
#define VEC_SPURIOUS 0xff   /* LAPIC spurious vector */

/* ---- struct hvm_start_info (Xen PVH boot ABI, version 1) ---- */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr;      /* version >= 1 */
	u32 memmap_entries;    /* version >= 1 */
	u32 reserved;
};
struct hvm_memmap_entry {
	u64 addr;
	u64 size;
	u32 type;
	u32 reserved;
};
struct hvm_modlist_entry {
	u64 paddr;
	u64 size;
	u64 cmdline_paddr;
	u64 reserved;
};
#define MEM_RAM 1

/* ---- port and CPU helpers ---- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u16 inw(u16 port)
{
	u16 v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* ---- lib.c ---- */
void *memset(void *d, int c, usize n);
void *memcpy(void *d, const void *s, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int streq(const char *a, const char *b);

/* ---- serial.c: COM1 + optional debugcon, line-oriented report output ---- */
void serial_init(void);
void out_debugcon(int on);
void out_lock(void);
void out_unlock(void);
void out_str(const char *s);
void out_char(char c);
void out_hex(u64 v);
void out_dec(u64 v);
void out_quoted(const char *s, usize max);
void out_end(void); /* terminates the line ("\r\n"), flushes */
int serial_getc(void); /* -1 if nothing received */
int serial_present(void);
void line_start(const char *tag); /* takes the output lock; out_end() releases */
void kv_hex(const char *key, u64 v);
void kv_dec(const char *key, u64 v);
void kv_str(const char *key, const char *v);

/* ---- time.c: TSC calibrated against the PIT ---- */
extern u64 tsc_khz;
void time_calibrate(void);
void delay_us(u64 us);
u64 tsc_deadline_us(u64 us);
int tsc_passed(u64 deadline);

/* ---- lapic / irq (irq.c) ---- */
extern u64 lapic_base;
extern int x2apic;
void lapic_init(void);
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
void lapic_send_ipi(u32 icr_lo, u32 dest);
u32 lapic_id(void);
u32 lapic_id_this_cpu(void);
void lapic_eoi(void);
void idt_init(void);
void idt_load(void);
void timer_test(void);
void pic_remap_and_mask(void); /* 8259s to vectors 0x20-0x2f, all masked */

/* ---- paging.c ---- */
extern u64 page_table_cr3;
void paging_init(const struct hvm_start_info *si);
int range_reserved(u64 base, u64 len);
u64 first_free(u64 lo, u64 hi, u64 len);
void reserve_range(u64 base, u64 len);

/* ---- mem.c ---- */
void mem_report(const struct hvm_start_info *si);
void memtest(const struct hvm_start_info *si);
int mem_is_ram(const struct hvm_start_info *si, u64 base, u64 len);

/* ---- fw_cfg.c ---- */
void fwcfg_report(void);
void rtc_report(void);
void rtc_irq_test(void);

/* ---- acpi.c ---- */
struct acpi_info {
	u32 have_fadt;
	u16 sci;          /* FADT SCI_INT (an ISA IRQ) */
	u32 sci_gsi;      /* its GSI (IOAPIC pin), from the MADT override if any */
	u16 sci_flags;    /* MPS INTI flags of that override (0: conforms) */
	u32 sci_override;
	u32 smi_cmd;
	u8 acpi_enable;
	u32 pm1a_evt, pm1a_cnt;
	u8 pm1_evt_len;
	u32 flags;        /* FADT flags */
};
extern struct acpi_info acpi_info;
void acpi_report(const struct hvm_start_info *si);
int acpi_sci_level(void);
int acpi_sci_low(void);

/* ---- idle.c: idle=1, ticks and the power button ---- */
void idle_loop(void);
void idle_isr(u64 vector);

/* ---- net.c: the network tests over a NIC driver (virtio_net.c, e1000.c) ---- */
#define NET_RXQ 32
#define NET_TXQ 32
#define NET_BUF 2048
enum { NIC_AUTO, NIC_VIRTIO, NIC_E1000, NIC_ALL };
/* A polled NIC: transmit slot i owns buffer i. */
struct nic {
	int (*tx_slot)(u8 **buf);          /* next free slot and its frame buffer, or -1 */
	u8 *(*tx_buf)(u32 i);              /* slot i's frame buffer */
	void (*tx_post)(int i, u32 len);   /* queue slot i's frame (no notification) */
	void (*tx_kick)(void);             /* tell the NIC about queued frames */
	int (*tx_idle)(void);              /* every queued frame sent (reaps) */
	int (*rx_poll)(const u8 **f, u32 *len); /* a received frame's slot, or -1 */
	void (*rx_release)(int i);         /* give slot i back to the NIC */
	void (*close)(void);               /* stop the NIC (its DMA) before another uses the buffers */
};
extern u8 net_rx_bufs[NET_RXQ][NET_BUF];
extern u8 net_tx_bufs[NET_TXQ][NET_BUF];
extern u8 net_ring_mem[2][4096];
void net_report(void);
void net_copy(void *d, const void *s, usize n);
void net_fill(void *d, u8 v, usize n);
void out_mac(const char *key, const u8 *m);
const struct nic *virtio_net_open(u8 *mac); /* reports the `net` line; NULL: none/failed */
const struct nic *e1000_open(u8 *mac);

/* ---- pci.c: configuration mechanism #1, bus scan (bdf = bus << 8 | dev << 3 | fn) ---- */
void pci_report(void);
u32 pcicfg_read32(u32 bdf, u32 reg);
void pcicfg_write32(u32 bdf, u32 reg, u32 v);

/* ---- vga.c ---- */
void vga_report(void);
u8 vga_glyph_row(u8 ch, u32 row);

/* ---- virtio.c: virtio-mmio / virtio-pci discovery, polled split virtqueues ---- */
#define VQ_MAX 32 /* descriptors per queue: one 4 KiB page holds the rings */
struct vq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};
enum { VIRQ_POLL, VIRQ_MSIX, VIRQ_INTX };
struct vdev {
	u32 type, pci, bdf, notify_mult;
	u32 irq, gsi; /* VIRQ_*, and the IOAPIC pin for VIRQ_INTX */
	u64 base;   /* mmio: the window; pci: the common configuration structure */
	u64 notify, isr, devcfg, offered;
};
struct vq {
	struct vdev *dev;
	u16 index, size, last_used, next;
	struct vq_desc *desc;
	volatile u16 *avail;
	volatile u32 *used;
	u64 notify_addr;
};
struct vbuf {
	u64 addr;
	u32 len;
	u32 write; /* device-writable */
};
#define PCI_ID_E1000 0x100e8086u /* device << 16 | vendor */
int pcifn_find(u32 id, u32 nth, u32 *bdf); /* a recorded function (virtio, e1000) */
u64 pcifn_bar(u32 bdf, u32 bar);           /* memory BAR address, placed if unassigned */
void pcifn_describe(u32 bdf);              /* pci@BB:SS.F */
int vdev_find(u32 type, u32 nth, struct vdev *d);
void vdev_describe(const struct vdev *d);
u64 vdev_init(struct vdev *d, u64 want); /* accepted features, ~0 if refused */
u32 vdev_status(struct vdev *d);
void vdev_reset(struct vdev *d);
void vdev_driver_ok(struct vdev *d);
u8 vdev_cfg8(struct vdev *d, u32 off);
u32 vdev_cfg32(struct vdev *d, u32 off);
int vq_setup(struct vdev *d, struct vq *q, u16 index, u16 size, u8 *page4k);
int vq_submit(struct vq *q, const struct vbuf *bufs, u32 n); /* head, or -1 */
void vq_post(struct vq *q, u16 i, u64 addr, u32 len, u32 write); /* descriptor i, no kick */
void vq_kick(struct vq *q);
int vq_poll(struct vq *q, u32 *len);                         /* used head, or -1 */
int vq_wait(struct vq *q, u32 *len, u64 spins);              /* -2: needs reset */

/* ---- virtio_irq.c: MSI-X / INTx for a virtio-pci function ---- */
int vdev_irq_setup(struct vdev *d, u32 mode); /* 0, or -1 (reason in d->irq = 0) */
void vdev_irq_off(struct vdev *d);
u64 vdev_irqs(void);                          /* completion interrupts so far */
int vq_wait_irq(struct vq *q, u32 *len, u64 seen); /* -3: no interrupt came */
void virtio_isr(void);                        /* from isr_dispatch */
void ioapic_redirect(u32 pin, u32 lo, u32 dest);

/* ---- virtio_blk.c ---- */
void blk_report(void);

/* ---- work.c ---- */
void work_keep_disk(const struct vdev *d, const struct vq *q);
void work_ap(u32 slot);
void work_isr(void);
void work_tick(u64 n);
u32 blk_rw(struct vq *q, int write, u64 sector, void *buf, u32 len); /* virtio_blk.c: status */

/* ---- smp.c ---- */
void smp_start(const struct hvm_start_info *si, u32 expected, u32 wait_ms);
void ap_main(u64 idx);

/* ---- main.c: options and exits ---- */
struct options {
	u32 quick;
	u32 cpus;        /* 0 = not given */
	u64 pio;         /* 0 = not given */
	u32 echo;
	u32 pm_port;     /* 0 = not given */
	u32 s5;
	u32 exit_mode;   /* EXIT_* */
	u32 debugcon;
	u32 memtest;
	u32 smp;
	u32 timer;
	u32 smp_wait_ms;
	u32 timer_ms;
	u32 crash;
	u32 fwcfg;       /* 0 off, 1 on, 2 (default) on unless quick=1 */
	u32 rtc;         /* report the CMOS RTC's time (not with quick=1) */
	u32 acpi;        /* find and walk the ACPI tables */
	u32 net;         /* NIC report (default 1) */
	u32 nic;         /* nic=auto|virtio|e1000: which NIC model the net tests use (NIC_*) */
	u32 net_send;    /* netsend=N: broadcast N test frames */
	u32 net_recv;    /* netrecv=N: wait for N test frames from another MAC */
	u32 net_echo;    /* netecho=N: answer N test frames back to their sender */
	u32 net_peers;   /* netpeers=MS: beacon and list the MACs heard for MS ms */
	u32 net_ping;    /* netping=N: N timed round trips to a netecho peer */
	u32 net_bench;   /* netbench=N: send N full-size frames, report frames/s */
	u32 net_wait_ms; /* netwait: bound of netrecv/netecho (default 10000) */
	u32 pci;         /* pci=0 skips the PCI scan */
	u32 vga;         /* vga=0|text|gfx: 0, 1 (default), 2 */
	u64 virtio_mmio;   /* virtio_mmio=BASE: first virtio-mmio window */
	u32 virtio_mmio_n; /* virtio_mmio_n=N: 0x200-byte windows to scan (default 8) */
	u32 virtio_pci;    /* virtio_pci=0 skips the PCI scan */
	u32 blk;           /* blk=0 skips the disks */
	u32 work;          /* work=1: with idle=1, disk, IPI and echo work every tick */
	u32 blk_write;     /* blkwrite=0: read-only check */
	u32 blk_sectors;   /* blksectors=N: sectors written and read back (default 8) */
	u32 blk_bench;     /* blkbench=MiB: throughput */
	u32 virt_irq;      /* virtirq=poll|msix|intx: how the blk driver waits (VIRQ_*) */
	u32 idle;          /* idle=1: stay up after the report until the power button */
	u32 tick_ms;       /* tickms=N: idle tick period (default 100) */
};
enum { EXIT_DEFAULT, EXIT_POWEROFF, EXIT_TRIPLE, EXIT_RESET, EXIT_HALT };
extern struct options opt;
extern const struct hvm_start_info *start_info;
void probe_main(u32 start_info_paddr);
__attribute__((noreturn)) void probe_exit(void);
__attribute__((noreturn)) void triple_fault(void);
__attribute__((noreturn)) void halt_forever(void);

/* ---- entry.S symbols ---- */
extern u8 _image_start[], _image_end[];
extern u8 ap_tramp_start[], ap_tramp_end[];
extern u8 isr_stubs[];
extern u64 gdt_desc_base;
extern volatile u32 ap_cr3;
extern volatile u32 ap_stack_next;
extern u8 ap_stacks[];

#endif
