/* e1000.c - the probe's driver for the Intel 82540EM (PCI 8086:100E), the NIC ops
 * net.c tests frames with.
 *
 * Found by the PCI scan of virtio.c (which numbers bridges and places unassigned
 * memory BARs); BAR0 (registers) with memory decoding and bus mastering on. Bring-up
 * as the Intel drivers do it: CTRL.RST, mask every interrupt, the MAC from the
 * EEPROM through EERD (all 64 words read and checked against the 0xBABA sum), the
 * PHY ID through MDIC, CTRL.SLU, one legacy receive ring of NET_RXQ 2 KiB buffers
 * (broadcast accepted, CRC stripped) and one legacy transmit ring of NET_TXQ
 * descriptors (EOP | IFCS | RS, short frames padded). Polled: DD in the descriptors.
 * Reports the `net ... model=e1000` line.
 */
#include "probe.h"

enum {
	CTRL = 0x0000, STATUS = 0x0008, EERD = 0x0014, MDIC = 0x0020, ICR = 0x00c0,
	IMC = 0x00d8, RCTL = 0x0100, TCTL = 0x0400, TIPG = 0x0410, RDBAL = 0x2800,
	RDBAH = 0x2804, RDLEN = 0x2808, RDH = 0x2810, RDT = 0x2818, TDBAL = 0x3800,
	TDBAH = 0x3804, TDLEN = 0x3808, TDH = 0x3810, TDT = 0x3818, MTA = 0x5200,
};
#define CTRL_SLU (1u << 6)
#define CTRL_RST (1u << 26)
#define STATUS_LU (1u << 1)
#define RCTL_EN (1u << 1)
#define RCTL_BAM (1u << 15)
#define RCTL_SECRC (1u << 26)
#define TCTL_EN (1u << 1)
#define TCTL_PSP (1u << 3)
#define TCTL_CT (0x0fu << 4)
#define TCTL_COLD (0x40u << 12)
#define CMD_EOP 0x01
#define CMD_IFCS 0x02
#define CMD_RS 0x08
#define STAT_DD 0x01

struct rx_desc {
	u64 addr;
	u16 len, csum;
	u8 status, errors;
	u16 special;
};
struct tx_desc {
	u64 addr;
	u16 len;
	u8 cso, cmd, status, css;
	u16 special;
};

static u64 regs;
static volatile struct rx_desc *rxd;
static volatile struct tx_desc *txd;
static u32 rx_next, tx_next, tx_clean, tx_free;

static u32 rd(u32 r) { return mmio_read32(regs + r); }
static void wr(u32 r, u32 v) { mmio_write32(regs + r, v); }

static int eeprom_word(u32 i, u16 *w)
{
	wr(EERD, i << 8 | 1);
	for (int spin = 0; spin < 10000; spin++) {
		u32 v = rd(EERD);
		if (v & 0x10) {
			*w = (u16)(v >> 16);
			return 0;
		}
	}
	return -1;
}

static u32 phy_read(u32 reg)
{
	wr(MDIC, 2u << 26 | 1u << 21 | reg << 16);
	for (int spin = 0; spin < 10000; spin++) {
		u32 v = rd(MDIC);
		if (v & (1u << 28))
			return v & (1u << 30) ? 0xffffffffu : (v & 0xffff);
	}
	return 0xffffffffu;
}

/* Reaps transmitted descriptors (DD written back). */
static void tx_reap(void)
{
	while (tx_clean != tx_next && (txd[tx_clean].status & STAT_DD)) {
		tx_clean = (tx_clean + 1) % NET_TXQ;
		tx_free++;
	}
}

static int e_tx_slot(u8 **buf)
{
	/* One descriptor stays unused: head == tail means empty. */
	if (tx_free <= 1)
		tx_reap();
	if (tx_free <= 1)
		return -1;
	u32 i = tx_next;
	tx_next = (tx_next + 1) % NET_TXQ;
	tx_free--;
	*buf = net_tx_bufs[i];
	return (int)i;
}

static u8 *e_tx_buf(u32 i)
{
	return net_tx_bufs[i];
}

static void e_tx_post(int i, u32 len)
{
	volatile struct tx_desc *d = &txd[i];
	d->addr = (u64)net_tx_bufs[i];
	d->len = (u16)len;
	d->cso = 0;
	d->css = 0;
	d->special = 0;
	d->status = 0;
	d->cmd = CMD_EOP | CMD_IFCS | CMD_RS;
}

