/* floor.c - the benchmark floor: boot a PVH guest with nothing but KVM ioctls.
 *
 * The least a VMM can do to run the probe or the minimal guest (firmware/mini.S):
 * one VM, a 128 MiB memslot, the in-kernel irqchip and PIT (the devices vmrun
 * creates: their teardown is most of a VM's exit cost), one vCPU with the
 * supported CPUID, the ELF's
 * PT_LOAD segments, a PVH start_info, 32-bit flat protected mode at the PVH
 * entry, and an exit loop that only knows COM1 output and ACPI power-off.
 * COM1 output goes to stdout unbuffered, one write per exit, so that the first
 * line is timed when the guest sends it. Whatever vmrun costs beyond this is
 * vmrun's own overhead.
 *
 * Build:  make -C benches/floor      (or: gcc -O2 -Wall -o floor floor.c)
 * Run:    ./floor probe.elf "quick=1 pm=0x604 pio=100000"
 *         ./floor mini.elf
 * Exit:   0 on ACPI S5, 1 on HLT, 2 on shutdown (triple fault), 3 on other
 *         exits or errors, 4 on the 20 s timeout. With the in-kernel irqchip
 *         a guest HLT is handled by KVM and never reaches us, so a probe run
 *         with exit=halt ends with the timeout.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM_SIZE (128ul << 20)
#define TSS_ADDR 0xfffbd000ul
#define START_INFO 0x6000ul
#define MEMMAP (START_INFO + 0x40)
#define CMDLINE 0x7000ul
#define CMDLINE_MAX 4096
#define PVH_MAGIC 0x336ec578u
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MAX_CPUID 256

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

static void die(const char *what)
{
	perror(what);
	exit(3);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "floor: timeout\n";
	if (write(2, msg, sizeof(msg) - 1) < 0) {
	}
	_exit(4);
}

/* Loads PT_LOAD segments into guest memory; returns the PVH entry or 0. */
static uint32_t load_elf(const char *path, uint8_t *mem)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat");
	uint8_t *img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED)
		die("mmap elf");
	close(fd);
	const Elf64_Ehdr *eh = (const void *)img;
	if ((size_t)st.st_size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64) {
		fprintf(stderr, "floor: %s is not an x86-64 ELF64 file\n", path);
		exit(3);
	}
	uint32_t entry = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff + (size_t)i * eh->e_phentsize);
		if (ph->p_offset + ph->p_filesz > (uint64_t)st.st_size) {
			fprintf(stderr, "floor: segment %d outside the file\n", i);
			exit(3);
		}
		if (ph->p_type == PT_LOAD) {
			if (ph->p_paddr + ph->p_memsz > MEM_SIZE) {
				fprintf(stderr, "floor: segment %d outside guest RAM\n", i);
				exit(3);
			}
			memcpy(mem + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
			memset(mem + ph->p_paddr + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		} else if (ph->p_type == PT_NOTE) {
			size_t at = 0;
			const uint8_t *n = img + ph->p_offset;
			while (at + sizeof(Elf64_Nhdr) <= ph->p_filesz) {
				const Elf64_Nhdr *nh = (const void *)(n + at);
				size_t name = at + sizeof(*nh);
				size_t desc = name + ((nh->n_namesz + 3) & ~3u);
				if (nh->n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh->n_namesz == 4 &&
				    !memcmp(n + name, "Xen", 4) && nh->n_descsz >= 4)
					memcpy(&entry, n + desc, 4);
				at = desc + ((nh->n_descsz + 3) & ~3u);
			}
		}
	}
	munmap(img, (size_t)st.st_size);
	return entry;
}

