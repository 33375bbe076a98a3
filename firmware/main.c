/* main.c - the probe's sequence: parse the command line, report, exit.
 *
 * Report lines are the contract documented in README.md; keep them stable.
 */
#include "probe.h"

struct options opt = {
	.memtest = 1,
	.smp = 1,
	.timer = 1,
	.smp_wait_ms = 200,
	.timer_ms = 20,
	.fwcfg = 2,
	.acpi = 1,
	.rtc = 1,
	.virtio_pci = 1,
	.blk = 1,
	.blk_write = 1,
	.blk_sectors = 8,
	.vga = 1,
	.net = 1,
	.net_wait_ms = 10000,
	.pci = 1,
	.tick_ms = 100,
};
const struct hvm_start_info *start_info;
static const char *cmdline = "";

/* ---------------- command line ---------------- */
static int parse_u64(const char *s, usize n, u64 *out)
{
	u64 v = 0;
	u32 base = 10;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	}
	if (!n)
		return 0;
	for (usize i = 0; i < n; i++) {
		char c = s[i];
		u32 d;
		if (c >= '0' && c <= '9')
			d = (u32)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (u32)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (u32)(c - 'A' + 10);
		else
			return 0;
		v = v * base + d;
	}
	*out = v;
	return 1;
}

static int word_is(const char *w, usize n, const char *lit)
{
	usize l = strlen(lit);
	return n == l && !memcmp(w, lit, l);
}

static int report_options; /* second pass: complain about bad words */

static void bad_option(const char *w, usize n, const char *why)
{
	char buf[64];
	if (!report_options)
		return;
	usize l = n < sizeof(buf) - 1 ? n : sizeof(buf) - 1;
	memcpy(buf, w, l);
	buf[l] = 0;
	line_start("option");
	out_char(' ');
	out_str(why);
	out_char(' ');
	out_quoted(buf, sizeof(buf));
	out_end();
}

/* Numeric options: name, where to store, inclusive bounds. */
struct num_option {
	const char *name;
	void *dst;
	int wide; /* u64 destination */
	u64 min, max;
};

static const struct num_option num_options[] = {
	{ "quick", &opt.quick, 0, 0, 1 },
	{ "cpus", &opt.cpus, 0, 1, MAX_CPUS },
	{ "pio", &opt.pio, 1, 0, ~0ul },
	{ "echo", &opt.echo, 0, 0, 1 },
	{ "pm", &opt.pm_port, 0, 1, 0xffff },
	{ "s5", &opt.s5, 0, 0, 7 },
	{ "debugcon", &opt.debugcon, 0, 0, 1 },
	{ "memtest", &opt.memtest, 0, 0, 1 },
	{ "smp", &opt.smp, 0, 0, 1 },
	{ "timer", &opt.timer, 0, 0, 1 },
	{ "smpwait", &opt.smp_wait_ms, 0, 0, 60000 },
	{ "timerms", &opt.timer_ms, 0, 1, 10000 },
	{ "crash", &opt.crash, 0, 0, 1 },
	{ "fwcfg", &opt.fwcfg, 0, 0, 1 },
	{ "rtc", &opt.rtc, 0, 0, 1 },
	{ "acpi", &opt.acpi, 0, 0, 1 },
	{ "pci", &opt.pci, 0, 0, 1 },
	{ "virtio_mmio", &opt.virtio_mmio, 1, 0, ~0ul },
	{ "virtio_mmio_n", &opt.virtio_mmio_n, 0, 0, 64 },
	{ "virtio_pci", &opt.virtio_pci, 0, 0, 1 },
	{ "blk", &opt.blk, 0, 0, 1 },
	{ "work", &opt.work, 0, 0, 1 },
	{ "blkwrite", &opt.blk_write, 0, 0, 1 },
	{ "blksectors", &opt.blk_sectors, 0, 0, 128 },
	{ "blkbench", &opt.blk_bench, 0, 0, 65536 },
	{ "net", &opt.net, 0, 0, 1 },
	{ "netsend", &opt.net_send, 0, 0, 1000000 },
	{ "netrecv", &opt.net_recv, 0, 0, 1000000 },
	{ "netecho", &opt.net_echo, 0, 0, 1000000 },
	{ "netping", &opt.net_ping, 0, 0, 1000000 },
	{ "netpeers", &opt.net_peers, 0, 0, 600000 },
	{ "netbench", &opt.net_bench, 0, 0, 10000000 },
	{ "netwait", &opt.net_wait_ms, 0, 1, 600000 },
	{ "idle", &opt.idle, 0, 0, 1 },
	{ "tickms", &opt.tick_ms, 0, 1, 10000 },
};

