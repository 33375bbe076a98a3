/* time.c - a TSC clock, calibrated once against PIT channel 0.
 *
 * Channel 0 is put in mode 2 with the maximum period and its latched count is
 * polled (no interrupts needed) for 50 ms worth of PIT input clocks. If the
 * counter never moves (no PIT), fall back to CPUID leaf 0x15/0x16, then to a
 * guess, and say which in the report.
 */
#include "probe.h"

#define PIT_HZ 1193182u
#define PIT_CH0 0x40
#define PIT_CMD 0x43

u64 tsc_khz;
static const char *source = "none";

static u16 pit_read_ch0(void)
{
	outb(PIT_CMD, 0x00); /* latch channel 0 */
	u8 lo = inb(PIT_CH0);
	u8 hi = inb(PIT_CH0);
	return (u16)(lo | (hi << 8));
}

static u64 calibrate_pit(void)
{
	const u32 target = PIT_HZ / 20; /* 50 ms of PIT clocks */
	outb(PIT_CMD, 0x34);           /* ch0, lo/hi, mode 2, binary */
	outb(PIT_CH0, 0x00);           /* count 0 = 65536 */
	outb(PIT_CH0, 0x00);
	u16 prev = pit_read_ch0();
	u32 elapsed = 0, still = 0;
	u64 t0 = rdtsc();
	while (elapsed < target) {
		u16 cur = pit_read_ch0();
		if (cur == prev) {
			if (++still > 2000)
				return 0; /* counter frozen: no PIT */
			continue;
		}
		still = 0;
		elapsed += (u16)(prev - cur); /* counts down, wraps at 65536 */
		prev = cur;
	}
	u64 t1 = rdtsc();
	/* khz = cycles / ms, ms = elapsed / PIT_HZ * 1000 */
	return (t1 - t0) * PIT_HZ / ((u64)elapsed * 1000);
}

void time_calibrate(void)
{
	u32 a, b, c, d, max;
	tsc_khz = calibrate_pit();
	if (tsc_khz) {
		source = "pit";
	} else {
		cpuid(0, 0, &max, &b, &c, &d);
		if (max >= 0x15) {
			cpuid(0x15, 0, &a, &b, &c, &d);
			if (a && b && c) {
				tsc_khz = (u64)c * b / a / 1000;
				source = "cpuid15";
			}
		}
		if (!tsc_khz && max >= 0x16) {
			cpuid(0x16, 0, &a, &b, &c, &d);
			if (a & 0xffff) {
				tsc_khz = (u64)(a & 0xffff) * 1000;
				source = "cpuid16";
			}
		}
		if (!tsc_khz) {
			tsc_khz = 2000000;
			source = "guess";
		}
	}
	line_start("tsc");
	kv_dec("khz", tsc_khz);
	kv_str("source", source);
	out_end();
}

u64 tsc_deadline_us(u64 us)
{
	u64 khz = tsc_khz ? tsc_khz : 2000000;
	return rdtsc() + us * khz / 1000;
}

int tsc_passed(u64 deadline) { return (i64)(rdtsc() - deadline) >= 0; }

void delay_us(u64 us)
{
	u64 end = tsc_deadline_us(us);
	while (!tsc_passed(end))
		pause();
}
