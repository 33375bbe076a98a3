//! The Linux 64-bit boot protocol entry, end to end: no stock kernel boots on this
//! host, so the test assembles a tiny "kernel" whose 64-bit entry checks what the
//! protocol promises (RSI → the zero page with the setup header, the command line at
//! `cmd_line_ptr`, the initrd at `ramdisk_image`, identity-mapped memory, long mode),
//! prints a letter per check on COM1 and powers off. It is booted twice: wrapped as a
//! bzImage (protocol 2.15) and as an ELF vmlinux.

use std::path::{Path, PathBuf};
use std::process::Command;

const ENTRY: &str = r#"
.code64
.globl _start
_start:
    mov $0x3f8, %dx
    mov $'L', %al              /* reached the 64-bit entry */
    out %al, %dx
    cmpl $0x53726448, 0x202(%rsi)   /* "HdrS" in the zero page's setup header */
    jne 1f
    mov $'Z', %al
    out %al, %dx
1:  mov 0x228(%rsi), %ecx      /* cmd_line_ptr */
    cmpl $0x73657571, (%rcx)   /* "ques" of "quest=1" */
    jne 2f
    mov $'C', %al
    out %al, %dx
2:  mov 0x218(%rsi), %ecx      /* ramdisk_image */
    cmpl $0x44525449, (%rcx)   /* "ITRD" */
    jne 3f
    mov $'I', %al
    out %al, %dx
3:  mov $'\n', %al
    out %al, %dx
    mov $0x604, %dx            /* ACPI PM1a_CNT: S5 (SLP_TYP 0) | SLP_EN */
    mov $0x2000, %ax
    out %ax, %dx
4:  hlt
    jmp 4b
"#;

mod common;
use common::kvm_usable;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-linux-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assembles the entry into an ELF (linked at 16 MiB) and a flat binary.
fn assemble(d: &Path) -> (PathBuf, Vec<u8>) {
    std::fs::write(d.join("k.S"), ENTRY).unwrap();
    let elf = d.join("vmlinux");
    run(Command::new("gcc")
        .args([
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,-Ttext=0x1000000",
            "-Wl,--build-id=none",
            "-o",
        ])
        .arg(&elf)
        .arg(d.join("k.S")));
    let flat = d.join("k.bin");
    run(Command::new("objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&elf)
        .arg(&flat));
    (elf, std::fs::read(flat).unwrap())
}

/// A bzImage around `code`: one setup sector after the boot sector, then the
/// protected-mode part whose 64-bit entry is at offset 0x200.
fn bzimage(code: &[u8]) -> Vec<u8> {
    let setup_sects = 1usize;
    let mut pm = vec![0x90u8; 0x200]; // the 32-bit entry area, unused
    pm.extend_from_slice(code);
    pm.resize(pm.len().div_ceil(16) * 16, 0);
    let mut img = vec![0u8; (setup_sects + 1) * 512];
    let put = |img: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        img[at..at + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut img, 0x1f1, &[setup_sects as u8]);
    put(&mut img, 0x1f4, &((pm.len() / 16) as u32).to_le_bytes()); // syssize
    put(&mut img, 0x1fe, &0xaa55u16.to_le_bytes());
    put(&mut img, 0x200, &[0xeb, 0x66]); // jump over the header
    put(&mut img, 0x202, b"HdrS");
    put(&mut img, 0x206, &0x020fu16.to_le_bytes()); // protocol 2.15
    put(&mut img, 0x211, &[0x01]); // loadflags: LOADED_HIGH
    put(&mut img, 0x214, &0x10_0000u32.to_le_bytes()); // code32_start
    put(&mut img, 0x22c, &0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    put(&mut img, 0x230, &0x20_0000u32.to_le_bytes()); // kernel_alignment
    put(&mut img, 0x234, &[1]); // relocatable_kernel
    put(&mut img, 0x236, &0x0003u16.to_le_bytes()); // xloadflags: KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    put(&mut img, 0x238, &2048u32.to_le_bytes()); // cmdline_size
    put(&mut img, 0x258, &0x100_0000u64.to_le_bytes()); // pref_address
    put(&mut img, 0x260, &0x10_0000u32.to_le_bytes()); // init_size
    img.extend_from_slice(&pm);
    img
}

fn boot(d: &Path, kernel: &Path) -> (Option<i32>, String) {
    std::fs::write(d.join("initrd.img"), b"ITRD and more").unwrap();
    let log = d.join("com1.log");
    let m = d.join(format!(
        "{}.toml",
        kernel.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &m,
        format!(
            "[machine]\nboard = \"pc\"\nmemory = \"256MiB\"\n[boot]\nkernel = \"{}\"\ninitrd = \"initrd.img\"\ncmdline = \"quest=1 console=ttyS0\"\n[[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
            kernel.display(),
            log.display()
        ),
    )
    .unwrap();
    let out = common::vmrun()
        .arg(&m)
        .args(["--timeout", "30s"])
        .output()
        .unwrap();
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    (
        out.status.code(),
        format!("{serial}\nstderr: {}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn bzimage_and_elf_vmlinux_enter_through_the_64_bit_boot_protocol() {
    if !kvm_usable() {
        return;
    }
    let d = dir();
    let (elf, code) = assemble(&d);
    let bz = d.join("bzImage");
    std::fs::write(&bz, bzimage(&code)).unwrap();
    for k in [&bz, &elf] {
        let (status, out) = boot(&d, k);
        assert_eq!(status, Some(0), "{}: {out}", k.display());
        assert!(
            out.starts_with("LZCI\n"),
            "{}: every check passes: {out}",
            k.display()
        );
    }
}
