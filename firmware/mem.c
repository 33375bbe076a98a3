/* mem.c - report the PVH memory map and test RAM at both ends of each region. */
#include "probe.h"

#define BLOCK 4096


static u64 saved[BLOCK / 8];

static u32 memmap_count(const struct hvm_start_info *si)
{
	return si->version >= 1 && si->memmap_paddr ? si->memmap_entries : 0;
}

int mem_is_ram(const struct hvm_start_info *si, u64 base, u64 len)
{
	const struct hvm_memmap_entry *mm = (const void *)si->memmap_paddr;
	for (u32 i = 0; i < memmap_count(si); i++)
		if (mm[i].type == MEM_RAM && mm[i].addr <= base && base + len <= mm[i].addr + mm[i].size)
			return 1;
	return 0;
}

void mem_report(const struct hvm_start_info *si)
{
	const struct hvm_memmap_entry *mm = (const void *)si->memmap_paddr;
	u32 n = memmap_count(si);
	if (!n) {
		line_start("mem none");
		out_end();
		return;
	}
	for (u32 i = 0; i < n; i++) {
		line_start("mem");
		kv_hex("base", mm[i].addr);
		kv_hex("size", mm[i].size);
		kv_dec("type", mm[i].type);
		out_end();
	}
}

/* Writes two patterns over [addr, addr+len), checks them, restores the data.
 * Returns 0 or the address of the first mismatch (details in want and got). */
static u64 test_block(u64 addr, u64 len, u64 *want, u64 *got)
{
	volatile u64 *p = (volatile u64 *)addr;
	u64 words = len / 8;
	for (u64 i = 0; i < words; i++)
		saved[i] = p[i];
	u64 bad = 0;
	for (int pass = 0; pass < 2 && !bad; pass++) {
		for (u64 i = 0; i < words; i++) {
			u64 v = (addr + i * 8) ^ 0x5aa5c33c0ff0a55aul;
			p[i] = pass ? ~v : v;
		}
		for (u64 i = 0; i < words; i++) {
			u64 v = (addr + i * 8) ^ 0x5aa5c33c0ff0a55aul;
			if (pass)
				v = ~v;
			if (p[i] != v) {
				bad = addr + i * 8;
				*want = v;
				*got = p[i];
				break;
			}
		}
	}
	for (u64 i = 0; i < words; i++)
		p[i] = saved[i];
	return bad;
}

void memtest(const struct hvm_start_info *si)
{
	const struct hvm_memmap_entry *mm = (const void *)si->memmap_paddr;
	for (u32 i = 0; i < memmap_count(si); i++) {
		if (mm[i].type != MEM_RAM)
			continue;
		u64 lo = mm[i].addr < 0x100000 ? 0x100000 : mm[i].addr;
		u64 hi = (mm[i].addr + mm[i].size) & ~7ul;
		if (hi <= lo || hi - lo < 64)
			continue;
		u64 len = hi - lo < BLOCK ? (hi - lo) & ~7ul : BLOCK;
		u64 start = first_free(lo, hi, len);
		u64 end = hi - len;
		u64 want = 0, got = 0, bad = 0;
		int tested = 0;
		if (start) {
			bad = test_block(start, len, &want, &got);
			tested++;
		}
		if (!bad && end != start && !range_reserved(end, len)) {
			bad = test_block(end, len, &want, &got);
			tested++;
		}
		line_start("memtest");
		kv_hex("base", mm[i].addr);
		kv_hex("size", mm[i].size);
		if (bad) {
			out_str(" fail");
			kv_hex("at", bad);
			kv_hex("want", want);
			kv_hex("got", got);
		} else if (!tested) {
			out_str(" skipped");
		} else {
			out_str(" ok");
		}
		out_end();
	}
}
