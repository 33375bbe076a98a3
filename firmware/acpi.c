/* acpi.c - find the ACPI RSDP, walk the XSDT (or RSDT), verify every checksum,
 * and report the CPUs, IOAPIC and interrupt overrides the MADT describes.
 *
 * Lines (see README.md):
 *   PROBE acpi rsdp=0xf0000 rev=2 oem="VMRUN " found=start_info|scan
 *   PROBE acpi table sig="APIC" addr=0x... len=N checksum=ok|bad|none
 *   PROBE acpi madt cpus=N apic_ids=0,1 ioapic=0xfec00000 overrides=2
 *   PROBE acpi fadt sci=9 gsi=9 trigger=level polarity=high pm1a_evt=0x600 ...
 *   PROBE acpi none                        (no RSDP)
 * What the power-button code needs (SCI, PM1 blocks, the SCI's IOAPIC pin) is kept in
 * `acpi_info`.
 * Tables are read through the identity map; anything at or above 4 GiB, or with a
 * length that makes no sense, is reported as bad rather than followed.
 */
#include "probe.h"

#define MAX_TABLES 64
#define MAX_LEN (1u << 20)
#define LOW_LIMIT 0x100000000ul

struct sdt_header {
	char sig[4];
	u32 len;
	u8 rev;
	u8 checksum;
	char oem[6];
	char oem_table[8];
	u32 oem_rev;
	u32 creator;
	u32 creator_rev;
} __attribute__((packed));

struct acpi_info acpi_info;

static u8 sum(const u8 *p, u32 n)
{
	u8 s = 0;
	for (u32 i = 0; i < n; i++)
		s = (u8)(s + p[i]);
	return s;
}

static u32 rd32(const u8 *p)
{
	return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24;
}

static u64 rd64(const u8 *p)
{
	return (u64)rd32(p) | (u64)rd32(p + 4) << 32;
}

/* An RSDP at p: signature and the v1 checksum (and the extended one for rev >= 2). */
static int rsdp_ok(const u8 *p)
{
	if (memcmp(p, "RSD PTR ", 8) || sum(p, 20))
		return 0;
	if (p[15] >= 2) {
		u32 len = rd32(p + 20);
		if (len < 36 || len > 4096 || sum(p, len))
			return 0;
	}
	return 1;
}

static const u8 *scan(u64 base, u64 len)
{
	for (u64 a = base; a + 36 <= base + len; a += 16)
		if (rsdp_ok((const u8 *)a))
			return (const u8 *)a;
	return NULL;
}

static int table_sane(u64 addr)
{
	if (!addr || addr + 36 > LOW_LIMIT)
		return 0;
	u32 len = ((const struct sdt_header *)addr)->len;
	return len >= 36 && len <= MAX_LEN && addr + len <= LOW_LIMIT;
}

static void out_sig(const char *sig)
{
	char s[5];
	memcpy(s, sig, 4);
	s[4] = 0;
	out_str(" sig=");
	out_quoted(s, 4);
}

/* Reports one table; returns 1 when it can be read. */
static int report_table(u64 addr, int has_checksum)
{
	line_start("acpi table");
	if (!table_sane(addr)) {
		kv_hex("addr", addr);
		kv_str("checksum", "bad");
		out_end();
		return 0;
	}
	const struct sdt_header *h = (const struct sdt_header *)addr;
	out_sig(h->sig);
	kv_hex("addr", addr);
	kv_dec("len", h->len);
	if (has_checksum)
		kv_str("checksum", sum((const u8 *)addr, h->len) ? "bad" : "ok");
	else
		kv_str("checksum", "none");
	out_end();
	return 1;
}

/* Walks the MADT: counts what it finds; prints the APIC IDs when print is set. */
static u32 madt_walk(const u8 *t, u32 len, int print, u64 *ioapic, u32 *overrides)
{
	u32 cpus = 0;
	for (u32 o = 44; o + 2 <= len;) {
		u8 type = t[o], l = t[o + 1];
		if (l < 2 || o + l > len)
			break;
		u32 id = ~0u;
		if (type == 0 && l >= 8 && (rd32(t + o + 4) & 3))
			id = t[o + 3];
		else if (type == 9 && l >= 16 && (rd32(t + o + 8) & 3))
			id = rd32(t + o + 4);
		else if (type == 1 && l >= 12 && !*ioapic)
			*ioapic = rd32(t + o + 4);
		else if (type == 2 && l >= 10) {
			(*overrides)++;
			/* bus 0 (ISA), source IRQ, GSI, MPS INTI flags */
			if (t[o + 3] == acpi_info.sci && acpi_info.have_fadt) {
				acpi_info.sci_gsi = rd32(t + o + 4);
				acpi_info.sci_flags = (u16)(t[o + 8] | t[o + 9] << 8);
				acpi_info.sci_override = 1;
			}
		}
		if (id != ~0u) {
			if (print) {
				if (cpus)
					out_char(',');
				out_dec(id);
			}
			cpus++;
		}
		o += l;
	}
	return cpus;
}

