#!/usr/bin/env bash
# Prepares the kernel VM used by the Kernel-tagged Pester tests (tests/vm/README.md):
#   1. qemu-system-x86 and busybox-static, through apt-get, when missing;
#   2. the linux-image-6.1 package that Debian bookworm's linux-image-amd64 depends on, fetched with
#      `apt-get download` and unpacked with `dpkg -x` into the cache (never installed on the host);
#   3. a check that this kernel has CONFIG_MEM_SOFT_DIRTY=y (the reason the VM exists);
#   4. the initrd: busybox-static, tests/vm/init, the modules virtio-9p and overlayfs need, zram (a swap device
#      the Kernel tests may make), and virtio-blk with ext4 (the power-loss disk of power-loss.sh).
# Idempotent: every step is skipped when its result is already in the cache (SOFTDIRTY_VM_DIR,
# default /var/tmp/softdirty-vm), so a second run downloads nothing. Prints what it runs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SOFTDIRTY_VM_DIR:-/var/tmp/softdirty-vm}
export DEBIAN_FRONTEND=noninteractive

say() { echo "vm-setup: $*"; }
run() { echo "vm-setup: + $*"; "$@"; }
# apt-get needs root; under sudo-less CI we are root already.
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then run "$@"; else run sudo -n "$@"; fi; }

mkdir -p "$cache"

# 1. Host tools. `apt-get update` only when something is missing (it is the slow part).
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# The initrd needs a static busybox: busybox-static installs /bin/busybox.
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
if [ ${#need[@]} -gt 0 ]; then
    sudo_if_needed apt-get update -qq
    sudo_if_needed apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

# 2. The kernel: the package name is remembered in the cache, so a warm cache asks apt nothing.
kdir=$cache/kernel
if [ ! -f "$kdir/.package" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1/ { print $2; exit }')
    if [ -z "$pkg" ]; then
        sudo_if_needed apt-get update -qq
        pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-6\.1/ { print $2; exit }')
    fi
    [ -n "$pkg" ] || { say "linux-image-amd64 does not depend on a linux-image-6.1 package (not Debian bookworm?)" >&2; exit 1; }
    rm -rf "$kdir" "$cache"/*.deb
    (cd "$cache" && run apt-get download "$pkg")
    run dpkg -x "$cache/${pkg}"_*.deb "$kdir"
    rm -f "$cache/${pkg}"_*.deb
    echo "$pkg" > "$kdir/.package"
else
    say "kernel package $(cat "$kdir/.package") already unpacked in $kdir"
fi
release=$(ls "$kdir/lib/modules")
say "kernel $release: $kdir/boot/vmlinuz-$release"

# 3. The point of it all.
if ! grep -q '^CONFIG_MEM_SOFT_DIRTY=y' "$kdir/boot/config-$release"; then
    say "kernel $release is built without CONFIG_MEM_SOFT_DIRTY" >&2
    exit 1
fi
say "kernel $release has CONFIG_MEM_SOFT_DIRTY=y"

# 4. The initrd, rebuilt when init, this script or the kernel changed (a stamp of their checksums).
initrd=$cache/initrd.cpio.gz
stamp=$(cat "$here/init" "$here/setup.sh" "$kdir/.package" | sha256sum | cut -d' ' -f1)
if [ -f "$initrd" ] && [ "$(cat "$cache/initrd.stamp" 2>/dev/null)" = "$stamp" ]; then
    say "initrd up to date: $initrd"
    exit 0
fi
moddir=$kdir/lib/modules/$release
stage=$cache/initrd-staging
rm -rf "$stage"
mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
# The kernel opens /dev/console for init before anything is mounted: the node must be in the initrd.
mknod -m 600 "$stage/dev/console" c 5 1
install -m 755 "$here/init" "$stage/init"

# The modules the guest loads, each after the modules it depends on. The package carries no
# modules.dep (depmod writes it at install time), so the dependencies come from each module's own
# .modinfo section ("depends=a,b"); a name not found as a .ko file is built into the kernel.
(cd "$moddir" && find kernel -name '*.ko') > "$cache/modules.list"
ko_path() {  # $1: a module name; prints its path relative to the modules folder, or nothing
    awk -v n="$1" '{ b = $0; sub(".*/", "", b); gsub("-", "_", b) } b == n ".ko" { print; exit }' "$cache/modules.list"
}
order=()
add_module() {  # $1: a module name
    local name=$1 path dep have
    for have in "${order[@]:-}"; do [ "$(basename "$have" .ko | tr - _)" = "$name" ] && return 0; done
    path=$(ko_path "$name")
    if [ -z "$path" ]; then say "module $name: built in"; return 0; fi
    for dep in $(tr '\0' '\n' < "$moddir/$path" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep"
    done
    order+=("$path")
}
# zram: a swap device the Kernel tests may make (Security.Round25.Swap.Tests.ps1); loaded, it swaps nothing.
# virtio_blk, ext4 and crc32c_generic (jbd2's checksums; nothing runs modprobe for the crypto API in the guest): the
# persistent disk of power-loss.sh (SOFTDIRTY_VM_DISK); loaded with no disk attached they do nothing.
for name in virtio_pci 9pnet_virtio 9p overlay zram virtio_blk crc32c_generic ext4; do add_module "$name"; done
: > "$stage/lib/modules/modules.order"
for m in "${order[@]}"; do
    case "$m" in *.ko) ;; *) say "compressed module $m is not supported" >&2; exit 1 ;; esac
    cp "$moddir/$m" "$stage/lib/modules/"
    basename "$m" >> "$stage/lib/modules/modules.order"
done
say "initrd modules: $(tr '\n' ' ' < "$stage/lib/modules/modules.order")"
(cd "$stage" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$initrd.tmp"
mv "$initrd.tmp" "$initrd"
echo "$stamp" > "$cache/initrd.stamp"
rm -rf "$stage" "$cache/modules.list"
say "initrd built: $initrd ($(du -k "$initrd" | cut -f1) KiB)"
