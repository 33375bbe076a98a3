/* virtio_net.c - the probe's virtio-net driver (the NIC ops net.c tests frames with).
 *
 * On the shared transports of virtio.c (virtio-mmio, or virtio-pci on any bus).
 * Polled, no interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT): one receive queue of NET_RXQ
 * buffers (12-byte virtio_net_hdr + a 1514-byte frame fit), one transmit queue of
 * NET_TXQ buffers; buffer i is descriptor i. Reports the `net ... model=virtio` line.
 */
#include "probe.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_F_VERSION_1 (1ull << 32)
#define NET_F_MAC (1ull << 5)
#define NET_F_STATUS (1ull << 16)
#define HDR 12

static struct vdev dev;
static struct vq rxq, txq;
static u32 tx_free = NET_TXQ;
static u16 tx_next;

static void rx_post(u16 i)
{
	vq_post(&rxq, i, (u64)net_rx_bufs[i], NET_BUF, 1);
}

/* Reaps finished transmissions. */
static void tx_reap(void)
{
	u32 len;
	while (vq_poll(&txq, &len) >= 0)
		tx_free++;
}

static int v_tx_slot(u8 **buf)
{
	if (!tx_free)
		tx_reap();
	if (!tx_free)
		return -1;
	u16 i = tx_next;
	tx_next = (u16)((tx_next + 1) % NET_TXQ);
	tx_free--;
	*buf = net_tx_bufs[i] + HDR;
	return i;
}

static u8 *v_tx_buf(u32 i)
{
	return net_tx_bufs[i] + HDR;
}

static void v_tx_post(int i, u32 len)
{
	net_fill(net_tx_bufs[i], 0, HDR);
	vq_post(&txq, (u16)i, (u64)net_tx_bufs[i], HDR + len, 0);
}

static void v_tx_kick(void)
{
	vq_kick(&txq);
}

static int v_tx_idle(void)
{
	tx_reap();
	return tx_free == NET_TXQ;
}

static int v_rx_poll(const u8 **f, u32 *len)
{
	u32 l;
	int i = vq_poll(&rxq, &l);
	if (i < 0 || i >= NET_RXQ)
		return -1;
	*f = net_rx_bufs[i] + HDR;
	*len = l > HDR ? l - HDR : 0;
	return i;
}

static void v_rx_release(int i)
{
	if (i >= 0 && i < NET_RXQ) {
		rx_post((u16)i);
		vq_kick(&rxq);
	}
}

static void v_close(void)
{
	vdev_reset(&dev);
}

static const struct nic virtio_nic = {
	.tx_slot = v_tx_slot,
	.tx_buf = v_tx_buf,
	.tx_post = v_tx_post,
	.tx_kick = v_tx_kick,
	.tx_idle = v_tx_idle,
	.rx_poll = v_rx_poll,
	.rx_release = v_rx_release,
	.close = v_close,
};

const struct nic *virtio_net_open(u8 *mac)
{
	if (vdev_find(VIRTIO_ID_NET, 0, &dev) < 0)
		return NULL; /* no NIC: no line */
	u64 want = VIRTIO_F_VERSION_1 | NET_F_MAC | NET_F_STATUS;
	u64 got = vdev_init(&dev, want);
	/* Full-size rings only: buffer i is descriptor i. */
	int ok = got != ~0ull && vq_setup(&dev, &rxq, 0, NET_RXQ, net_ring_mem[0]) == 0 &&
		 vq_setup(&dev, &txq, 1, NET_TXQ, net_ring_mem[1]) == 0 && rxq.size == NET_RXQ &&
		 txq.size == NET_TXQ;
	if (ok) {
		for (u16 i = 0; i < NET_RXQ; i++)
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
	kv_str("model", "virtio");
	out_mac("mac", mac);
	kv_str("link", !(got & NET_F_STATUS) ? "unknown" : (status & 1) ? "up" : "down");
	kv_hex("features", got);
	out_end();
	return ok ? &virtio_nic : NULL;
}
