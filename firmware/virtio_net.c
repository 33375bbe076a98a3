/* virtio_net.c - the probe's virtio-net driver: find the NIC, report its MAC and link,
 * and move test frames (netsend / netrecv / netecho / netping / netbench).
 *
 * On the shared transports of virtio.c (virtio-mmio, or virtio-pci on any bus).
 * Polled, no interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT): one receive queue of RXQ
 * buffers of BUF_SIZE bytes (12-byte virtio_net_hdr + a 1514-byte frame fit), one
 * transmit queue of TXQ buffers. Test frames are broadcast (echoes are unicast),
 * ethertype 0x88b5 (IEEE local experimental), payload:
 *   "VMRUNNET" | kind (0 data, 1 echo) | origin MAC (6) | counter (u32 LE) | padding
 * Report lines (README.md):
 *   PROBE net dev=<transport>@<addr> mac=<mac> link=up|down features=<hex>
 *   PROBE net tx frames=N
 *   PROBE net rx ok frames=N from=<mac> us=T     (or: rx timeout frames=got want=N)
 *   PROBE net echo frames=N from=<mac>
 *   PROBE net ping frames=N got=G min_us=A avg_us=B max_us=C
 *   PROBE net bench frames=N bytes=B us=T fps=F
 */
#include "probe.h"

/* Guest code is slow per instruction under nested KVM: one string instruction per
 * copy instead of a byte loop. */
static void copy(void *d, const void *src, usize n)
{
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
}

static void fill(void *d, u8 v, usize n)
{
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(v) : "memory");
}


#define VIRTIO_ID_NET 1
#define VIRTIO_F_VERSION_1 (1ull << 32)

#define ETH_TYPE 0x88b5
#define FRAME_LEN 60      /* minimum Ethernet frame (without FCS) */
#define BENCH_LEN 1514
#define HDR 12
#define BUF_SIZE 2048
#define RXQ 32
#define TXQ 32
#define NET_F_MAC (1ull << 5)
#define NET_F_STATUS (1ull << 16)

static const u8 magic[8] = { 'V', 'M', 'R', 'U', 'N', 'N', 'E', 'T' };
static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static struct vdev dev;
static struct vq rxq, txq;
static u8 ring_mem[2][4096] __attribute__((aligned(4096)));
static u8 rx_bufs[RXQ][BUF_SIZE] __attribute__((aligned(4096)));
static u8 tx_bufs[TXQ][BUF_SIZE] __attribute__((aligned(4096)));
static u8 mac[6];
static u32 tx_free = TXQ;
static u16 tx_next;

static void out_mac(const char *key, const u8 *m)
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

static void rx_post(u16 i)
{
	vq_post(&rxq, i, (u64)rx_bufs[i], BUF_SIZE, 1);
}

/* Reaps finished transmissions. */
static void tx_reap(void)
{
	u32 len;
	while (vq_poll(&txq, &len) >= 0)
		tx_free++;
}

/* Takes the next transmit buffer, waiting (bounded) for one; -1 if the ring stayed full. */
static int tx_slot(void)
{
	u64 deadline = tsc_deadline_us(1000000);
	while (!tx_free) {
		tx_reap();
		if (tx_free)
			break;
		if (tsc_passed(deadline))
			return -1;
		pause();
	}
	u16 i = tx_next;
	tx_next = (u16)((tx_next + 1) % TXQ);
	tx_free--;
	return i;
}

/* Queues one frame (copied after a zero header) and notifies. 0 if the ring stayed full. */
static int tx_frame(const u8 *f, u32 len)
{
	int i = tx_slot();
	if (i < 0)
		return 0;
	fill(tx_bufs[i], 0, HDR);
	copy(tx_bufs[i] + HDR, f, len);
	vq_post(&txq, (u16)i, (u64)tx_bufs[i], HDR + len, 0);
	vq_kick(&txq);
	return 1;
}

static u32 build(u8 *f, const u8 *dst, u8 kind, const u8 *origin, u32 counter, u32 len)
{
	fill(f, 0, len);
	copy(f, dst, 6);
	copy(f + 6, mac, 6);
	f[12] = ETH_TYPE >> 8;
	f[13] = ETH_TYPE & 0xff;
	copy(f + 14, magic, 8);
	f[22] = kind;
	copy(f + 23, origin, 6);
	for (int i = 0; i < 4; i++)
		f[29 + i] = (u8)(counter >> (8 * i));
	return len;
}

/* One received test frame: where it came from and what it is. */
struct rx_frame {
	const u8 *src;
	const u8 *origin;
	u8 kind;
	u32 counter;
};

/* Polls the receive queue until a test frame from another MAC arrives or the
 * deadline passes. Other frames are dropped. Returns 1 with *r set. */