static void e_tx_kick(void)
{
	barrier();
	wr(TDT, tx_next);
}

static int e_tx_idle(void)
{
	tx_reap();
	return tx_free == NET_TXQ;
}

static int e_rx_poll(const u8 **f, u32 *len)
{
	volatile struct rx_desc *d = &rxd[rx_next];
	if (!(d->status & STAT_DD))
		return -1;
	barrier();
	*f = net_rx_bufs[rx_next];
	*len = d->len;
	return (int)rx_next;
}

static void e_rx_release(int i)
{
	rxd[i].status = 0;
	rx_next = (rx_next + 1) % NET_RXQ;
	barrier();
	wr(RDT, (u32)i);
}

static void e_close(void)
{
	wr(CTRL, rd(CTRL) | CTRL_RST);
}

static const struct nic e1000_nic = {
	.tx_slot = e_tx_slot,
	.tx_buf = e_tx_buf,
	.tx_post = e_tx_post,
	.tx_kick = e_tx_kick,
	.tx_idle = e_tx_idle,
	.rx_poll = e_rx_poll,
	.rx_release = e_rx_release,
	.close = e_close,
};

static void rings_init(void)
{
	rxd = (volatile struct rx_desc *)net_ring_mem[0];
	txd = (volatile struct tx_desc *)net_ring_mem[1];
	for (u32 i = 0; i < NET_RXQ; i++) {
		rxd[i].addr = (u64)net_rx_bufs[i];
		rxd[i].status = 0;
	}
	net_fill((void *)txd, 0, NET_TXQ * sizeof(struct tx_desc));
	for (u32 i = 0; i < 128; i++)
		wr(MTA + 4 * i, 0);
	wr(RDBAL, (u32)(u64)rxd);
	wr(RDBAH, (u32)((u64)rxd >> 32));
	wr(RDLEN, NET_RXQ * sizeof(struct rx_desc));
	wr(RDH, 0);
	wr(RDT, NET_RXQ - 1);
	wr(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC); /* 2 KiB buffers */
	wr(TDBAL, (u32)(u64)txd);
	wr(TDBAH, (u32)((u64)txd >> 32));
	wr(TDLEN, NET_TXQ * sizeof(struct tx_desc));
	wr(TDH, 0);
	wr(TDT, 0);
	wr(TIPG, 10 | 8 << 10 | 6 << 20);
	wr(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD);
	rx_next = tx_next = tx_clean = 0;
	tx_free = NET_TXQ;
}

const struct nic *e1000_open(u8 *mac)
{
	u32 bdf;
	if (pcifn_find(0x100e8086u, 0, &bdf) < 0)
		return NULL;
	regs = pcifn_bar(bdf, 0);
	if (!regs)
		return NULL;
	pcicfg_write32(bdf, 0x04, (pcicfg_read32(bdf, 0x04) & 0xffff) | 0x6);
	wr(CTRL, rd(CTRL) | CTRL_RST);
	for (int spin = 0; spin < 100000 && (rd(CTRL) & CTRL_RST); spin++)
		pause();
	wr(IMC, ~0u);
	(void)rd(ICR);
	u16 sum = 0, words[3] = { 0 };
	int ok = 1;
	for (u32 i = 0; i < 64 && ok; i++) {
		u16 w = 0;
		ok = eeprom_word(i, &w) == 0;
		sum = (u16)(sum + w);
		if (i < 3)
			words[i] = w;
	}
	for (int i = 0; i < 3; i++) {
		mac[2 * i] = (u8)words[i];
		mac[2 * i + 1] = (u8)(words[i] >> 8);
	}
	u32 phy = phy_read(2) << 16 | phy_read(3);
	wr(CTRL, rd(CTRL) | CTRL_SLU);
	rings_init();
	u32 st = rd(STATUS);
	static const u32 speeds[4] = { 10, 100, 1000, 1000 };
	line_start(ok ? "net" : "net fail");
	out_str(" dev=");
	pcifn_describe(bdf);
	kv_str("model", "e1000");
	out_mac("mac", mac);
	kv_str("link", (st & STATUS_LU) ? "up" : "down");
	kv_dec("speed", speeds[(st >> 6) & 3]);
	kv_hex("phy", phy);
	kv_str("eeprom", ok && sum == 0xbaba ? "ok" : "bad");
	out_end();
	return ok ? &e1000_nic : NULL;
}
