#!/usr/bin/env bash
# Usage: tests/vm/run.sh [--share DIR] COMMAND [ARG...]
#   Boots the kernel VM that setup.sh prepared (Debian bookworm's 6.1 kernel, CONFIG_MEM_SOFT_DIRTY=y)
#   under qemu, runs COMMAND in it as root with DIR (default: the repository) as working folder,
#   prints the guest's console live, and exits with COMMAND's exit code: 125 when the guest reported
#   none (it could not boot, it crashed, or the time ran out).
#   The guest sees the host's / read-only (writes go to a tmpfs and vanish) and DIR read-write at the
#   same path. COMMAND runs in a clean environment: PATH, HOME and every SOFTDIRTY_* variable of the
#   caller, plus NUGET_PACKAGES, DOTNET_ROOT and DOTNET_CLI_HOME when set.
# Environment: SOFTDIRTY_VM_DIR (the cache of setup.sh, default /var/tmp/softdirty-vm),
#   SOFTDIRTY_VM_TIMEOUT (seconds for the whole VM, default 570), SOFTDIRTY_VM_MEM (default 3G),
#   SOFTDIRTY_VM_SMP (virtual CPUs, default: the host's, at most 4),
#   SOFTDIRTY_VM_ACCEL (tcg, the default, or kvm where /dev/kvm runs a stock kernel),
#   SOFTDIRTY_VM_APPEND (more kernel command line, e.g. transparent_hugepage=never: the guest's 3 GiB boot Debian's
#   default, always),
#   SOFTDIRTY_VM_DISK (a raw disk image file: the guest's /dev/vda, virtio-blk; power-loss.sh),
#   SOFTDIRTY_VM_DISK_CACHE (its qemu cache mode, default writeback: the guest's flushes reach the host file as
#   fdatasync; never unsafe, which drops them), SOFTDIRTY_VM_DISK_LOG (with SOFTDIRTY_VM_DISK: a file where qemu's
#   blklogwrites driver logs every write and flush to that disk, for power-loss-replay), SOFTDIRTY_VM_PIDFILE (qemu writes its pid there: SIGKILL of that pid
#   is a power loss of the guest).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SOFTDIRTY_VM_DIR:-/var/tmp/softdirty-vm}
share=$(cd "$here/../.." && pwd)
if [ "${1:-}" = --share ]; then share=$(realpath "${2:?--share needs a folder}"); shift 2; fi
[ $# -gt 0 ] || { echo "usage: $0 [--share DIR] COMMAND [ARG...]" >&2; exit 2; }

release=$(ls "$cache/kernel/lib/modules" 2>/dev/null)
kernel=$cache/kernel/boot/vmlinuz-$release
if [ -z "$release" ] || [ ! -f "$kernel" ] || [ ! -f "$cache/initrd.cpio.gz" ]; then
    echo "vm-run: no kernel or initrd in $cache: run tests/vm/setup.sh first" >&2
    exit 125
fi

# The status folder: what to run in, the exit code out. Shell words are single-quoted.
status=$(mktemp -d "${TMPDIR:-/tmp}/softdirty-vm.XXXXXX")
trap 'rm -rf "$status"' EXIT
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
printf '%s' "$share" > "$status/share"
{
    echo "export PATH=$(quote "$PATH") HOME=$(quote "${HOME:-/root}")"
    for name in $(compgen -e | grep -E '^(SOFTDIRTY_.*|NUGET_PACKAGES|DOTNET_ROOT|DOTNET_CLI_HOME)$'); do
        echo "export $name=$(quote "${!name}")"
    done
} > "$status/env"
{
    printf 'cd %s && exec' "$(quote "$share")"
    for word in "$@"; do printf ' %s' "$(quote "$word")"; done
    echo
} > "$status/cmd"

smp=${SOFTDIRTY_VM_SMP:-$(nproc)}
[ "$smp" -gt 4 ] && smp=4
case "${SOFTDIRTY_VM_ACCEL:-tcg}" in
    # The host's CPU model minus what a nested hypervisor may refuse to pass through.
    kvm) accel=(-accel kvm -cpu host,-arch-capabilities) ;;
    # TCG: a translation thread per virtual CPU and a large translation cache (dotnet is a big JIT).
    *) accel=(-accel tcg,thread=multi,tb-size=512 -cpu max) ;;
esac
qemu=(qemu-system-x86_64 "${accel[@]}" -M q35 -m "${SOFTDIRTY_VM_MEM:-3G}" -smp "$smp"
    -nodefaults -no-user-config -no-reboot -display none
    # The serial console is the guest's only output; stdin is /dev/null (CI has none), so no echo.
    -chardev stdio,id=console,signal=off -serial chardev:console
    -kernel "$kernel" -initrd "$cache/initrd.cpio.gz"
    -append "console=ttyS0 quiet loglevel=3 panic=-1 ${SOFTDIRTY_VM_APPEND:-}"
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
    -fsdev local,id=share,path="$share",security_model=none,multidevs=remap
    -device virtio-9p-pci,fsdev=share,mount_tag=share
    -fsdev local,id=status,path="$status",security_model=none
    -device virtio-9p-pci,fsdev=status,mount_tag=status)
if [ -n "${SOFTDIRTY_VM_DISK_LOG:-}" ]; then
    # qemu's blklogwrites: every write, flush and FUA the guest sends is appended to the log (dm-log-writes' format), in
    # the order the guest submits them, as well as written to the disk.
    qemu+=(-drive "if=none,id=disk,driver=blklogwrites,cache=${SOFTDIRTY_VM_DISK_CACHE:-writeback},file.driver=file,file.filename=$SOFTDIRTY_VM_DISK,log.driver=file,log.filename=$SOFTDIRTY_VM_DISK_LOG,log-sector-size=512,log-append=off"
        -device virtio-blk-pci,drive=disk)
elif [ -n "${SOFTDIRTY_VM_DISK:-}" ]; then
    qemu+=(-drive "file=$SOFTDIRTY_VM_DISK,if=none,id=disk,format=raw,cache=${SOFTDIRTY_VM_DISK_CACHE:-writeback},aio=threads"
        -device virtio-blk-pci,drive=disk)
fi
[ -n "${SOFTDIRTY_VM_PIDFILE:-}" ] && qemu+=(-pidfile "$SOFTDIRTY_VM_PIDFILE")
echo "vm-run: kernel $release, share $share, command: $(sed 's/^cd [^&]*&& exec //' "$status/cmd")"
echo "vm-run: + ${qemu[*]}"
start=$SECONDS
# The console ends lines with CR LF: drop the CR, unbuffered so that the output stays live.
timeout -k 10 "${SOFTDIRTY_VM_TIMEOUT:-570}" "${qemu[@]}" </dev/null 2>&1 | sed -u 's/\r$//'
qrc=${PIPESTATUS[0]}
if [ -s "$status/rc" ]; then
    rc=$(cat "$status/rc")
    echo "vm-run: guest command exit code $rc, VM wall time $((SECONDS - start)) s"
    exit "$rc"
fi
if [ -n "${SOFTDIRTY_VM_PIDFILE:-}" ] && [ "$qrc" = 137 ]; then
    echo "vm-run: qemu was killed (SIGKILL) after $((SECONDS - start)) s, no exit code from the guest" >&2
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    echo "vm-run: timed out after ${SOFTDIRTY_VM_TIMEOUT:-570} s with no exit code from the guest" >&2
else
    echo "vm-run: no exit code from the guest (qemu exit code $qrc) after $((SECONDS - start)) s" >&2
fi
exit 125
