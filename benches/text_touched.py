"""gdb script: which functions of vmrun one run executes, and what text they span.

Why: most of vmrun's peak RSS is file-backed text. The kernel maps a file page
with its neighbours (fault-around, 64 KiB windows), so a run that touches a few
hundred functions spread over the whole .text maps all of it. This script puts a
one-shot breakpoint on every function of an unstripped build, runs one machine,
and writes the names of the functions that ran (in first-call order) to
/tmp/text_touched.txt: its length is the executed set, and the file is a valid
`--symbol-ordering-file` for LLD (see benches/README.md).

  CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/syms \\
      cargo build --release --bin vmrun
  nm target/syms/release/vmrun | awk '$2 ~ /^[tT]$/ {print $1, $3}' > /tmp/fsyms.txt
  gdb -q -batch -x benches/text_touched.py --args target/syms/release/vmrun m.toml

It takes about 15 s for a minimal run (every first call stops the process once).
"""
import gdb

gdb.execute("set pagination off")
gdb.execute("set confirm off")
# vmrun's vCPU kick and glibc's internal signals.
gdb.execute("handle SIG34 SIG35 SIG36 nostop noprint pass")
gdb.execute("starti")

base = None
for line in gdb.execute("info proc mappings", to_string=True).splitlines():
    if "vmrun" in line:
        base = int(line.split()[0], 16)
        break
if base is None:
    raise gdb.GdbError("no vmrun mapping: is this a PIE vmrun?")

names = {}
with open("/tmp/fsyms.txt") as f:
    for line in f:
        addr, name = line.split()
        at = base + int(addr, 16)
        bp = gdb.Breakpoint("*%#x" % at, internal=True, temporary=True)
        bp.silent = True
        names[at] = name

with open("/tmp/text_touched.txt", "w") as out:
    while True:
        try:
            gdb.execute("continue", to_string=True)
            pc = int(gdb.parse_and_eval("$pc"))
        except gdb.error:
            break  # the process exited
        if pc in names:
            out.write(names[pc] + "\n")