static void write_start_info(uint8_t *mem, const char *cmdline)
{
	struct hvm_memmap_entry mm[] = {
		{ 0, 0x9fc00, 1, 0 },
		{ 0x9fc00, 0x400, 2, 0 },
		{ 0xf0000, 0x10000, 2, 0 },
		{ 0x100000, MEM_SIZE - 0x100000, 1, 0 },
	};
	struct hvm_start_info si = {
		.magic = PVH_MAGIC,
		.version = 1,
		.cmdline_paddr = CMDLINE,
		.memmap_paddr = MEMMAP,
		.memmap_entries = sizeof(mm) / sizeof(mm[0]),
	};
	memcpy(mem + START_INFO, &si, sizeof(si));
	memcpy(mem + MEMMAP, mm, sizeof(mm));
	size_t n = strlen(cmdline);
	if (n >= CMDLINE_MAX)
		n = CMDLINE_MAX - 1;
	memcpy(mem + CMDLINE, cmdline, n);
	mem[CMDLINE + n] = 0;
}

static void set_flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->db = 1;
	s->g = 1;
}

static void setup_vcpu(int kvm, int vcpu, uint32_t entry)
{
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	if (!cpuid)
		die("calloc");
	cpuid->nent = MAX_CPUID;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		die("KVM_GET_SUPPORTED_CPUID");
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		if (e->function == 1)
			e->ebx &= 0x00ffffff; /* initial APIC ID 0 */
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = 0; /* x2APIC ID 0 */
	}
	if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
		die("KVM_SET_CPUID2");
	free(cpuid);

	struct kvm_sregs sr;
	if (ioctl(vcpu, KVM_GET_SREGS, &sr) < 0)
		die("KVM_GET_SREGS");
	set_flat_segment(&sr.cs, 0x08, 0xb); /* code, execute/read, accessed */
	set_flat_segment(&sr.ds, 0x10, 0x3); /* data, read/write, accessed */
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.tr.base = 0;
	sr.tr.limit = 0x67;
	sr.tr.selector = 0x18;
	sr.tr.type = 0xb; /* busy 32-bit TSS */
	sr.tr.present = 1;
	sr.tr.s = 0;
	sr.cr0 = 0x11; /* PE | ET, paging off */
	sr.cr4 = 0;
	sr.efer = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sr) < 0)
		die("KVM_SET_SREGS");

	struct kvm_regs r;
	memset(&r, 0, sizeof(r));
	r.rflags = 0x2;
	r.rip = entry;
	r.rbx = START_INFO;
	if (ioctl(vcpu, KVM_SET_REGS, &r) < 0)
		die("KVM_SET_REGS");
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s probe.elf [\"cmdline\"]\n", argv[0]);
		return 3;
	}
	signal(SIGALRM, on_alarm);
	alarm(20);

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	if (ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
		die("KVM_SET_TSS_ADDR");

	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap guest memory");
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die("KVM_SET_USER_MEMORY_REGION");
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
		die("KVM_CREATE_IRQCHIP");
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0)
		die("KVM_CREATE_PIT2");

	uint32_t entry = load_elf(argv[1], mem);
	if (!entry) {
		fprintf(stderr, "floor: %s has no PVH entry note\n", argv[1]);
		return 3;
	}
	write_start_info(mem, argc > 2 ? argv[2] : "");

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0)
		die("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	setup_vcpu(kvm, vcpu, entry);

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			die("KVM_RUN");
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *data = (uint8_t *)run + run->io.data_offset;
			size_t bytes = (size_t)run->io.size * run->io.count;
			if (run->io.direction == KVM_EXIT_IO_OUT) {
				if (run->io.port == 0x3f8) {
					if (write(1, data, bytes) < 0) {
					}
				} else if (run->io.port == 0x604 && run->io.size == 2) {
					uint16_t v;
					memcpy(&v, data, 2);
					if (v & (1u << 13)) { /* SLP_EN */
						return 0;
					}
				}
			} else {
				memset(data, 0xff, bytes);
				if (run->io.port == 0x3fd)
					memset(data, 0x60, bytes); /* LSR: THR and transmitter empty */
			}
			break;
		}
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
			break;
		case KVM_EXIT_HLT:
			fprintf(stderr, "floor: hlt\n");
			return 1;
		case KVM_EXIT_SHUTDOWN:
			fprintf(stderr, "floor: shutdown\n");
			return 2;
		default:
			fprintf(stderr, "floor: unexpected exit %u\n", run->exit_reason);
			return 3;
		}
	}
}
