#!/usr/bin/env bash
# Usage: tests/vm/la57-cmdlets.sh OUTPUT [ID]
#   Boots the kernel VM of setup.sh (Debian's 6.1, CONFIG_X86_5LEVEL=y) through run.sh, whose TCG CPU (-cpu max) has la57:
#   the guest runs with 5-level paging, a user address space up to 2^56 - 4 KiB. With ID (an amd64 kernel of kernels.list
#   whose package holds its modules, 6.12: PAGEMAP_SCAN and WP_ASYNC), that kernel instead: matrix.sh fetches and unpacks
#   it (SOFTDIRTY_MATRIX_FETCH_ONLY) and an initrd of tests/vm/init with its 9p, virtio and overlay modules (decompressed)
#   is made in a VM folder of its own, /var/tmp/softdirty-vm-la57-ID (run.sh's SOFTDIRTY_VM_DIR). There la57-guest.sh runs
#   tests/vm/la57-cmdlets.ps1 (the cmdlets against mappings across 2^47, at 2^52 and just below 2^56) as root. Writes its
#   prints to OUTPUT and facts to OUTPUT.facts (kernel, cpu_la57, thp, script_sha256, guest_rc, seconds). Needs
#   build.ps1 Build,Native and setup.sh first, and root (the initrd of ID has a /dev/console node). Exits 0 when the script ran to its end, 125 when the guest did not, 1
#   otherwise. Environment: what run.sh reads (SOFTDIRTY_VM_TIMEOUT, default here 900; SOFTDIRTY_VM_SMP, default here 2).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
output=${1:?usage: $0 OUTPUT [ID]}
id=${2:-}
if [ -n "$id" ]; then
    kdir=$(SOFTDIRTY_MATRIX_FETCH_ONLY=1 "$here/matrix.sh" "$id" | tail -n 1)
    release=$(ls "$kdir/usr/lib/modules" 2>/dev/null | head -n 1)
    moddir=$kdir/usr/lib/modules/$release
    [ -n "$release" ] && [ -f "$kdir/boot/vmlinuz-$release" ] && [ -d "$moddir/kernel/net/9p" ] || { echo "vm-la57: no kernel with modules in $kdir" >&2; exit 1; }
    export SOFTDIRTY_VM_DIR=${SOFTDIRTY_VM_DIR:-/var/tmp/softdirty-vm-la57-$id}
    stamp=$(cat "$here/init" "$here/la57-cmdlets.sh" | sha256sum | cut -d' ' -f1)-$release
    if [ "$(cat "$SOFTDIRTY_VM_DIR/initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
        stage=$(mktemp -d "${TMPDIR:-/tmp}/softdirty-la57-initrd.XXXXXX")
        mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules} "$SOFTDIRTY_VM_DIR/kernel/boot" "$SOFTDIRTY_VM_DIR/kernel/lib/modules/$release"
        cp /bin/busybox "$stage/bin/busybox" && ln -s busybox "$stage/bin/sh"
        install -m 755 "$here/init" "$stage/init"
        cp "$kdir/boot/vmlinuz-$release" "$SOFTDIRTY_VM_DIR/kernel/boot/"
        order=()
        add_module() {  # $1: a module name; its dependencies first (from its .modinfo), each decompressed once
            local name=$1 path dep have
            for have in "${order[@]:-}"; do [ "$have" = "$name" ] && return 0; done
            path=$(cd "$moddir" && find kernel -name "$name.ko*" -o -name "$(echo "$name" | tr _ -).ko*" | head -n 1)
            [ -n "$path" ] || return 0  # built in
            case "$path" in *.xz) xz -dc "$moddir/$path" ;; *.zst) zstd -dcq "$moddir/$path" ;; *) cat "$moddir/$path" ;; esac > "$stage/lib/modules/$name.ko"
            for dep in $(tr '\0' '\n' < "$stage/lib/modules/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do add_module "$(echo "$dep" | tr - _)"; done
            order+=("$name")
            echo "$name.ko" >> "$stage/lib/modules/modules.order"
        }
        for name in virtio_pci 9pnet_virtio 9p overlay; do add_module "$name"; done
        mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true
        (cd "$stage" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$SOFTDIRTY_VM_DIR/initrd.cpio.gz"
        echo "$stamp" > "$SOFTDIRTY_VM_DIR/initrd.stamp"
        rm -rf "$stage"
    fi
fi
for f in "$root/out/SoftDirty/SoftDirty.psd1" "$root/tests/native/bin/sdtarget"; do
    [ -e "$f" ] || { echo "vm-la57: $f is missing (build.ps1 Build,Native)" >&2; exit 1; }
done
console=$(mktemp "${TMPDIR:-/tmp}/softdirty-la57.XXXXXX")
trap 'rm -f "$console"' EXIT
start=$SECONDS
SOFTDIRTY_VM_TIMEOUT=${SOFTDIRTY_VM_TIMEOUT:-900} SOFTDIRTY_VM_SMP=${SOFTDIRTY_VM_SMP:-2} "$here/run.sh" "$here/la57-guest.sh" > "$console" 2>&1
rc=$?
seconds=$((SECONDS - start))
end=$(sed -n 's/^@@la57-end \([0-9]*\).*/\1/p' "$console" | tail -n 1)
sed -n '/^@@la57-begin$/,/^@@la57-end /p' "$console" | sed '1d;$d' > "$output"
{
    echo "kernel $(sed -n 's/^@@la57-kernel //p' "$console" | head -n 1)"
    sed -n 's/^@@la57-setting /setting /p' "$console"
    echo "script_sha256 $(sha256sum < "$here/la57-cmdlets.ps1" | cut -d' ' -f1)"
    echo "guest_rc ${end:-none}"
    echo "seconds $seconds"
} > "$output.facts"
if [ -z "$end" ]; then
    echo "vm-la57: no end marker from the guest (run.sh exit code $rc) after $seconds s; console tail:" >&2
    tail -n 40 "$console" >&2
    exit 125
fi
echo "vm-la57: guest pwsh exit code $end, $(wc -l < "$output") lines, $seconds s"
[ "$end" = 0 ] || { tail -n 30 "$console" >&2; exit 1; }
