/* entry.S - PVH entry, long-mode switch, AP trampoline and interrupt stubs.
 *
 * PVH hands us 32-bit protected mode, paging off, flat segments and
 * %ebx = physical address of struct hvm_start_info. We load our own GDT,
 * zero .bss, build bootstrap page tables that identity-map the low 4 GiB with
 * 2 MiB pages, enable long mode and call probe_main(start_info) in C.
 * paging.c later replaces these tables with ones sized from the memmap.
 */

#define SEL_CODE32 0x08
#define SEL_DATA   0x10
#define SEL_CODE64 0x18

#define CR0_PE  0x00000001
#define CR0_PG  0x80000000
#define CR4_PAE 0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

#define BSP_STACK_SIZE 16384
#define AP_STACK_SIZE 4096
#define MAX_CPUS 64

/* ---------------- PVH ELF note ---------------- */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 8                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_entry
	.balign 4

/* ---------------- 32-bit entry ---------------- */
	.section .text.entry, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	movl %ebx, %esi                 /* keep start_info in %esi */
	lgdt gdt_desc
	ljmp $SEL_CODE32, $1f
1:	movl $SEL_DATA, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs

	/* Zero .bss. The stacks and the bootstrap page tables are elsewhere:
	 * under an emulating hypervisor every guest store is expensive. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	movl $bsp_stack_top, %esp

	movl $boot_pml4, %eax
	movl %eax, %cr3
	call enable_long_mode_32
	ljmp $SEL_CODE64, $bsp_entry64

/* Sets PAE, EFER.LME and PG (with %cr3 already loaded). Clobbers eax/ecx/edx. */
enable_long_mode_32:
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	andl $0x9fffffff, %eax          /* clear CD and NW */
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ret

	.code64
bsp_entry64:
	movl $SEL_DATA, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movabsq $bsp_stack_top, %rsp
	movl %esi, %edi                 /* probe_main(start_info_paddr) */
	call probe_main
	jmp halt_forever

	.globl halt_forever
halt_forever:
	cli
1:	hlt
	jmp 1b

/* ---------------- AP path ---------------- */
/* The trampoline is copied to a page below 1 MiB; the SIPI starts it at CS:0. */
	.code16
	.globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl (ap_tramp_gdt - ap_tramp_start)
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $ap_entry32
	.balign 4
ap_tramp_gdt:
	.word gdt_end - gdt - 1
	.long gdt
ap_tramp_end:

	.code32
ap_entry32:
	movl $SEL_DATA, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movl ap_cr3, %eax
	movl %eax, %cr3
	/* no stack yet: inline the long-mode switch */
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	andl $0x9fffffff, %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_CODE64, $ap_entry64

	.code64
ap_entry64:
	movl $1, %eax
	lock xaddl %eax, ap_stack_next(%rip)
	cmpl $MAX_CPUS, %eax
	jae halt_forever
	movl %eax, %edi                 /* ap_main(idx) */
	leal 1(%eax), %eax
	imull $AP_STACK_SIZE, %eax
	movabsq $ap_stacks, %rsp
	addq %rax, %rsp
	call ap_main
	jmp halt_forever

/* ---------------- interrupt stubs ---------------- */
/* 256 stubs, 16 bytes apart; each pushes a dummy error code when the CPU
 * does not, then the vector, and jumps to the common path. */
	.section .text
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	pushq %r15
	pushq %r14
	pushq %r13
	pushq %r12
	pushq %r11
	pushq %r10
	pushq %r9
	pushq %r8
	pushq %rbp
	pushq %rdi
	pushq %rsi
	pushq %rdx
	pushq %rcx
	pushq %rbx
	pushq %rax
	movq %rsp, %rdi
	cld
	call isr_dispatch
	popq %rax
	popq %rbx
	popq %rcx
	popq %rdx
	popq %rsi
	popq %rdi
	popq %rbp
	popq %r8
	popq %r9
	popq %r10
	popq %r11
	popq %r12
	popq %r13
	popq %r14
	popq %r15
	addq $16, %rsp                  /* vector + error code */
	iretq

	.globl triple_fault
triple_fault:
	cli
	lidt null_idt_desc(%rip)
	ud2                             /* #UD with no IDT -> #DF -> shutdown */
	jmp triple_fault

/* ---------------- data ---------------- */
	.section .data
	.balign 16
gdt:
	.quad 0                         /* null */
	.quad 0x00cf9b000000ffff        /* 0x08: code32, flat */
	.quad 0x00cf93000000ffff        /* 0x10: data, flat */
	.quad 0x00af9b000000ffff        /* 0x18: code64 */
gdt_end:
	.balign 8
	.word 0
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt
	.long 0
	.balign 8
	.word 0, 0, 0
null_idt_desc:
	.word 0
	.quad 0

/* Bootstrap page tables, fully initialized in the image so that no guest
 * code has to build them: PML4[0] -> PDPT, PDPT[0..3] -> 4 PDs of 2 MiB
 * pages identity-mapping the low 4 GiB. */
	.balign 4096
boot_pml4:
	.quad boot_pdpt + 0x3
	.fill 511, 8, 0
boot_pdpt:
	.quad boot_pd + 0x3
	.quad boot_pd + 0x1000 + 0x3
	.quad boot_pd + 0x2000 + 0x3
	.quad boot_pd + 0x3000 + 0x3
	.fill 508, 8, 0
boot_pd:
	.set page, 0
	.rept 2048
	.quad (page << 21) | 0x83
	.set page, page + 1
	.endr

	.globl ap_cr3, ap_stack_next
	.balign 4
ap_cr3:
	.long 0
ap_stack_next:
	.long 0

/* Stacks need no zeroing: a separate NOLOAD section after .bss. */
	.section .stack, "aw", @nobits
	.balign 4096
bsp_stack:
	.skip BSP_STACK_SIZE
bsp_stack_top:
	.globl ap_stacks
ap_stacks:
	.skip AP_STACK_SIZE * MAX_CPUS
