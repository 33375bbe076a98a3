/* smp.c - start the APs with INIT/SIPI/SIPI and collect their APIC IDs.
 *
 * The real-mode trampoline from entry.S is copied to a free RAM page below
 * 1 MiB (0x8000 if the memmap allows). Each AP switches to long mode on the
 * BSP's page tables, takes its own stack and calls ap_main(), which records
 * its APIC ID and halts with interrupts off.
 */
#include "probe.h"

#define ICR_INIT 0x00000500u
#define ICR_STARTUP 0x00000600u
#define ICR_ASSERT 0x00004000u
#define ICR_LEVEL 0x00008000u
#define ICR_ALL_BUT_SELF 0x000c0000u

static volatile u32 ap_count;
static volatile u32 ap_ids[MAX_CPUS];
static volatile u32 ap_ready[MAX_CPUS];

void ap_main(u64 idx)
{
	(void)idx;
	idt_load();
	u32 id = lapic_id_this_cpu();
	u32 slot = __atomic_fetch_add(&ap_count, 1, __ATOMIC_SEQ_CST);
	if (slot < MAX_CPUS) {
		ap_ids[slot] = id;
		__atomic_store_n(&ap_ready[slot], 1, __ATOMIC_RELEASE);
	}
	if (opt.work)
		work_ap(slot);
	halt_forever();
}

static u64 trampoline_page(const struct hvm_start_info *si)
{
	usize len = (usize)(ap_tramp_end - ap_tramp_start);
	if (mem_is_ram(si, 0x8000, 4096) && !range_reserved(0x8000, 4096))
		return 0x8000;
	for (u64 p = 0x9e000; p >= 0x1000; p -= 0x1000)
		if (mem_is_ram(si, p, 4096) && !range_reserved(p, len))
			return p;
	return 0;
}

static void sort(u32 *v, u32 n)
{
	for (u32 i = 1; i < n; i++)
		for (u32 j = i; j > 0 && v[j - 1] > v[j]; j--) {
			u32 t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
}

void smp_start(const struct hvm_start_info *si, u32 expected, u32 wait_ms)
{
	u32 bsp = lapic_id();
	u64 page = trampoline_page(si);
	u32 seen = 0;
	u64 elapsed_us = 0;
	if (page) {
		memcpy((void *)page, ap_tramp_start, (usize)(ap_tramp_end - ap_tramp_start));
		reserve_range(page, 4096);
		ap_cr3 = (u32)page_table_cr3;
		u32 vector = (u32)(page >> 12);
		u64 t0 = rdtsc();
		lapic_send_ipi(ICR_ALL_BUT_SELF | ICR_INIT | ICR_ASSERT | ICR_LEVEL, 0);
		delay_us(10000);
		lapic_send_ipi(ICR_ALL_BUT_SELF | ICR_STARTUP | vector, 0);
		delay_us(200);
		lapic_send_ipi(ICR_ALL_BUT_SELF | ICR_STARTUP | vector, 0);
		/* Wait until the expected number checked in, or the timeout. */
		u64 deadline = tsc_deadline_us((u64)wait_ms * 1000);
		while (!tsc_passed(deadline)) {
			if (expected && __atomic_load_n(&ap_count, __ATOMIC_ACQUIRE) + 1 >= expected)
				break;
			pause();
		}
		elapsed_us = (rdtsc() - t0) * 1000 / (tsc_khz ? tsc_khz : 2000000);
	}

	u32 ids[MAX_CPUS];
	u32 n = __atomic_load_n(&ap_count, __ATOMIC_ACQUIRE);
	for (u32 i = 0; i < n && i < MAX_CPUS; i++)
		if (__atomic_load_n(&ap_ready[i], __ATOMIC_ACQUIRE))
			ids[seen++] = ap_ids[i];
	sort(ids, seen);

	line_start("cpu");
	kv_dec("apic", bsp);
	out_str(" bsp");
	out_end();
	for (u32 i = 0; i < seen; i++) {
		line_start("cpu");
		kv_dec("apic", ids[i]);
		if (i && ids[i] == ids[i - 1])
			out_str(" duplicate");
		out_end();
	}
	line_start("cpus");
	kv_dec("count", seen + 1);
	if (expected) {
		kv_dec("expected", expected);
		out_str(seen + 1 == expected ? " ok" : " mismatch");
	}
	if (page)
		kv_hex("trampoline", page);
	else
		out_str(" trampoline=none");
	kv_dec("us", elapsed_us);
	out_end();
}
