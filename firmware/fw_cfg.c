/* fw_cfg.c - find QEMU's firmware configuration device at 0x510 and report it.
 *
 * The I/O interface: write a 16-bit selector to 0x510, read the item byte by byte
 * from 0x511. The DMA interface: write the guest-physical address of a 16-byte
 * descriptor (control, length, address; all big-endian) to 0x514 as two big-endian
 * 32-bit halves; the device writes control back as 0 (done) or with bit 0 (error).
 * Lines: see README.md ("fwcfg").
 */
#include "probe.h"

#define FWCFG_PORT_SEL 0x510
#define FWCFG_PORT_DATA 0x511
#define FWCFG_PORT_DMA 0x514

#define FWCFG_SIGNATURE 0x00
#define FWCFG_ID 0x01
#define FWCFG_FILE_DIR 0x19

#define DMA_ERROR 0x01
#define DMA_READ 0x02
#define DMA_SELECT 0x08

#define DMA_MAX 4096 /* the largest file the DMA check reads */

struct fwcfg_dma {
	u32 control;
	u32 length;
	u64 address;
} __attribute__((packed, aligned(16)));

static struct fwcfg_dma dma_desc;
static u8 dma_buf[DMA_MAX];
static u8 io_buf[DMA_MAX];

static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void fw_select(u16 key) { outw(FWCFG_PORT_SEL, key); }

static void fw_read(void *dst, usize n)
{
	u8 *p = dst;
	for (usize i = 0; i < n; i++)
		p[i] = inb(FWCFG_PORT_DATA);
}

static u32 be32(const u8 *p) { return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3]; }

static int printable(const u8 *p, u32 n)
{
	for (u32 i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] >= 0x7f)
			return 0;
	return 1;
}

/* Reads item `sel` (n bytes) into `dst` by DMA. Returns the control word written back,
 * or ~0 when the device did not complete. */
static u32 dma_read(u16 sel, void *dst, u32 n)
{
	u64 addr = (u64)&dma_desc;
	dma_desc.control = __builtin_bswap32(((u32)sel << 16) | DMA_SELECT | DMA_READ);
	dma_desc.length = __builtin_bswap32(n);
	dma_desc.address = __builtin_bswap64((u64)dst);
	barrier();
	outl(FWCFG_PORT_DMA, __builtin_bswap32((u32)(addr >> 32)));
	outl(FWCFG_PORT_DMA + 4, __builtin_bswap32((u32)addr));
	/* QEMU and vmrun complete the transfer before the OUT returns; poll a little in
	 * case a device does not. */
	for (u32 i = 0; i < 1000000; i++) {
		u32 c = __builtin_bswap32(*(volatile u32 *)&dma_desc.control);
		if (!(c & ~DMA_ERROR))
			return c;
		pause();
	}
	return ~0u;
}

static void dma_check(u32 id, u16 sel, u32 size, const char *name)
{
	u32 lo = inl(FWCFG_PORT_DMA), hi = inl(FWCFG_PORT_DMA + 4);
	line_start("fwcfg dma");
	if (!(id & 2)) {
		out_str(" none");
		out_end();
		return;
	}
	/* "QEMU CFG" as a big-endian 64-bit register: the bytes in order. */
	if (memcmp(&lo, "QEMU", 4) || memcmp(&hi, " CFG", 4)) {
		out_str(" fail reason=signature");
		kv_hex("sig", ((u64)__builtin_bswap32(lo) << 32) | __builtin_bswap32(hi));
		out_end();
		return;
	}
	if (!sel) {
		out_str(" fail reason=no-file");
		out_end();
		return;
	}
	memset(dma_buf, 0x5a, size);
	memset(io_buf, 0xa5, size);
	u32 ctl = dma_read(sel, dma_buf, size);
	fw_select(sel);
	fw_read(io_buf, size);
	if (ctl) {
		out_str(" fail reason=control");
		kv_hex("control", ctl);
	} else if (memcmp(dma_buf, io_buf, size)) {
		out_str(" fail reason=mismatch");
	} else {
		out_str(" ok");
	}
	out_str(" file=");
	out_quoted(name, 56);
	kv_dec("size", size);
	out_end();
}

void fwcfg_report(void)
{
	if (opt.fwcfg == 0 || (opt.fwcfg == 2 && opt.quick))
		return;
	u8 sig[4];
	fw_select(FWCFG_SIGNATURE);
	fw_read(sig, 4);
	if (memcmp(sig, "QEMU", 4)) {
		line_start("fwcfg none");
		out_end();
		return;
	}
	u8 idb[4], cnt[4];
	fw_select(FWCFG_ID);
	fw_read(idb, 4);
	u32 id = idb[0] | ((u32)idb[1] << 8) | ((u32)idb[2] << 16) | ((u32)idb[3] << 24);
	fw_select(FWCFG_FILE_DIR);
	fw_read(cnt, 4);
	u32 n = be32(cnt);
	line_start("fwcfg");
	out_str(" signature=\"QEMU\"");
	kv_hex("id", id);
	kv_dec("files", n);
	out_end();

	/* The directory stays selected while the entries are read one by one; the
	 * contents of opt/ files are read after it, by selector. */
	static struct {
		u16 sel;
		u32 size;
	} small[16];
	static char small_name[16][56];
	u32 nsmall = 0;
	u16 dma_sel = 0;
	u32 dma_size = 0;
	static char dma_name[57];
	for (u32 i = 0; i < n && i < 4096; i++) {
		u8 e[64];
		fw_read(e, sizeof(e));
		char *name = (char *)e + 8;
		e[63] = 0;
		u32 size = be32(e);
		u16 sel = (u16)((e[4] << 8) | e[5]);
		line_start("fwcfg file name=");
		out_quoted(name, 56);
		kv_dec("size", size);
		kv_hex("select", sel);
		out_end();
		if (!memcmp(name, "opt/", 4) && size <= 64 && nsmall < ARRAY_LEN(small)) {
			small[nsmall].sel = sel;
			small[nsmall].size = size;
			memcpy(small_name[nsmall], name, 56);
			nsmall++;
		}
		if (size > dma_size && size <= DMA_MAX) {
			dma_sel = sel;
			dma_size = size;
			memcpy(dma_name, name, 56);
		}
	}
	for (u32 i = 0; i < nsmall; i++) {
		u8 body[65];
		fw_select(small[i].sel);
		fw_read(body, small[i].size);
		body[small[i].size] = 0;
		if (!printable(body, small[i].size))
			continue;
		line_start("fwcfg data name=");
		out_quoted(small_name[i], 56);
		out_str(" value=");
		out_quoted((const char *)body, 65);
		out_end();
	}
	dma_check(id, dma_sel, dma_size, dma_name);
}
