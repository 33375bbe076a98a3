/*
 * The CMOS RTC (MC146818) as a guest driver sees it: wait out the update cycle (UIP),
 * read the time registers twice until they agree, decode BCD / 12-hour as register B
 * says, and report the time. Then check the clock ticks: wait for the seconds
 * register to change (bounded by the TSC) and report how long that took.
 *
 *   PROBE rtc time=2026-11-21T20:51:00 bcd=1 h24=1 regb=0x02
 *   PROBE rtc tick ok ms=412
 */
#include "probe.h"

#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71
#define NMI_DISABLE 0x80

static u8 cmos_read(u8 reg)
{
	outb(CMOS_INDEX, NMI_DISABLE | reg);
	return inb(CMOS_DATA);
}

struct rtc_time {
	u8 sec, min, hour, day, mon, year, century;
};

static void read_raw(struct rtc_time *t)
{
	/* Register A bit 7: an update is in progress; the registers are stable for at
	 * least 244 us after it clears. */
	for (u32 i = 0; i < 1000000 && (cmos_read(0x0a) & 0x80); i++)
		pause();
	t->sec = cmos_read(0x00);
	t->min = cmos_read(0x02);
	t->hour = cmos_read(0x04);
	t->day = cmos_read(0x07);
	t->mon = cmos_read(0x08);
	t->year = cmos_read(0x09);
	t->century = cmos_read(0x32);
}

static int same(const struct rtc_time *a, const struct rtc_time *b)
{
	return a->sec == b->sec && a->min == b->min && a->hour == b->hour && a->day == b->day &&
	       a->mon == b->mon && a->year == b->year && a->century == b->century;
}

static u8 bcd(u8 v) { return (u8)((v >> 4) * 10 + (v & 0x0f)); }

static void read_time(struct rtc_time *t)
{
	struct rtc_time again;
	read_raw(t);
	for (int i = 0; i < 5; i++) {
		read_raw(&again);
		if (same(t, &again))
			return;
		*t = again;
	}
}

static void out_2(u32 v)
{
	out_char((char)('0' + v / 10 % 10));
	out_char((char)('0' + v % 10));
}

void rtc_report(void)
{
	u8 regb = cmos_read(0x0b);
	/* Register D bit 7 (valid RAM and time) reads 1 on a present RTC; an empty bus
	 * reads all ones everywhere. */
	if (regb == 0xff || !(cmos_read(0x0d) & 0x80)) {
		line_start("rtc none");
		out_end();
		return;
	}
	int is_bcd = !(regb & 0x04), h24 = !!(regb & 0x02);
	struct rtc_time t;
	read_time(&t);
	u8 pm = t.hour & 0x80;
	t.hour &= 0x7f;
	if (is_bcd) {
		t.sec = bcd(t.sec);
		t.min = bcd(t.min);
		t.hour = bcd(t.hour);
		t.day = bcd(t.day);
		t.mon = bcd(t.mon);
		t.year = bcd(t.year);
		t.century = bcd(t.century);
	}
	if (!h24) {
		/* 12-hour mode: 12 AM is 0, 12 PM is 12. */
		t.hour = (u8)(t.hour % 12 + (pm ? 12 : 0));
	}
	u32 century = t.century ? t.century : 20;
	line_start("rtc");
	out_str(" time=");
	out_dec(century * 100 + t.year);
	out_char('-');
	out_2(t.mon);
	out_char('-');
	out_2(t.day);
	out_char('T');
	out_2(t.hour);
	out_char(':');
	out_2(t.min);
	out_char(':');
	out_2(t.sec);
	out_str(" bcd=");
	out_dec((u64)is_bcd);
	out_str(" h24=");
	out_dec((u64)h24);
	out_str(" regb=");
	out_hex(regb);
	out_end();

	/* The clock must advance: wait for the seconds register to change. */
	u64 khz = tsc_khz;
	u8 first = cmos_read(0x00);
	u64 start = rdtsc();
	u64 limit = khz ? start + khz * 2500 : start + 10000000000ull;
	while (cmos_read(0x00) == first && rdtsc() < limit)
		pause();
	u64 end = rdtsc();
	line_start(cmos_read(0x00) != first ? "rtc tick ok" : "rtc tick fail");
	if (khz) {
		out_str(" ms=");
		out_dec((end - start) / khz);
	}
	out_end();
}
