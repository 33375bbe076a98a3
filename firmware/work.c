/* work.c - work=1: a guest that is busy in every way a snapshot must preserve.
 *
 * With idle=1, every tick (see idle.c) the boot CPU also
 *   - writes sector 64 + n%32 of the first writable virtio-blk disk with a pattern
 *     that depends on n, reads it back, and re-reads the sector the previous tick
 *     wrote, checking both (a disk that lost or reordered a write says bad);
 *   - sends an IPI to the other CPUs, each of which counts its wake-ups (their
 *     counters must all have moved since the previous tick);
 *   - echoes every complete line received on COM1.
 * and prints
 *   PROBE work n=N blk=ok|bad|none sum=0x… cpus=K moving=ok|stuck
 *   PROBE echo "<line>"
 * `sum` is a running checksum of everything the work loop has done: two runs of the
 * same guest from the same snapshot print the same sums.
 */
#include "probe.h"

#define WORK_BASE 64
#define WORK_SPAN 32
#define ICR_FIXED_ALL_BUT_SELF 0x000c0000u

static struct vdev work_dev;
static struct vq work_q;
static int have_disk;
static u8 sector[512] __attribute__((aligned(512)));
static volatile u64 ap_wakes[MAX_CPUS];
static u64 last_wakes[MAX_CPUS];
static volatile u32 ap_slots;
static u64 sum = 0x9e3779b97f4a7c15ull;
static char line[256];
static usize line_len;

static u8 work_byte(u64 n, u32 i) { return (u8)(n * 131 + i * 7 + 3); }

void work_keep_disk(const struct vdev *d, const struct vq *q)
{
	if (have_disk)
		return;
	work_dev = *d;
	work_q = *q;
	work_q.dev = &work_dev;
	have_disk = 1;
}

/* AP side: count each wake-up; halted in between (no CPU used). */
void work_ap(u32 slot)
{
	if (slot >= MAX_CPUS)
		return;
	__atomic_fetch_add(&ap_slots, 1, __ATOMIC_SEQ_CST);
	lapic_init();
	for (;;) {
		sti_hlt();
		__atomic_fetch_add(&ap_wakes[slot], 1, __ATOMIC_SEQ_CST);
	}
}

void work_isr(void) { lapic_eoi(); }

static int check_sector(u64 n)
{
	u64 s = WORK_BASE + n % WORK_SPAN;
	memset(sector, 0, sizeof(sector));
	if (blk_rw(&work_q, 0, s, sector, 512))
		return 0;
	for (u32 i = 0; i < 512; i++) {
		if (sector[i] != work_byte(n, i))
			return 0;
		sum = sum * 31 + sector[i];
	}
	return 1;
}

static const char *disk_tick(u64 n)
{
	if (!have_disk)
		return "none";
	for (u32 i = 0; i < 512; i++)
		sector[i] = work_byte(n, i);
	if (blk_rw(&work_q, 1, WORK_BASE + n % WORK_SPAN, sector, 512))
		return "bad";
	if (!check_sector(n) || (n > 1 && !check_sector(n - 1)))
		return "bad";
	return "ok";
}

static void echo_poll(void)
{
	for (int c; (c = serial_getc()) >= 0;) {
		if (c != '\r' && c != '\n') {
			if (line_len < sizeof(line) - 1)
				line[line_len++] = (char)c;
			continue;
		}
		if (!line_len)
			continue;
		line[line_len] = 0;
		line_start("echo");
		out_char(' ');
		out_quoted(line, sizeof(line));
		out_end();
		for (usize i = 0; i < line_len; i++)
			sum = sum * 31 + (u8)line[i];
		line_len = 0;
	}
}

void work_tick(u64 n)
{
	const char *disk = disk_tick(n);
	u32 k = __atomic_load_n(&ap_slots, __ATOMIC_ACQUIRE);
	int moving = 1;
	for (u32 i = 0; i < k; i++) {
		u64 w = __atomic_load_n(&ap_wakes[i], __ATOMIC_ACQUIRE);
		if (n > 1 && w == last_wakes[i])
			moving = 0;
		last_wakes[i] = w;
	}
	if (k)
		lapic_send_ipi(ICR_FIXED_ALL_BUT_SELF | VEC_WORK, 0);
	sum = sum * 31 + n;
	line_start("work");
	kv_dec("n", n);
	kv_str("blk", disk);
	kv_hex("sum", sum);
	kv_dec("cpus", k + 1);
	kv_str("moving", moving ? "ok" : "stuck");
	out_end();
	echo_poll();
}