static void report_madt(const u8 *t, u32 len)
{
	u64 ioapic = 0;
	u32 overrides = 0;
	u32 cpus = madt_walk(t, len, 0, &ioapic, &overrides);
	line_start("acpi madt");
	kv_dec("cpus", cpus);
	out_str(" apic_ids=");
	if (cpus) {
		u64 io2 = 0;
		u32 ov2 = 0;
		madt_walk(t, len, 1, &io2, &ov2);
	} else {
		out_str("none");
	}
	kv_hex("ioapic", ioapic);
	kv_dec("overrides", overrides);
	out_end();
}

/* Keeps what the FADT says about the SCI and the PM1 blocks. */
static void read_fadt(const u8 *t, u32 len)
{
	if (len < 116)
		return;
	acpi_info.have_fadt = 1;
	acpi_info.sci = (u16)(t[46] | t[47] << 8);
	acpi_info.sci_gsi = acpi_info.sci; /* identity unless the MADT overrides it */
	acpi_info.smi_cmd = rd32(t + 48);
	acpi_info.acpi_enable = t[52];
	acpi_info.pm1a_evt = rd32(t + 56);
	acpi_info.pm1a_cnt = rd32(t + 64);
	acpi_info.pm1_evt_len = t[88];
	acpi_info.flags = rd32(t + 112);
}

/* MPS INTI flags → trigger and polarity; "conforms" for the SCI means level, low. */
int acpi_sci_level(void) { return (acpi_info.sci_flags & 0xc) != 0x4; }
int acpi_sci_low(void) { return (acpi_info.sci_flags & 0x3) != 0x1; }

static void report_fadt(void)
{
	line_start("acpi fadt");
	kv_dec("sci", acpi_info.sci);
	kv_dec("gsi", acpi_info.sci_gsi);
	kv_str("trigger", acpi_sci_level() ? "level" : "edge");
	kv_str("polarity", acpi_sci_low() ? "low" : "high");
	kv_hex("pm1a_evt", acpi_info.pm1a_evt);
	kv_hex("pm1a_cnt", acpi_info.pm1a_cnt);
	kv_hex("smi_cmd", acpi_info.smi_cmd);
	kv_hex("flags", acpi_info.flags);
	/* FADT flags bit 4 (PWR_BUTTON): set = control-method button (or none). */
	kv_str("pwrbtn", (acpi_info.flags & (1u << 4)) ? "control" : "fixed");
	out_end();
}

void acpi_report(const struct hvm_start_info *si)
{
	const u8 *rsdp = NULL;
	const char *how = "scan";
	if (si->rsdp_paddr && si->rsdp_paddr < LOW_LIMIT && rsdp_ok((const u8 *)si->rsdp_paddr)) {
		rsdp = (const u8 *)si->rsdp_paddr;
		how = "start_info";
	}
	if (!rsdp) {
		u64 bda = 0x40e; /* BDA word: EBDA segment */
		__asm__("" : "+r"(bda)); /* a plain address, not a null-based array */
		u64 ebda = (u64)(*(volatile u16 *)bda) << 4;
		if (ebda >= 0x80000 && ebda < 0xa0000)
			rsdp = scan(ebda, 1024);
	}
	if (!rsdp)
		rsdp = scan(0xe0000, 0x20000);
	if (!rsdp) {
		line_start("acpi none");
		out_end();
		return;
	}
	u8 rev = rsdp[15];
	char oem[7];
	memcpy(oem, rsdp + 9, 6);
	oem[6] = 0;
	line_start("acpi");
	kv_hex("rsdp", (u64)rsdp);
	kv_dec("rev", rev);
	out_str(" oem=");
	out_quoted(oem, 6);
	kv_str("found", how);
	out_end();

	u64 root = 0;
	u32 entry = 4;
	if (rev >= 2 && rd64(rsdp + 24)) {
		root = rd64(rsdp + 24);
		entry = 8;
	} else {
		root = rd32(rsdp + 16);
	}
	if (!report_table(root, 1))
		return;
	const struct sdt_header *rh = (const struct sdt_header *)root;
	u32 n = (rh->len - 36) / entry;
	if (n > MAX_TABLES)
		n = MAX_TABLES;
	const u8 *madt = NULL;
	u32 madt_len = 0;
	for (u32 i = 0; i < n; i++) {
		const u8 *e = (const u8 *)root + 36 + i * entry;
		u64 addr = entry == 8 ? rd64(e) : rd32(e);
		if (!report_table(addr, 1))
			continue;
		const struct sdt_header *h = (const struct sdt_header *)addr;
		const u8 *t = (const u8 *)addr;
		if (!memcmp(h->sig, "APIC", 4) && !madt && !sum(t, h->len)) {
			madt = t;
			madt_len = h->len;
		}
		if (!memcmp(h->sig, "FACP", 4) && !sum(t, h->len))
			read_fadt(t, h->len);
		if (!memcmp(h->sig, "FACP", 4) && h->len >= 44) {
			u64 dsdt = h->len >= 148 ? rd64(t + 140) : 0;
			if (!dsdt)
				dsdt = rd32(t + 40);
			u64 facs = h->len >= 140 ? rd64(t + 132) : 0;
			if (!facs)
				facs = rd32(t + 36);
			report_table(dsdt, 1);
			if (facs && facs + 64 <= LOW_LIMIT && !memcmp((const void *)facs, "FACS", 4))
				report_table(facs, 0);
		}
	}
	if (madt)
		report_madt(madt, madt_len);
	if (acpi_info.have_fadt)
		report_fadt();
}
