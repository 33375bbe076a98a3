/* idle.c - idle=1: after the report, stay up until the ACPI power button is pressed.
 *
 * The power button is the FADT's fixed-feature one: PWRBTN_EN is set in PM1_EN (the
 * second half of PM1a_EVT_BLK), the SCI is routed through the IOAPIC pin the MADT
 * gives for the FADT's SCI_INT (level/polarity from the override; "conforms" means
 * level, active low), and ACPI mode is entered through SMI_CMD/ACPI_ENABLE when
 * SCI_EN is clear, as an OS does. The SCI handler reads PM1_STS, clears PWRBTN_STS by
 * writing it back and notes the press.
 *
 * While idle, a LAPIC timer (TSC-deadline mode when CPUID has it, else one-shot,
 * calibrated against the TSC) wakes the CPU every `tickms` and a line is printed:
 *   PROBE idle ready pwrbtn=fixed|none sci=9 pin=9 timer=tsc-deadline|oneshot tick_ms=100
 *   PROBE tick n=1 ms=100 tsc=0x...          n counts ticks; ms is TSC time since ready
 *   PROBE power button n=N                   then the exit sequence (power-off)
 * The next tick is armed from the time the previous one was handled, so a guest that
 * was paused goes on with n+1 (no catch-up burst).
 */
#include "probe.h"

#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
#define LVT_MASKED (1u << 16)
#define LVT_TSC_DEADLINE (2u << 17)
#define MSR_TSC_DEADLINE 0x6e0
#define PM1_PWRBTN (1u << 8)
#define PM1_SCI_EN 1u

static volatile u32 pressed, tick_due;
static int deadline_mode;
static u64 apic_ticks_per_ms;

void idle_isr(u64 vector)
{
	if (vector == VEC_TICK) {
		tick_due = 1;
		return;
	}
	u16 evt = (u16)acpi_info.pm1a_evt;
	u16 sts = inw(evt);
	if (sts & PM1_PWRBTN) {
		outw(evt, PM1_PWRBTN); /* write 1 to clear: drops the SCI level */
		pressed = 1;
	}
}

static void timer_setup(void)
{
	u32 a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	deadline_mode = (c >> 24) & 1;
	if (deadline_mode) {
		lapic_write(LAPIC_LVT_TIMER, LVT_TSC_DEADLINE | VEC_TICK);
		return;
	}
	/* One-shot, divide by 16: count how far it gets in 10 ms of TSC. */
	lapic_write(LAPIC_TIMER_DIV, 0x3);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | VEC_TICK);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffffu);
	delay_us(10000);
	apic_ticks_per_ms = (0xffffffffu - lapic_read(LAPIC_TIMER_CUR)) / 10;
	if (!apic_ticks_per_ms)
		apic_ticks_per_ms = 1;
	lapic_write(LAPIC_TIMER_INIT, 0);
	lapic_write(LAPIC_LVT_TIMER, VEC_TICK);
}

static void timer_arm(void)
{
	if (deadline_mode) {
		wrmsr(MSR_TSC_DEADLINE, tsc_deadline_us((u64)opt.tick_ms * 1000));
		return;
	}
	u64 n = apic_ticks_per_ms * opt.tick_ms;
	lapic_write(LAPIC_TIMER_INIT, n > 0xffffffffu ? 0xffffffffu : (u32)n);
}

/* ACPI mode, PWRBTN_EN and the SCI's IOAPIC route; 0 when there is no power button. */
static int pwrbtn_setup(void)
{
	struct acpi_info *ai = &acpi_info;
	if (!ai->have_fadt || !ai->pm1a_evt || ai->pm1_evt_len < 4 || (ai->flags & (1u << 4)))
		return 0;
	u16 cnt = (u16)ai->pm1a_cnt;
	if (cnt && !(inw(cnt) & PM1_SCI_EN) && ai->smi_cmd && ai->acpi_enable) {
		outb((u16)ai->smi_cmd, ai->acpi_enable);
		for (u32 i = 0; i < 1000 && !(inw(cnt) & PM1_SCI_EN); i++)
			delay_us(1000);
	}
	u16 evt = (u16)ai->pm1a_evt;
	u16 en = (u16)(evt + ai->pm1_evt_len / 2);
	outw(evt, PM1_PWRBTN); /* a stale press does not count */
	outw(en, (u16)(inw(en) | PM1_PWRBTN));
	u32 lo = VEC_SCI;
	if (acpi_sci_level())
		lo |= 1u << 15;
	if (acpi_sci_low())
		lo |= 1u << 13;
	ioapic_redirect(ai->sci_gsi, lo, lapic_id());
	return 1;
}

void idle_loop(void)
{
	if (!tsc_khz)
		time_calibrate();
	lapic_init();
	pic_remap_and_mask(); /* a firmware may have left the 8259s unmasked */
	int button = pwrbtn_setup();
	timer_setup();
	line_start("idle ready");
	kv_str("pwrbtn", button ? "fixed" : "none");
	if (button) {
		kv_dec("sci", acpi_info.sci);
		kv_dec("pin", acpi_info.sci_gsi);
	}
	kv_str("timer", deadline_mode ? "tsc-deadline" : "oneshot");
	kv_dec("tick_ms", opt.tick_ms);
	out_end();
	u64 t0 = rdtsc(), n = 0;
	timer_arm();
	for (;;) {
		cli();
		if (pressed)
			break;
		if (tick_due) {
			tick_due = 0;
			u64 now = rdtsc();
			line_start("tick");
			kv_dec("n", ++n);
			kv_dec("ms", (now - t0) / tsc_khz);
			kv_hex("tsc", now);
			out_end();
			if (opt.work)
				work_tick(n);
			timer_arm();
			continue;
		}
		sti_hlt(); /* sti's shadow: no interrupt slips in before the hlt */
	}
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | VEC_TICK);
	line_start("power button");
	kv_dec("n", n);
	out_end();
}
