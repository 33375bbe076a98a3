/* net.c - the probe's network tests over whichever NIC driver found a card
 * (virtio_net.c, e1000.c): report the NIC, then move test frames
 * (netsend / netrecv / netecho / netbench).
 *
 * `nic=auto` (default) takes a virtio-net NIC if there is one, else an e1000;
 * `nic=virtio` or `nic=e1000` takes only that model. Drivers are polled, with
 * NET_RXQ receive buffers of NET_BUF bytes and NET_TXQ transmit buffers (static,
 * shared by the drivers: one NIC is used). Test frames are broadcast (echoes are
 * unicast), ethertype 0x88b5 (IEEE local experimental), payload:
 *   "VMRUNNET" | kind (0 data, 1 echo) | origin MAC (6) | counter (u32 LE) | padding
 * Report lines (README.md):
 *   PROBE net dev=<transport>@<addr> model=virtio mac=<mac> link=up|down features=<hex>
 *   PROBE net dev=pci@<bdf> model=e1000 mac=<mac> link=up|down speed=<Mb/s> phy=<id> eeprom=ok|bad
 *   PROBE net tx frames=N
 *   PROBE net rx ok frames=N from=<mac> us=T     (or: rx timeout frames=got want=N)
 *   PROBE net echo frames=N from=<mac>
 *   PROBE net ping frames=N got=G min_us=A avg_us=B max_us=C
 *   PROBE net peers mac=<mac> n=N peer=<mac> ...
 *   PROBE net bench frames=N bytes=B us=T fps=F
 */
#include "probe.h"

#define ETH_TYPE 0x88b5
#define FRAME_LEN 60 /* minimum Ethernet frame (without FCS) */
#define BENCH_LEN 1514

static const u8 magic[8] = { 'V', 'M', 'R', 'U', 'N', 'N', 'E', 'T' };
static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

u8 net_rx_bufs[NET_RXQ][NET_BUF] __attribute__((aligned(4096)));
u8 net_tx_bufs[NET_TXQ][NET_BUF] __attribute__((aligned(4096)));
u8 net_ring_mem[2][4096] __attribute__((aligned(4096)));

static const struct nic *nic;
static u8 mac[6];

/* Guest code is slow per instruction under nested KVM: one string instruction per
 * copy instead of a byte loop. */
void net_copy(void *d, const void *src, usize n)
{
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
}

void net_fill(void *d, u8 v, usize n)
{
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(v) : "memory");
}

void out_mac(const char *key, const u8 *m)
{
	static const char hex[] = "0123456789abcdef";
	out_char(' ');
	out_str(key);
	out_char('=');
	for (int i = 0; i < 6; i++) {
		if (i)
			out_char(':');
		out_char(hex[m[i] >> 4]);
		out_char(hex[m[i] & 15]);
	}
}

/* Takes the next transmit buffer, waiting (bounded) for one; -1 if the ring stayed full. */
static int tx_slot(u8 **buf)
{
	u64 deadline = tsc_deadline_us(1000000);
	for (;;) {
		int i = nic->tx_slot(buf);
		if (i >= 0)
			return i;
		if (tsc_passed(deadline))
			return -1;
		pause();
	}
}

static u32 build(u8 *f, const u8 *dst, u8 kind, const u8 *origin, u32 counter, u32 len)
{
	net_fill(f, 0, len);
	net_copy(f, dst, 6);
	net_copy(f + 6, mac, 6);
	f[12] = ETH_TYPE >> 8;
	f[13] = ETH_TYPE & 0xff;
	net_copy(f + 14, magic, 8);
	f[22] = kind;
	net_copy(f + 23, origin, 6);
	for (int i = 0; i < 4; i++)
		f[29 + i] = (u8)(counter >> (8 * i));
	return len;
}

/* Queues one test frame and sends it. 0 if the ring stayed full. */
static int tx_frame(const u8 *dst, u8 kind, const u8 *origin, u32 counter)
{
	u8 *buf;
	int i = tx_slot(&buf);
	if (i < 0)
		return 0;
	nic->tx_post(i, build(buf, dst, kind, origin, counter, FRAME_LEN));
	nic->tx_kick();
	return 1;
}

