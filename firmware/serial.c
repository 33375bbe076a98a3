/* serial.c - polled 16550 output on COM1 (and optionally QEMU's debugcon).
 *
 * Output is line-buffered: a report line is built in a buffer and sent when it
 * ends, so lines from the BSP and APs never interleave. When the UART has a
 * working FIFO (IIR bits 7:6 == 11 after enabling it), one "transmitter empty"
 * poll is followed by up to 16 bytes, which halves the number of exits.
 */
#include "probe.h"

#define COM1 0x3f8
#define DEBUGCON 0x402
#define THR 0
#define RBR 0
#define IER 1
#define DLL 0
#define DLM 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define LSR_DR 0x01
#define LSR_THRE 0x20

static int present;
static int fifo_depth = 1;
static int debugcon;
static volatile u32 lock;
static char line[512];
static usize line_len;

int serial_present(void) { return present; }
void out_debugcon(int on) { debugcon = on; }

void serial_init(void)
{
	/* A missing UART floats the bus: LSR reads 0xff. Don't spin on it. */
	if (inb(COM1 + LSR) == 0xff)
		return;
	present = 1;
	outb(COM1 + IER, 0x00);      /* polled: no interrupts */
	outb(COM1 + LCR, 0x80);      /* DLAB: divisor latch */
	outb(COM1 + DLL, 0x01);      /* 115200 = 1.8432 MHz / 16 / 1 */
	outb(COM1 + DLM, 0x00);
	outb(COM1 + LCR, 0x03);      /* 8N1, DLAB off */
	outb(COM1 + FCR, 0xc7);      /* FIFO on, clear RX/TX, RX trigger 14 */
	outb(COM1 + MCR, 0x03);      /* DTR, RTS */
	if ((inb(COM1 + IIR) & 0xc0) == 0xc0)
		fifo_depth = 16;
}

static void uart_send(const char *s, usize n)
{
	while (n) {
		u32 spins = 0;
		while (!(inb(COM1 + LSR) & LSR_THRE)) {
			if (++spins > 10000000)
				return; /* stuck transmitter: drop output */
			pause();
		}
		usize burst = n < (usize)fifo_depth ? n : (usize)fifo_depth;
		for (usize i = 0; i < burst; i++)
			outb(COM1 + THR, (u8)s[i]);
		s += burst;
		n -= burst;
	}
}

void out_lock(void)
{
	/* Bounded: a fault taken while a line is half built must still print. */
	for (u32 spins = 0; __atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE); spins++) {
		if (spins > 50000000)
			break;
		pause();
	}
	line_len = 0;
}

void out_unlock(void) { __atomic_store_n(&lock, 0, __ATOMIC_RELEASE); }

void out_char(char c)
{
	if (line_len < sizeof(line) - 2)
		line[line_len++] = c;
}

void out_str(const char *s)
{
	while (*s)
		out_char(*s++);
}

void out_hex(u64 v)
{
	char buf[16];
	int n = 0;
	out_str("0x");
	do {
		buf[n++] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v);
	while (n)
		out_char(buf[--n]);
}

void out_dec(u64 v)
{
	char buf[20];
	int n = 0;
	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		out_char(buf[--n]);
}

/* "..." with \" \\ and \xNN escapes, so a line always parses as words. */
void out_quoted(const char *s, usize max)
{
	out_char('"');
	for (usize i = 0; i < max && s[i]; i++) {
		u8 c = (u8)s[i];
		if (c == '"' || c == '\\') {
			out_char('\\');
			out_char((char)c);
		} else if (c < 0x20 || c >= 0x7f) {
			out_str("\\x");
			out_char("0123456789abcdef"[c >> 4]);
			out_char("0123456789abcdef"[c & 0xf]);
		} else {
			out_char((char)c);
		}
	}
	out_char('"');
}

void out_end(void)
{
	line[line_len++] = '\r';
	line[line_len++] = '\n';
	if (present)
		uart_send(line, line_len);
	if (debugcon)
		for (usize i = 0; i < line_len; i++)
			if (line[i] != '\r')
				outb(DEBUGCON, (u8)line[i]);
	line_len = 0;
	out_unlock();
}

int serial_getc(void)
{
	if (!present || !(inb(COM1 + LSR) & LSR_DR))
		return -1;
	return inb(COM1 + RBR);
}

void line_start(const char *tag)
{
	out_lock();
	out_str("PROBE ");
	out_str(tag);
}

void kv_hex(const char *key, u64 v)
{
	out_char(' ');
	out_str(key);
	out_char('=');
	out_hex(v);
}

void kv_dec(const char *key, u64 v)
{
	out_char(' ');
	out_str(key);
	out_char('=');
	out_dec(v);
}

void kv_str(const char *key, const char *v)
{
	out_char(' ');
	out_str(key);
	out_char('=');
	out_str(v);
}
