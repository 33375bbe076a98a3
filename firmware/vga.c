/* vga.c - the standard VGA (Bochs/QEMU std VGA, PCI 1234:1111).
 *
 * vga=text (default): load a few glyphs of the probe's own generated font into plane 2,
 * write a line in text mode at row VGA_ROW, column VGA_COL, read it back.
 * vga=gfx: the text part, then a Bochs VBE (DISPI) mode VGA_W x VGA_H x 32 and a test
 * pattern of four filled squares, through the linear framebuffer at BAR0 (found by a
 * PCI scan of bus 0; the probe assigns BAR0 itself if nobody did), or, without PCI,
 * through the 64 KiB bank at 0xA0000. vga=0 skips it all.
 *
 * The font: glyph rows 1 and 14 are 0x7E, rows 2-13 are 0x42 with 0x18 added when bit
 * ((row - 2) % 8) of the character code is set, rows 0 and 15 are empty. tests/vga.rs
 * computes the same glyphs.
 */
#include "probe.h"

#define VGA_ROW 2
#define VGA_COL 4
#define VGA_ATTR 0x1e
#define VGA_W 320
#define VGA_H 200
#define VGA_LFB_DEFAULT 0xf0000000u /* clear of virtio BARs (from 0xE0000000) and q35 ECAM */

static const char vga_text[] = "VMRUN VGA";