/* One received test frame: where it came from and what it is. */
struct rx_frame {
	u8 src[6];
	u8 origin[6];
	u8 kind;
	u32 counter;
};

/* Polls for a test frame from another MAC until the deadline passes. Other frames
 * are dropped. Returns 1 with *r set. */
static int rx_wait(u64 deadline, struct rx_frame *r)
{
	for (;;) {
		const u8 *f;
		u32 len;
		int i = nic->rx_poll(&f, &len);
		if (i < 0) {
			if (tsc_passed(deadline))
				return 0;
			pause();
			continue;
		}
		int ok = len >= 33 && f[12] == (ETH_TYPE >> 8) && f[13] == (ETH_TYPE & 0xff) &&
			 !memcmp(f + 14, magic, 8) && memcmp(f + 6, mac, 6);
		if (ok) {
			net_copy(r->src, f + 6, 6);
			net_copy(r->origin, f + 23, 6);
			r->kind = f[22];
			r->counter = (u32)f[29] | (u32)f[30] << 8 | (u32)f[31] << 16 | (u32)f[32] << 24;
		}
		nic->rx_release(i);
		if (ok)
			return 1;
	}
}

static void net_send(u32 n)
{
	u32 sent = 0;
	for (u32 k = 0; k < n; k++)
		sent += tx_frame(bcast, 0, mac, k);
	line_start("net tx");
	kv_dec("frames", sent);
	out_end();
}

static void net_recv(u32 n, u32 wait_ms)
{
	struct rx_frame r;
	u8 from[6] = { 0 };
	u32 got = 0;
	u64 t0 = 0, deadline = tsc_deadline_us((u64)wait_ms * 1000);
	while (got < n && rx_wait(deadline, &r)) {
		if (!got) {
			t0 = rdtsc();
			net_copy(from, r.src, 6);
		}
		got++;
	}
	u64 us = tsc_khz ? (rdtsc() - t0) * 1000 / tsc_khz : 0;
	if (got == n) {
		line_start("net rx ok");
		kv_dec("frames", got);
		out_mac("from", from);
		kv_dec("us", us);
	} else {
		line_start("net rx timeout");
		kv_dec("frames", got);
		kv_dec("want", n);
	}
	out_end();
}

static void net_echo(u32 n, u32 wait_ms)
{
	struct rx_frame r;
	u8 from[6] = { 0 };
	u32 got = 0;
	u64 deadline = tsc_deadline_us((u64)wait_ms * 1000);
	while (got < n && rx_wait(deadline, &r)) {
		if (r.kind != 0)
			continue;
		if (!got)
			net_copy(from, r.src, 6);
		/* Unicast back to the sender: the switch's learning path. */
		tx_frame(r.src, 1, r.origin, r.counter);
		got++;
	}
	line_start(got == n ? "net echo" : "net echo timeout");
	kv_dec("frames", got);
	out_mac("from", from);
	out_end();
}

/* N test frames one at a time, each waiting (at most a second) for its echo from a
 * netecho peer; the round-trip times. */
static void net_ping(u32 n, u32 wait_ms)
{
	struct rx_frame r;
	u32 got = 0;
	u64 min = ~0ull, max = 0, sum = 0;
	u64 per_us = (u64)(wait_ms < 1000 ? wait_ms : 1000) * 1000;
	for (u32 k = 0; k < n; k++) {
		u64 t0 = rdtsc();
		if (!tx_frame(bcast, 0, mac, k))
			continue;
		u64 deadline = tsc_deadline_us(per_us);
		while (rx_wait(deadline, &r)) {
			if (r.kind != 1 || r.counter != k || memcmp(r.origin, mac, 6))
				continue;
			u64 us = tsc_khz ? (rdtsc() - t0) * 1000 / tsc_khz : 0;
			min = us < min ? us : min;
			max = us > max ? us : max;
			sum += us;
			got++;
			break;
		}
	}
	line_start("net ping");
	kv_dec("frames", n);
	kv_dec("got", got);
	kv_dec("min_us", got ? min : 0);
	kv_dec("avg_us", got ? sum / got : 0);
	kv_dec("max_us", max);
	out_end();
}