/* Options taking one of a few words: the word's index (or codes[index]) is stored. */
struct word_option {
	const char *name;
	u32 *dst;
	const char *words[4];
	const u32 *codes;
};

static const u32 exit_codes[] = { EXIT_POWEROFF, EXIT_TRIPLE, EXIT_RESET, EXIT_HALT };

static const struct word_option word_options[] = {
	{ "vga", &opt.vga, { "0", "text", "gfx" }, NULL },
	{ "nic", &opt.nic, { "auto", "virtio", "e1000", "all" }, NULL },
	{ "virtirq", &opt.virt_irq, { "poll", "msix", "intx" }, NULL },
	{ "exit", &opt.exit_mode, { "poweroff", "triple", "reset", "halt" }, exit_codes },
};

static void apply_option(const char *w, usize n)
{
	usize k = 0;
	while (k < n && w[k] != '=')
		k++;
	if (k == n) {
		bad_option(w, n, "unknown");
		return;
	}
	const char *val = w + k + 1;
	usize vn = n - k - 1;

	for (u32 i = 0; i < ARRAY_LEN(word_options); i++) {
		const struct word_option *o = &word_options[i];
		if (!word_is(w, k, o->name))
			continue;
		for (u32 v = 0; v < 4 && o->words[v]; v++)
			if (word_is(val, vn, o->words[v])) {
				*o->dst = o->codes ? o->codes[v] : v;
				return;
			}
		bad_option(w, n, "invalid");
		return;
	}
	for (u32 i = 0; i < ARRAY_LEN(num_options); i++) {
		const struct num_option *o = &num_options[i];
		if (!word_is(w, k, o->name))
			continue;
		u64 v;
		if (!parse_u64(val, vn, &v) || v < o->min || v > o->max) {
			bad_option(w, n, "invalid");
			return;
		}
		if (o->wide)
			*(u64 *)o->dst = v;
		else
			*(u32 *)o->dst = (u32)v;
		return;
	}
	bad_option(w, n, "unknown");
}

static void parse_cmdline(const char *s)
{
	for (usize i = 0; s[i];) {
		while (s[i] == ' ' || s[i] == '\t')
			i++;
		usize b = i;
		while (s[i] && s[i] != ' ' && s[i] != '\t')
			i++;
		if (i > b)
			apply_option(s + b, i - b);
	}
}

/* ---------------- pio and echo ---------------- */
static void pio_loop(u64 n)
{
	u64 t0 = rdtsc();
	for (u64 i = 0; i < n; i++)
		outb(0x80, (u8)i);
	u64 cycles = rdtsc() - t0;
	line_start("pio");
	kv_dec("count", n);
	kv_dec("cycles", cycles);
	if (tsc_khz && n)
		kv_dec("ns_per_exit", cycles * 1000000 / tsc_khz / n);
	out_end();
}

static void echo_loop(void)
{
	static char buf[256];
	usize len = 0;
	line_start("echo ready");
	out_end();
	if (!serial_present())
		return;
	for (;;) {
		int c = serial_getc();
		if (c < 0) {
			pause();
			continue;
		}
		if (c == '\r' || c == '\n') {
			if (!len)
				continue; /* the other half of \r\n, or an empty line */
			buf[len] = 0;
			if (streq(buf, "quit"))
				return;
			line_start("echo");
			out_char(' ');
			out_quoted(buf, sizeof(buf));
			out_end();
			len = 0;
		} else if (len < sizeof(buf) - 1) {
			buf[len++] = (char)c;
		}
	}
}

/* ---------------- exits ---------------- */
static void exit_line(const char *method)
{
	line_start("exit");
	kv_str("method", method);
	if (method[0] == 'a') {
		kv_hex("port", opt.pm_port ? opt.pm_port : 0x604);
		kv_dec("s5", opt.s5);
	}
	out_end();
}

static void try_acpi(void)
{
	u16 port = (u16)(opt.pm_port ? opt.pm_port : 0x604);
	exit_line("acpi");
	outw(port, (u16)((opt.s5 << 10) | (1u << 13)));
	delay_us(100000);
}

static void try_reset(void)
{
	exit_line("reset");
	outb(0x64, 0xfe);
	delay_us(100000);
}