static int rx_wait(u64 deadline, struct rx_frame *r)
{
	for (;;) {
		u32 len;
		int i = vq_poll(&rxq, &len);
		if (i < 0) {
			if (tsc_passed(deadline))
				return 0;
			pause();
			continue;
		}
		const u8 *f = rx_bufs[i] + HDR;
		int ok = i < RXQ && len >= HDR + 33 && f[12] == (ETH_TYPE >> 8) &&
			 f[13] == (ETH_TYPE & 0xff) && !memcmp(f + 14, magic, 8) &&
			 memcmp(f + 6, mac, 6);
		if (ok) {
			static u8 src[6], origin[6];
			copy(src, f + 6, 6);
			copy(origin, f + 23, 6);
			r->src = src;
			r->origin = origin;
			r->kind = f[22];
			r->counter = (u32)f[29] | (u32)f[30] << 8 | (u32)f[31] << 16 | (u32)f[32] << 24;
		}
		if (i < RXQ) {
			rx_post((u16)i);
			vq_kick(&rxq);
		}
		if (ok)
			return 1;
	}
}

static void net_send(u32 n)
{
	u8 f[FRAME_LEN];
	u32 sent = 0;
	for (u32 k = 0; k < n; k++)
		sent += tx_frame(f, build(f, bcast, 0, mac, k, FRAME_LEN));
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
			copy(from, r.src, 6);
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
	u8 from[6] = { 0 }, f[FRAME_LEN];
	u32 got = 0;
	u64 deadline = tsc_deadline_us((u64)wait_ms * 1000);
	while (got < n && rx_wait(deadline, &r)) {
		if (r.kind != 0)
			continue;
		if (!got)
			copy(from, r.src, 6);
		/* Unicast back to the sender: the switch's learning path. */
		tx_frame(f, build(f, r.src, 1, r.origin, r.counter, FRAME_LEN));
		got++;
	}
	line_start(got == n ? "net echo" : "net echo timeout");
	kv_dec("frames", got);
	out_mac("from", from);
	out_end();
}

/* N round trips to a netecho peer, one at a time (each waits at most 1 s, or netwait
 * if shorter): the time from handing frame k to the queue to its echo arriving. */
static void net_ping(u32 n, u32 wait_ms)
{
	struct rx_frame r;
	u8 f[FRAME_LEN];
	u32 got = 0;
	u64 min = ~0ull, max = 0, sum = 0;
	u64 per_us = (u64)(wait_ms < 1000 ? wait_ms : 1000) * 1000;
	for (u32 k = 0; k < n; k++) {
		u64 t0 = rdtsc();
		if (!tx_frame(f, build(f, bcast, 0, mac, k, FRAME_LEN)))
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
	u32 sent = 0;
	/* Every buffer holds a whole frame; a send only stamps the counter. */
	for (u32 i = 0; i < TXQ; i++) {
		fill(tx_bufs[i], 0, HDR);
		build(tx_bufs[i] + HDR, bcast, 0, mac, 0, BENCH_LEN);
	}
	u64 t0 = rdtsc();
	for (u32 k = 0; k < n; k++) {
		int i = tx_slot();
		if (i < 0)
			break;
		u8 *f = tx_bufs[i] + HDR;
		for (int b = 0; b < 4; b++)
			f[29 + b] = (u8)(k >> (8 * b));
		vq_post(&txq, (u16)i, (u64)tx_bufs[i], HDR + BENCH_LEN, 0);
		sent++;
		/* Kick once per half ring (and at the end): fewer exits. */
		if (tx_free == TXQ / 2 || tx_free == 0 || k + 1 == n)
			vq_kick(&txq);
	}
	u64 deadline = tsc_deadline_us(1000000);
	while (tx_free < TXQ && !tsc_passed(deadline))
		tx_reap();
	u64 us = tsc_khz ? (rdtsc() - t0) * 1000 / tsc_khz : 0;
	line_start("net bench");
	kv_dec("frames", sent);
	kv_dec("bytes", (u64)sent * BENCH_LEN);
	kv_dec("us", us);
	kv_dec("fps", us ? (u64)sent * 1000000 / us : 0);
	out_end();
}

void net_report(void)
{
	if (!opt.net)
		return;
	if (vdev_find(VIRTIO_ID_NET, 0, &dev) < 0)
		return; /* no NIC: no line */
	u64 want = VIRTIO_F_VERSION_1 | NET_F_MAC | NET_F_STATUS;
	u64 got = vdev_init(&dev, want);
	/* Full-size rings only: buffer i is descriptor i. */
	int ok = got != ~0ull && vq_setup(&dev, &rxq, 0, RXQ, ring_mem[0]) == 0 &&
		 vq_setup(&dev, &txq, 1, TXQ, ring_mem[1]) == 0 && rxq.size == RXQ &&
		 txq.size == TXQ;
	if (ok) {
		for (u16 i = 0; i < RXQ; i++)
			rx_post(i);
		vdev_driver_ok(&dev);
		vq_kick(&rxq);
	}
	for (int i = 0; i < 6; i++)
		mac[i] = vdev_cfg8(&dev, (u32)i);
	u16 status = (u16)(vdev_cfg8(&dev, 6) | vdev_cfg8(&dev, 7) << 8);
	line_start(ok ? "net" : "net fail");
	out_str(" dev=");
	vdev_describe(&dev);
	out_mac("mac", mac);
	kv_str("link", !(got & NET_F_STATUS) ? "unknown" : (status & 1) ? "up" : "down");
	kv_hex("features", got);
	out_end();
	if (!ok)
		return;
	u32 wait = opt.net_wait_ms;
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