static void net_bench(u32 n)
{
	u32 sent = 0, pending = 0;
	/* Every buffer holds a whole frame; a send only stamps the counter. */
	for (u32 i = 0; i < NET_TXQ; i++)
		build(nic->tx_buf(i), bcast, 0, mac, 0, BENCH_LEN);
	u64 t0 = rdtsc();
	for (u32 k = 0; k < n; k++) {
		u8 *f;
		int i = tx_slot(&f);
		if (i < 0)
			break;
		for (int b = 0; b < 4; b++)
			f[29 + b] = (u8)(k >> (8 * b));
		nic->tx_post(i, BENCH_LEN);
		sent++;
		/* Tell the NIC once per half ring (and at the end): fewer exits. */
		if (++pending == NET_TXQ / 2 || k + 1 == n) {
			nic->tx_kick();
			pending = 0;
		}
	}
	u64 deadline = tsc_deadline_us(1000000);
	while (!nic->tx_idle() && !tsc_passed(deadline))
		pause();
	u64 us = tsc_khz ? (rdtsc() - t0) * 1000 / tsc_khz : 0;
	line_start("net bench");
	kv_dec("frames", sent);
	kv_dec("bytes", (u64)sent * BENCH_LEN);
	kv_dec("us", us);
	kv_dec("fps", us ? (u64)sent * 1000000 / us : 0);
	out_end();
}

/* For `ms` milliseconds: broadcast a test frame every 100 ms and note every other MAC
 * heard; then list them. A lab test asks each node which peers it reached. */
static void net_peers(u32 ms)
{
	static u8 seen[8][6];
	u32 n = 0, k = 0;
	u64 end = tsc_deadline_us((u64)ms * 1000), next = 0;
	while (!tsc_passed(end)) {
		if (!next || tsc_passed(next)) {
			tx_frame(bcast, 0, mac, k++);
			next = tsc_deadline_us(100000);
		}
		struct rx_frame r;
		if (!rx_wait(tsc_deadline_us(10000), &r))
			continue;
		int known = 0;
		for (u32 i = 0; i < n; i++)
			known |= !memcmp(seen[i], r.src, 6);
		if (!known && n < 8)
			net_copy(seen[n++], r.src, 6);
	}
	line_start("net peers");
	out_mac("mac", mac);
	kv_dec("n", n);
	for (u32 i = 0; i < n; i++)
		out_mac("peer", seen[i]);
	out_end();
}

static void net_tests(void);

void net_report(void)
{
	if (!opt.net)
		return;
	if (opt.nic == NIC_ALL) {
		/* Every model in turn, each closed before the next takes the buffers. */
		if ((nic = virtio_net_open(mac))) {
			net_tests();
			nic->close();
		}
		if ((nic = e1000_open(mac))) {
			net_tests();
			nic->close();
		}
		return;
	}
	nic = NULL;
	if (opt.nic != NIC_E1000)
		nic = virtio_net_open(mac);
	if (!nic && opt.nic != NIC_VIRTIO)
		nic = e1000_open(mac);
	if (!nic)
		return; /* no NIC (or it failed: its driver said why) */
	net_tests();
}

static void net_tests(void)
{
	u32 wait = opt.net_wait_ms;
	if (opt.net_peers)
		net_peers(opt.net_peers);
	if (opt.net_send)
		net_send(opt.net_send);
	if (opt.net_recv)
		net_recv(opt.net_recv, wait);
	if (opt.net_echo)
		net_echo(opt.net_echo, wait);
	if (opt.net_ping)
		net_ping(opt.net_ping, wait);
	if (opt.net_bench)
		net_bench(opt.net_bench);
}