void probe_exit(void)
{
	cli();
	switch (opt.exit_mode) {
	case EXIT_HALT:
		exit_line("halt");
		halt_forever();
	case EXIT_TRIPLE:
		break;
	case EXIT_RESET:
		try_reset();
		break;
	case EXIT_POWEROFF:
		try_acpi();
		break;
	default:
		try_acpi();
		try_reset();
		break;
	}
	exit_line("triple");
	triple_fault();
}

/* ---------------- main ---------------- */
static void report_cpuid(void)
{
	u32 a, b, c, d, max, emax;
	char vendor[13], hv[13];
	cpuid(0, 0, &max, &b, &c, &d);
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &d, 4);
	memcpy(vendor + 8, &c, 4);
	vendor[12] = 0;
	cpuid(1, 0, &a, &b, &c, &d);
	u32 family = (a >> 8) & 0xf, model = (a >> 4) & 0xf;
	if (family == 0xf)
		family += (a >> 20) & 0xff;
	if (family >= 6)
		model |= ((a >> 16) & 0xf) << 4;
	u32 leaf1_apic = b >> 24, x2 = (c >> 21) & 1, deadline = (c >> 24) & 1, hyp = (c >> 31) & 1;
	u32 apic = (d >> 9) & 1;
	cpuid(0x80000000, 0, &emax, &b, &c, &d);
	u32 gb = 0, lm = 0;
	if (emax >= 0x80000001) {
		cpuid(0x80000001, 0, &a, &b, &c, &d);
		gb = (d >> 26) & 1;
		lm = (d >> 29) & 1;
	}
	line_start("cpuid");
	out_str(" vendor=");
	out_quoted(vendor, 12);
	kv_hex("max", max);
	kv_hex("family", family);
	kv_hex("model", model);
	kv_dec("apic_id", leaf1_apic);
	kv_dec("apic", apic);
	kv_dec("x2apic", x2);
	kv_dec("tsc_deadline", deadline);
	kv_dec("pdpe1gb", gb);
	kv_dec("lm", lm);
	kv_dec("hypervisor", hyp);
	if (hyp) {
		cpuid(0x40000000, 0, &a, &b, &c, &d);
		memcpy(hv, &b, 4);
		memcpy(hv + 4, &c, 4);
		memcpy(hv + 8, &d, 4);
		hv[12] = 0;
		out_str(" hv=");
		out_quoted(hv, 12);
	}
	out_end();
}

static void report_boot(const struct hvm_start_info *si)
{
	line_start("boot");
	kv_hex("start_info", (u64)si);
	kv_dec("version", si->version);
	kv_hex("flags", si->flags);
	kv_dec("modules", si->nr_modules);
	kv_hex("rsdp", si->rsdp_paddr);
	out_end();
}

void probe_main(u32 si_paddr)
{
	const struct hvm_start_info *si = (const void *)(u64)si_paddr;
	start_info = si;
	serial_init();
	idt_init();

	line_start("hello");
	kv_dec("version", PROBE_VERSION);
	out_end();
	if (!si || si->magic != HVM_START_MAGIC) {
		line_start("fault bad-start-info");
		kv_hex("start_info", (u64)si);
		kv_hex("magic", si ? si->magic : 0);
		out_end();
		probe_exit();
	}
	if (si->cmdline_paddr)
		cmdline = (const char *)si->cmdline_paddr;
	/* Options first (silently), so debugcon copies the rest of the report. */
	parse_cmdline(cmdline);
	out_debugcon(opt.debugcon);
	line_start("cmdline ");
	out_quoted(cmdline, 4096);
	out_end();
	report_options = 1;
	parse_cmdline(cmdline);
	report_boot(si);
	report_cpuid();
	mem_report(si);
	fwcfg_report();
	if (opt.acpi)
		acpi_report(si);

	/* quick=1 touches nothing above 4 GiB and no APIC: the bootstrap map does. */
	if (!opt.quick) {
		paging_init(si);
		lapic_init();
		time_calibrate();
		if (opt.memtest)
			memtest(si);
		if (opt.smp)
			smp_start(si, opt.cpus, opt.cpus ? 2000 : opt.smp_wait_ms);
		if (opt.timer)
			timer_test();
		if (opt.rtc) {
			rtc_report();
			rtc_irq_test();
		}
	}
	if (opt.blk)
		blk_report();
	if (opt.pci)
		pci_report();
	if (!opt.quick)
		net_report();
	vga_report();
	if (opt.pio)
		pio_loop(opt.pio);
	if (opt.echo)
		echo_loop();
	if (opt.crash)
		__asm__ volatile("ud2"); /* test the fault path */
	line_start("done");
	out_end();
	if (opt.idle)
		idle_loop();
	probe_exit();
}
