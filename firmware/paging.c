/* paging.c - final identity page tables, sized from the PVH memory map.
 *
 * entry.S maps the low 4 GiB with 2 MiB pages from tables inside the image.
 * Here we map [0, top) where top is the end of the highest RAM region (at
 * least 4 GiB so the LAPIC/IOAPIC are reachable, at most 1 TiB), with 1 GiB
 * pages when CPUID advertises pdpe1gb and 2 MiB pages otherwise. The 3..4 GiB
 * range always uses 2 MiB pages so the non-RAM part of it (the MMIO hole) can
 * be mapped uncached. The tables go in the first free low RAM after the image.
 */
#include "probe.h"

#define GIB (1ul << 30)
#define MIB2 (1ul << 21)
#define MAX_TOP (1ul << 40)
#define PTE_P 0x1ul
#define PTE_W 0x2ul
#define PTE_PWT 0x8ul
#define PTE_PCD 0x10ul
#define PTE_PS 0x80ul

u64 page_table_cr3;

static struct {
	u64 base, end;
} reserved[24];
static int nreserved;

void reserve_range(u64 base, u64 len)
{
	if (len && nreserved < (int)ARRAY_LEN(reserved)) {
		reserved[nreserved].base = base;
		reserved[nreserved].end = base + len;
		nreserved++;
	}
}

static u64 align_up(u64 v, u64 a) { return (v + a - 1) & ~(a - 1); }

/* Returns the end of a reserved range overlapping [base, base+len), or 0. */
static u64 reserved_overlap(u64 base, u64 len)
{
	for (int i = 0; i < nreserved; i++)
		if (base < reserved[i].end && reserved[i].base < base + len)
			return reserved[i].end;
	return 0;
}

int range_reserved(u64 base, u64 len) { return reserved_overlap(base, len) != 0; }

/* First page-aligned address >= lo where [a, a+len) is unreserved and ends by hi. */
u64 first_free(u64 lo, u64 hi, u64 len)
{
	u64 a = align_up(lo, 4096);
	for (;;) {
		if (a + len > hi || a + len < a)
			return 0;
		u64 end = reserved_overlap(a, len);
		if (!end)
			return a;
		a = align_up(end, 4096);
	}
}

static void reserve_boot_data(const struct hvm_start_info *si)
{
	reserve_range((u64)_image_start, (u64)(_image_end - _image_start));
	reserve_range((u64)si, sizeof(*si));
	if (si->version >= 1 && si->memmap_paddr)
		reserve_range(si->memmap_paddr, (u64)si->memmap_entries * sizeof(struct hvm_memmap_entry));
	if (si->cmdline_paddr)
		reserve_range(si->cmdline_paddr, strlen((const char *)si->cmdline_paddr) + 1);
	if (si->nr_modules && si->modlist_paddr) {
		const struct hvm_modlist_entry *m = (const void *)si->modlist_paddr;
		reserve_range(si->modlist_paddr, (u64)si->nr_modules * sizeof(*m));
		for (u32 i = 0; i < si->nr_modules && i < 8; i++)
			reserve_range(m[i].paddr, m[i].size);
	}
}

/* One string instruction: cheap even when every guest instruction is emulated. */
static void zero_qwords(u64 *p, u64 n)
{
	__asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(0ul) : "memory");
}

/* Marks the 2 MiB pages of 3..4 GiB that are not entirely RAM uncached. The
 * RAM regions overlapping that GiB are collected first, so the per-page test
 * is a short loop (guest instructions are expensive under emulation). */
static void mark_hole_uncached(const struct hvm_start_info *si, u64 *dir)
{
	const struct hvm_memmap_entry *mm = (const void *)si->memmap_paddr;
	u32 n = si->version >= 1 && si->memmap_paddr ? si->memmap_entries : 0;
	u64 lo[8], hi[8];
	u32 k = 0;
	for (u32 i = 0; i < n && k < 8; i++) {
		u64 b = mm[i].addr, e = mm[i].addr + mm[i].size;
		if (mm[i].type == MEM_RAM && e > 3 * GIB && b < 4 * GIB) {
			lo[k] = b;
			hi[k] = e;
			k++;
		}
	}
	for (u64 j = 0; j < 512; j++) {
		u64 a = 3 * GIB + j * MIB2;
		int ram = 0;
		for (u32 r = 0; r < k && !ram; r++)
			ram = lo[r] <= a && a + MIB2 <= hi[r];
		if (!ram)
			dir[j] |= PTE_PCD | PTE_PWT;
	}
}

static int has_1g_pages(void)
{
	u32 a, b, c, d;
	cpuid(0x80000000, 0, &a, &b, &c, &d);
	if (a < 0x80000001)
		return 0;
	cpuid(0x80000001, 0, &a, &b, &c, &d);
	return (d >> 26) & 1;
}

void paging_init(const struct hvm_start_info *si)
{
	reserve_boot_data(si);
	const struct hvm_memmap_entry *mm = (const void *)si->memmap_paddr;
	u32 n = si->version >= 1 && si->memmap_paddr ? si->memmap_entries : 0;
	u64 top = 4 * GIB;
	for (u32 i = 0; i < n; i++)
		if (mm[i].type == MEM_RAM && mm[i].addr + mm[i].size > top)
			top = mm[i].addr + mm[i].size;
	int truncated = top > MAX_TOP;
	if (truncated)
		top = MAX_TOP;

	u64 gib = align_up(top, GIB) / GIB;
	u64 npdpt = (gib + 511) / 512;
	int huge = has_1g_pages();
	u64 npd = huge ? 1 : gib;
	u64 bytes = (1 + npdpt + npd) * 4096;

	u64 tables = 0;
	for (u32 i = 0; i < n && !tables; i++) {
		u64 lo = mm[i].addr < 0x100000 ? 0x100000 : mm[i].addr;
		u64 hi = mm[i].addr + mm[i].size;
		if (mm[i].type != MEM_RAM || hi <= lo)
			continue;
		if (hi > 4 * GIB)
			hi = 4 * GIB;
		tables = first_free(lo, hi, bytes);
	}
	if (!tables) {
		line_start("paging fail reason=no-free-ram");
		kv_hex("need", bytes);
		out_end();
		return; /* keep the bootstrap 4 GiB map */
	}
	reserve_range(tables, bytes);
	zero_qwords((u64 *)tables, bytes / 8);

	u64 *pml4 = (u64 *)tables;
	u64 *pdpt = pml4 + 512;
	u64 *pd = pdpt + 512 * npdpt;
	for (u64 i = 0; i < npdpt; i++)
		pml4[i] = (u64)(pdpt + 512 * i) | PTE_P | PTE_W;
	for (u64 g = 0; g < gib; g++) {
		if (huge && g != 3) {
			pdpt[g] = (g * GIB) | PTE_P | PTE_W | PTE_PS;
			continue;
		}
		u64 *dir = huge ? pd : pd + 512 * g;
		pdpt[g] = (u64)dir | PTE_P | PTE_W;
		u64 e = g * GIB | PTE_P | PTE_W | PTE_PS;
		for (u64 j = 0; j < 512; j++, e += MIB2)
			dir[j] = e;
		if (g == 3)
			mark_hole_uncached(si, dir);
	}
	page_table_cr3 = tables;
	__asm__ volatile("mov %0, %%cr3" : : "r"(tables) : "memory");

	line_start("paging");
	kv_str("page", huge ? "1g" : "2m");
	kv_hex("top", gib * GIB);
	kv_hex("tables", tables);
	kv_dec("pages", bytes / 4096);
	if (truncated)
		out_str(" truncated");
	out_end();
}
