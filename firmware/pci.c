/*
 * PCI enumeration as firmware does it, through configuration mechanism #1 (0xCF8 /
 * 0xCFC): scan bus 0; for every bridge found, give it the next bus number as its
 * secondary (subordinate 0xFF while its buses are scanned, then the last number
 * used), depth-first in slot order, so the numbers are the ones SeaBIOS and Linux
 * pick. Every function is reported with its BAR sizes (found by sizing: decode off,
 * write all ones, read the mask back, restore).
 *
 *   PROBE pci dev bdf=00:03.0 vendor=0x1af4 device=0x1042 class=0x010000 header=0 pin=1 bars=0:mem64p:0x4000,rom:0x10000
 *   PROBE pci bridge bdf=00:1c.0 secondary=1 subordinate=1
 *   PROBE pci buses=3 functions=7
 */
#include "probe.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc

static inline void pci_outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 pci_inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* bdf = bus << 8 | dev << 3 | fn */
u32 pcicfg_read32(u32 bdf, u32 reg)
{
	pci_outl(PCI_ADDR, 0x80000000u | bdf << 8 | (reg & 0xfc));
	return pci_inl(PCI_DATA);
}

void pcicfg_write32(u32 bdf, u32 reg, u32 v)
{
	pci_outl(PCI_ADDR, 0x80000000u | bdf << 8 | (reg & 0xfc));
	pci_outl(PCI_DATA, v);
}

static u32 next_bus, functions;

static void out_hexn(u32 v, u32 digits)
{
	static const char hex[] = "0123456789abcdef";
	while (digits--)
		out_char(hex[(v >> (4 * digits)) & 0xf]);
}

static void out_bdf(u32 bdf)
{
	out_str(" bdf=");
	out_hexn(bdf >> 8, 2);
	out_char(':');
	out_hexn((bdf >> 3) & 0x1f, 2);
	out_char('.');
	out_hexn(bdf & 7, 1);
}

/* Size of the register at `reg` by writing all ones (`keep` = read-only low bits). */
static u32 size_mask(u32 bdf, u32 reg)
{
	u32 old = pcicfg_read32(bdf, reg);
	pcicfg_write32(bdf, reg, ~0u);
	u32 m = pcicfg_read32(bdf, reg);
	pcicfg_write32(bdf, reg, old);
	return m;
}

static void report_bars(u32 bdf, u32 nbars, u32 rom_reg)
{
	u32 cmd = pcicfg_read32(bdf, 0x04);
	int any = 0;
	/* Decoding off while the BARs hold all ones. */
	pcicfg_write32(bdf, 0x04, cmd & 0xfffc);
	out_str(" bars=");
	for (u32 i = 0; i < nbars; i++) {
		u32 reg = 0x10 + 4 * i, idx = i;
		u32 lo = pcicfg_read32(bdf, reg);
		u32 m = size_mask(bdf, reg);
		u64 size;
		const char *kind;
		if (lo & 1) {
			m &= ~3u;
			if (m && !(m & 0xffff0000u))
				m |= 0xffff0000u; /* 16-bit I/O decoder */
			size = (u32)(~m + 1);
			kind = "io";
		} else if ((lo & 6) == 4 && i + 1 < nbars) {
			u64 mask = ((u64)size_mask(bdf, reg + 4) << 32) | (m & ~0xfu);
			size = mask ? ~mask + 1 : 0;
			kind = (lo & 8) ? "mem64p" : "mem64";
			i++;
		} else {
			m &= ~0xfu;
			size = m ? (u32)(~m + 1) : 0;
			kind = (lo & 8) ? "mem32p" : "mem32";
		}
		if (!size)
			continue;
		if (any)
			out_char(',');
		out_dec(idx);
		out_char(':');
		out_str(kind);
		out_char(':');
		out_hex(size);
		any = 1;
	}
	u32 rm = size_mask(bdf, rom_reg) & ~0x7ffu;
	if (rm) {
		if (any)
			out_char(',');
		out_str("rom:");
		out_hex((u64)(~rm + 1) & 0xffffffffu);
		any = 1;
	}
	if (!any)
		out_str("none");
	pcicfg_write32(bdf, 0x04, cmd & 0xffff);
}

static void scan_bus(u32 bus, u32 depth)
{
	for (u32 dev = 0; dev < 32; dev++) {
		for (u32 fn = 0; fn < 8; fn++) {
			u32 bdf = bus << 8 | dev << 3 | fn;
			u32 id = pcicfg_read32(bdf, 0);
			if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0) {
				if (fn == 0)
					break;
				continue;
			}
			functions++;
			u32 hdr = (pcicfg_read32(bdf, 0x0c) >> 16) & 0xff;
			u32 class = pcicfg_read32(bdf, 0x08) >> 8;
			u32 pin = (pcicfg_read32(bdf, 0x3c) >> 8) & 0xff;
			int bridge = (hdr & 0x7f) == 1;
			line_start("pci dev");
			out_bdf(bdf);
			kv_hex("vendor", id & 0xffff);
			kv_hex("device", id >> 16);
			out_str(" class=0x");
			out_hexn(class, 6);
			kv_dec("header", hdr & 0x7f);
			kv_dec("pin", pin);
			report_bars(bdf, bridge ? 2 : ((hdr & 0x7f) == 0 ? 6 : 0), bridge ? 0x38 : 0x30);
			out_end();
			if (bridge && depth < 8 && next_bus < 255) {
				u32 sec = ++next_bus;
				u32 r = pcicfg_read32(bdf, 0x18) & 0xff000000u;
				pcicfg_write32(bdf, 0x18, r | 0xff << 16 | sec << 8 | bus);
				scan_bus(sec, depth + 1);
				pcicfg_write32(bdf, 0x18, r | next_bus << 16 | sec << 8 | bus);
				line_start("pci bridge");
				out_bdf(bdf);
				kv_dec("secondary", sec);
				kv_dec("subordinate", next_bus);
				out_end();
			}
			if (fn == 0 && !(hdr & 0x80))
				break;
		}
	}
}

void pci_report(void)
{
	pci_outl(PCI_ADDR, 0x80000000u);
	if (pci_inl(PCI_ADDR) != 0x80000000u) {
		line_start("pci none");
		out_end();
		return;
	}
	next_bus = 0;
	functions = 0;
	scan_bus(0, 0);
	line_start("pci");
	kv_dec("buses", next_bus + 1);
	kv_dec("functions", functions);
	out_end();
}