static inline u16 vga_inw(u16 port)
{
	u16 v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void vga_outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 vga_inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void seq(u8 i, u8 v) { outb(0x3c4, i); outb(0x3c5, v); }
static void gfx(u8 i, u8 v) { outb(0x3ce, i); outb(0x3cf, v); }
static void crtc(u8 i, u8 v) { outb(0x3d4, i); outb(0x3d5, v); }

u8 vga_glyph_row(u8 ch, u32 row)
{
	if (row == 0 || row >= 15)
		return 0;
	if (row == 1 || row == 14)
		return 0x7e;
	return (u8)(0x42 | (((ch >> ((row - 2) % 8)) & 1) ? 0x18 : 0));
}

static int vga_present(void)
{
	if (!(inb(0x3cc) & 1))
		return 0; /* we only drive colour emulation (CRTC at 0x3D4) */
	outb(0x3d4, 0x0e);
	u8 old = inb(0x3d5);
	outb(0x3d5, 0x5a);
	u8 back = inb(0x3d5);
	outb(0x3d5, old);
	return back == 0x5a;
}

static int vga_text_test(void)
{
	/* Font load: plane 2 only, sequential addressing, A0000 64K, read plane 2. */
	seq(2, 0x04);
	seq(4, 0x06);
	gfx(4, 0x02);
	gfx(5, 0x00);
	gfx(6, 0x04);
	gfx(8, 0xff);
	gfx(1, 0x00);
	gfx(3, 0x00);
	volatile u8 *win = (volatile u8 *)0xa0000ul;
	for (usize i = 0; vga_text[i]; i++) {
		u8 ch = (u8)vga_text[i];
		for (u32 r = 0; r < 16; r++)
			win[ch * 32u + r] = vga_glyph_row(ch, r);
	}
	int font_ok = win[(u8)'V' * 32u + 1] == 0x7e;
	/* Back to text: planes 0/1, odd/even, B8000. */
	seq(2, 0x03);
	seq(4, 0x02);
	gfx(4, 0x00);
	gfx(5, 0x10);
	gfx(6, 0x0e);
	volatile u16 *cells = (volatile u16 *)0xb8000ul;
	usize n = sizeof(vga_text) - 1;
	for (usize i = 0; i < n; i++)
		cells[VGA_ROW * 80 + VGA_COL + i] = (u16)(VGA_ATTR << 8 | (u8)vga_text[i]);
	int back_ok = 1;
	for (usize i = 0; i < n; i++)
		if (cells[VGA_ROW * 80 + VGA_COL + i] != (u16)(VGA_ATTR << 8 | (u8)vga_text[i]))
			back_ok = 0;
	u16 cur = VGA_ROW * 80 + VGA_COL + (u16)n;
	crtc(0x0e, (u8)(cur >> 8));
	crtc(0x0f, (u8)cur);
	line_start("vga text");
	out_str(font_ok && back_ok ? " ok" : " fail");
	kv_dec("row", VGA_ROW);
	kv_dec("col", VGA_COL);
	kv_hex("attr", VGA_ATTR);
	out_str(" text=");
	out_quoted(vga_text, sizeof(vga_text));
	out_end();
	return font_ok && back_ok;
}

static u32 pci_cfg(u32 dev, u32 off)
{
	vga_outl(0xcf8, 0x80000000u | dev << 11 | (off & 0xfc));
	return vga_inl(0xcfc);
}
static void pci_cfg_write(u32 dev, u32 off, u32 v)
{
	vga_outl(0xcf8, 0x80000000u | dev << 11 | (off & 0xfc));
	vga_outl(0xcfc, v);
}

/* BAR0 of the first 1234:1111 on bus 0, assigned and decoding; 0 when none. */
static u64 vga_find_lfb(int *assigned)
{
	for (u32 dev = 0; dev < 32; dev++) {
		if (pci_cfg(dev, 0) != 0x11111234u)
			continue;
		u32 bar = pci_cfg(dev, 0x10) & ~0xfu;
		if (!bar) {
			pci_cfg_write(dev, 0x10, VGA_LFB_DEFAULT);
			bar = pci_cfg(dev, 0x10) & ~0xfu;
			*assigned = 1;
		}
		u32 cmd = pci_cfg(dev, 0x04);
		pci_cfg_write(dev, 0x04, (cmd & 0xffff) | 0x2);
		return bar;
	}
	return 0;
}

static void dispi(u16 i, u16 v) { outw(0x1ce, i); outw(0x1cf, v); }

/* The pattern: four 32x32 squares at y 16..47, x = 16 + 48 k. */
static const u32 vga_colors[4] = { 0x00ff0000, 0x0000ff00, 0x000000ff, 0x00ffffff };

static void vga_gfx_test(void)
{
	outw(0x1ce, 0);
	outw(0x1cf, 0xb0c5);
	outw(0x1ce, 0);
	u16 id = vga_inw(0x1cf);
	if (id < 0xb0c0 || id > 0xb0c5) {
		line_start("vga gfx none");
		kv_hex("id", id);
		out_end();
		return;
	}
	int assigned = 0;
	u64 lfb = vga_find_lfb(&assigned);
	dispi(4, 0);
	dispi(1, VGA_W);
	dispi(2, VGA_H);
	dispi(3, 32);
	dispi(4, lfb ? 0x41 : 0x01);
	dispi(5, 0); /* bank 0: rows 0..51 when banked */
	volatile u32 *fb = (volatile u32 *)(lfb ? lfb : 0xa0000ul);
	for (u32 k = 0; k < 4; k++)
		for (u32 y = 16; y < 48; y++)
			for (u32 x = 16 + 48 * k; x < 48 + 48 * k; x++)
				fb[y * VGA_W + x] = vga_colors[k];
	int ok = fb[20 * VGA_W + 20] == vga_colors[0] && fb[40 * VGA_W + 170] == vga_colors[3];
	line_start("vga");
	if (lfb)
		kv_hex("lfb", lfb);
	else
		out_str(" lfb=none");
	kv_hex("id", id);
	if (assigned)
		out_str(" assigned=probe");
	out_str(" mode=320x200x32");
	out_str(ok ? " pattern drawn" : " pattern fail");
	out_end();
}

void vga_report(void)
{
	if (!opt.vga)
		return;
	if (!vga_present()) {
		line_start("vga none");
		out_end();
		return;
	}
	vga_text_test();
	if (opt.vga == 2)
		vga_gfx_test();
}
