/* mini.S - the minimal guest: one line on COM1, then power off.
 *
 * For benchmarks that measure a VMM rather than a guest (benches/compare.py):
 * under an emulating hypervisor every guest instruction costs ~1 us, so this
 * guest is ten instructions. It is a PVH ELF like the probe (entered in 32-bit
 * protected mode, paging off, flat segments) and boots as any `[boot] kernel`.
 *
 * 1. `rep outsb` of the line to COM1's data port 0x3f8: one string-I/O exit
 *    (KVM hands every byte over at once). A VMM's UART sends at once, so the
 *    line status register is not polled; a real 16550 would drop bytes.
 * 2. ACPI power-off through PM1a_CNT at 0x604 (the PM block at 0x600 on every
 *    board vmrun has): SLP_EN with SLP_TYP 7 (ICH9's S5, q35), then with
 *    SLP_TYP 0 (PIIX4's soft-off, pc and microvm). A board ignores the type
 *    that is not its S5.
 * 3. If still running (QEMU's microvm has no PM block there): a triple fault,
 *    an exception with an empty IDT, which `qemu -no-reboot` turns into an exit.
 */

#define MINI_COM1     0x3f8
#define MINI_PM1A_CNT 0x604
#define SLP_EN        (1 << 13)
#define SLP_TYP(t)    ((t) << 10)

	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 8                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad mini_entry
	.balign 4

	.section .text.entry, "ax"
	.code32
	.globl mini_entry
mini_entry:
	cld
	movl $line, %esi
	movl $line_end - line, %ecx
	movw $MINI_COM1, %dx
	rep outsb
	movw $MINI_PM1A_CNT, %dx
	movw $(SLP_EN | SLP_TYP(7)), %ax
	outw %ax, %dx
	movw $(SLP_EN | SLP_TYP(0)), %ax
	outw %ax, %dx
	lidt no_idt
	ud2

	.section .rodata
line:
	.ascii "mini: hello from the minimal guest\n"
line_end:
	.balign 8
no_idt:
	.word 0                 /* limit 0: every vector faults */
	.long 0
