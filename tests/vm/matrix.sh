#!/usr/bin/env bash
# Usage: tests/vm/matrix.sh ID INPUT OUTPUT
#   Boots kernel ID of tests/vm/kernels.list under qemu (TCG) with an initramfs that holds only a static
#   busybox, tests/vm/matrix-init, a static tests/native/sdscenario of the kernel's architecture and
#   INPUT (scenarios in sdscenario's language); writes the prints sdscenario made there to OUTPUT and
#   facts about the kernel to OUTPUT.facts ("key value" lines: kernel, arch, package, config_soft_dirty,
#   config_uffd_wp, page_size, guest_rc, seconds). Exits 0 when the guest ran sdscenario to its end, 125 when it did
#   not (no boot, crash, time out), 1 on a setup error.
#   Everything it fetches is cached in SOFTDIRTY_MATRIX_DIR (default /var/tmp/softdirty-vm-matrix):
#     apt/     a private apt state (its own sources list of the suites kernels.list names; the machine's
#              apt configuration is never read or changed), debs/ the pinned packages, <ID>/ each unpacked
#     bin/     the static sdscenario of each architecture
#   A second run downloads nothing. Needs apt-get and dpkg (Debian), and installs qemu-system-x86,
#   qemu-system-arm, busybox-static and gcc-aarch64-linux-gnu on the host when missing (root or sudo).
# Environment: SOFTDIRTY_MATRIX_KERNELS (the list ID is looked up in; default tests/vm/kernels.list),
#   SOFTDIRTY_MATRIX_DIR, SOFTDIRTY_MATRIX_TIMEOUT (seconds for one boot, default 300),
#   SOFTDIRTY_MATRIX_SMP (virtual CPUs, default 1: sdscenario is one process), SOFTDIRTY_MATRIX_MEM (default 512M),
#   SOFTDIRTY_DEBIAN_MIRROR (default: the first deb.debian.org-style URI of the host's apt sources),
#   SOFTDIRTY_MATRIX_APPEND (more kernel command line, e.g. transparent_hugepage=always),
#   SOFTDIRTY_MATRIX_SETTINGS ("path=value" words: matrix-init writes each value to its /proc or /sys path
#   before sdscenario runs, e.g. /sys/kernel/mm/transparent_hugepage/use_zero_page=0; the guest's own
#   settings, never the host's), SOFTDIRTY_MATRIX_UID (sdscenario runs as that uid and gid, not root),
#   SOFTDIRTY_MATRIX_NUMA (that many NUMA nodes sharing the memory: node 0 with the CPUs, the others memory only),
#   SOFTDIRTY_MATRIX_SWAP (a size, e.g. 256M: the guest swaps to a zram device of that size, made by matrix-init from
#   the kernel's zram module and its dependencies; 7.x kernels fetch their linux-modules-* package for them),
#   SOFTDIRTY_MATRIX_FETCH_ONLY (set: fetch and unpack the kernel, print its folder and stop; INPUT and OUTPUT are not
#   read, no boot: tests/vm/arm64-cmdlets.sh boots it with an initramfs of its own).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${SOFTDIRTY_MATRIX_DIR:-/var/tmp/softdirty-vm-matrix}
id=${1:?usage: $0 ID INPUT OUTPUT}
input=${SOFTDIRTY_MATRIX_FETCH_ONLY:+/dev/null}
input=${input:-$(realpath "${2:?usage: $0 ID INPUT OUTPUT}")}
output=${SOFTDIRTY_MATRIX_FETCH_ONLY:+/dev/null}
output=${output:-${3:?usage: $0 ID INPUT OUTPUT}}
export DEBIAN_FRONTEND=noninteractive
say() { echo "vm-matrix[$id]: $*"; }
run() { echo "vm-matrix[$id]: + $*"; "$@"; }
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then run "$@"; else run sudo -n "$@"; fi; }

# The kernel's line: id arch suite profile package=version...
list=${SOFTDIRTY_MATRIX_KERNELS:-$here/kernels.list}
line=$(awk -v id="$id" '$1 == id && $1 !~ /^#/' "$list")
[ -n "$line" ] || { say "no kernel '$id' in $list" >&2; exit 1; }
read -r _ arch suite _ packages <<<"$line"
# Swap (SOFTDIRTY_MATRIX_SWAP): 7.x packages keep the modules apart from linux-binary-*; the same version is fetched, and
# unpacked beside the kernel once (the kernel's own unpacking stays as it is without swap).
modules=""
if [ -n "${SOFTDIRTY_MATRIX_SWAP:-}" ]; then
    for p in $packages; do case "$p" in linux-binary-*) modules="$modules linux-modules-${p#linux-binary-}" ;; esac; done
fi
case "$arch" in
    amd64) qemu_bin=qemu-system-x86_64; qemu_pkg=qemu-system-x86; cc=(gcc); console=ttyS0
           machine=(-M q35 -cpu max) ;;
    arm64) qemu_bin=qemu-system-aarch64; qemu_pkg=qemu-system-arm; cc=(aarch64-linux-gnu-gcc); console=ttyAMA0
           machine=(-M virt -cpu max,pauth-impdef=on) ;;
    *) say "architecture $arch is not supported (amd64, arm64)" >&2; exit 1 ;;
esac

# 1. Host tools, installed only when missing.
need=()
command -v "$qemu_bin" >/dev/null || need+=("$qemu_pkg")
command -v "${cc[0]}" >/dev/null || need+=("$([ "$arch" = arm64 ] && echo gcc-aarch64-linux-gnu || echo gcc)")
[ "$arch" = arm64 ] && [ ! -f /usr/aarch64-linux-gnu/lib/libc.a ] && need+=(libc6-dev-arm64-cross)
if [ "$arch" = amd64 ] && { [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; }; then need+=(busybox-static); fi
if [ ${#need[@]} -gt 0 ]; then
    sudo_if_needed apt-get update -qq
    sudo_if_needed apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

# 2. The pinned packages, through a private apt state; `apt-get update` only when one is not cached.
apt_dir=$cache/apt
debs=$cache/debs
mkdir -p "$apt_dir"/{etc,state/lists/partial,cache/archives/partial} "$debs"
deb_of() {  # $1: package=version (name may carry no arch); prints the cached .deb path or nothing
    local name=${1%%=*} version=${1#*=}
    local found=("$debs/${name}_${version/:/%3a}_"*.deb)
    [ -e "${found[0]}" ] && echo "${found[0]}" || true
}
missing=()
for p in $packages $modules; do [ -n "$(deb_of "$p")" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    # The machine's mirror, from its sources' entries only (a deb822 file may name a snapshot archive in a comment);
    # any of these files may be missing (pipefail would end the script on cat's or grep's status).
    mirror=${SOFTDIRTY_DEBIAN_MIRROR:-$({ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true; } | { grep -vE '^[[:space:]]*#' || true; } | { grep -oE 'https?://[^ ]+/debian/?' || true; } | head -n 1)}
    mirror=${mirror:-http://deb.debian.org/debian}
    awk '$1 !~ /^#/ && NF { print $3 }' "$list" | sort -u | while read -r s; do
        echo "deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} $s main"
    done > "$apt_dir/etc/sources.list"
    apt_opts=(-o Dir::Etc::SourceList="$apt_dir/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State="$apt_dir/state" -o Dir::Cache="$apt_dir/cache" -o Debug::NoLocking=1
        -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
        -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false)
    run apt-get "${apt_opts[@]}" update -qq
    want=()
    for p in "${missing[@]}"; do want+=("${p%%=*}:$arch=${p#*=}"); done
    (cd "$debs" && run apt-get "${apt_opts[@]}" download "${want[@]}")
fi

# 3. Unpacked once per kernel (dpkg -x: never installed).
kdir=$cache/$id
stamp=$(echo "$packages" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$kdir/.packages" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$kdir"
    mkdir -p "$kdir"
    for p in $packages; do run dpkg -x "$(deb_of "$p")" "$kdir"; done
    echo "$stamp" > "$kdir/.packages"
fi
for p in $modules; do
    grep -qxF "$p" "$kdir/.modules" 2>/dev/null && continue
    run dpkg -x "$(deb_of "$p")" "$kdir"
    echo "$p" >> "$kdir/.modules"
done
first() { local f; for f in "$@"; do [ -e "$f" ] && { echo "$f"; return; }; done; }  # the first path that exists, or nothing
shopt -s nullglob
vmlinuz=$(first "$kdir"/boot/vmlinuz-* "$kdir"/usr/lib/modules/*/vmlinuz)
config=$(first "$kdir"/boot/config-* "$kdir"/usr/lib/modules/*/config)
[ -n "$vmlinuz" ] && [ -n "$config" ] || { say "no vmlinuz or config in $kdir" >&2; exit 1; }
if [ -n "${SOFTDIRTY_MATRIX_FETCH_ONLY:-}" ]; then echo "$kdir"; exit 0; fi
if [ "$arch" = amd64 ]; then busybox=/bin/busybox; else busybox=$(first "$kdir"/bin/busybox "$kdir"/usr/bin/busybox); fi
[ -n "$busybox" ] || { say "no busybox for $arch (kernels.list must name busybox-static for it)" >&2; exit 1; }
config_has() { grep -q "^$1=y" "$config" && echo 1 || echo 0; }
# The base page (arm64 builds with 4, 16 or 64 KiB; amd64 has 4 KiB only): the emulator models 4 KiB pages alone,
# so KernelMatrixKernel.GetProfile refuses to compare a kernel of another size.
page_size=4096
[ "$(config_has CONFIG_ARM64_16K_PAGES)" = 1 ] && page_size=16384
[ "$(config_has CONFIG_ARM64_64K_PAGES)" = 1 ] && page_size=65536

# 4. sdscenario, static, rebuilt when its source changed.
mkdir -p "$cache/bin"
sd=$cache/bin/sdscenario-$arch
src=$root/tests/native/sdscenario.c
if [ ! -x "$sd" ] || [ "$src" -nt "$sd" ]; then
    run "${cc[@]}" -static -O2 -Wall -o "$sd.tmp" "$src"
    mv "$sd.tmp" "$sd"
fi

# 5. The initramfs: fresh for each run (the input changes), made without root (a cpio list, no mknod).
work=$(mktemp -d "${TMPDIR:-/tmp}/softdirty-matrix.XXXXXX")
trap 'rm -rf "$work"' EXIT
# No device node in it (mknod needs root): matrix-init mounts devtmpfs first and opens /dev/console there.
stage=$work/stage
mkdir -p "$stage"/{bin,dev,proc,sys,tmp}
cp "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
cp "$sd" "$stage/bin/sdscenario"
install -m 755 "$here/matrix-init" "$stage/init"
cp "$input" "$stage/input.scenario"
: > "$stage/settings"
for setting in ${SOFTDIRTY_MATRIX_SETTINGS:-}; do
    case "$setting" in /proc/sys/*=*|/sys/kernel/mm/*=*) echo "${setting%%=*} ${setting#*=}" >> "$stage/settings" ;;
        *) say "setting '$setting' is not /proc/sys/...=value or /sys/kernel/mm/...=value" >&2; exit 1 ;; esac
done
echo "${SOFTDIRTY_MATRIX_UID:-}" > "$stage/uid"
# Swap: the zram module and its dependencies (each module's .modinfo "depends=", decompressed here), loaded in order by
# matrix-init, which makes /dev/zram0 of that size its swap. No module file means built in.
: > "$stage/swap"
if [ -n "${SOFTDIRTY_MATRIX_SWAP:-}" ]; then
    moddir=$(first "$kdir"/lib/modules/*/kernel "$kdir"/usr/lib/modules/*/kernel)
    [ -n "$moddir" ] || { say "no modules in $kdir for SOFTDIRTY_MATRIX_SWAP" >&2; exit 1; }
    mkdir -p "$stage/modules"
    loaded=" "
    add_module() {  # $1: module name; copies it (decompressed) after its dependencies, appending to modules.order
        local name=$1 path dep
        case "$loaded" in *" $name "*) return 0 ;; esac
        loaded="$loaded$name "
        path=$(find "$moddir" -name "$name.ko*" -o -name "${name//_/-}.ko*" | head -n 1)
        [ -n "$path" ] || return 0
        case "$path" in *.xz) xz -dc "$path" ;; *.zst) zstd -dcq "$path" ;; *) cat "$path" ;; esac > "$stage/modules/$name.ko"
        for dep in $(tr '\0' '\n' < "$stage/modules/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do add_module "${dep//-/_}"; done
        echo "$name.ko" >> "$stage/modules/order"
    }
    add_module zram
    echo "${SOFTDIRTY_MATRIX_SWAP}" > "$stage/swap"
fi
(cd "$stage" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initramfs.gz"

# 6. Boot; the serial console goes to a file (the prints are between markers of matrix-init).
smp=${SOFTDIRTY_MATRIX_SMP:-1}
# SOFTDIRTY_MATRIX_NUMA=N: the memory in N NUMA nodes of equal size (node 0 has the CPUs, the others memory only), for
# sdscenario's migrate op (move_pages).
numa=()
nodes=${SOFTDIRTY_MATRIX_NUMA:-1}
if [ "$nodes" -gt 1 ]; then
    node_mib=$(( $(numfmt --from=iec "${SOFTDIRTY_MATRIX_MEM:-512M}") / 1048576 / nodes ))
    for ((n = 0; n < nodes; n++)); do
        cpus=""
        [ "$n" -ne 0 ] || cpus=",cpus=0-$((smp - 1))"
        numa+=(-object "memory-backend-ram,id=mem$n,size=${node_mib}M" -numa "node,nodeid=$n,memdev=mem$n$cpus")
    done
fi
qemu=("$qemu_bin" -accel tcg,thread=multi,tb-size=256 "${machine[@]}" -m "${SOFTDIRTY_MATRIX_MEM:-512M}" -smp "$smp" "${numa[@]}"
    -nodefaults -no-user-config -no-reboot -display none
    -chardev file,id=console,path="$work/console" -serial chardev:console
    -kernel "$vmlinuz" -initrd "$work/initramfs.gz"
    -append "console=$console quiet loglevel=1 panic=-1 rdinit=/init ${SOFTDIRTY_MATRIX_APPEND:-}")
release=$(basename "$(dirname "$config")")
[ "$release" = boot ] && release=${config##*/config-}
say "kernel $release ($arch), $(grep -c '^scenario ' "$input") scenarios, + ${qemu[*]}"
start=$SECONDS
rc=0
timeout -k 10 "${SOFTDIRTY_MATRIX_TIMEOUT:-300}" "${qemu[@]}" </dev/null >"$work/qemu.log" 2>&1 || rc=$?
seconds=$((SECONDS - start))
sed -i 's/\r$//' "$work/console"
guest_rc=$(sed -n 's/^@@sdmatrix-end \([0-9]*\).*/\1/p' "$work/console" | tail -n 1)
sed -n '/^@@sdmatrix-begin$/,/^@@sdmatrix-end /p' "$work/console" | sed '1d;$d' > "$output"
{
    echo "kernel $(sed -n 's/^@@sdmatrix-kernel //p' "$work/console" | head -n 1)"
    echo "arch $arch"
    echo "package ${packages%% *}"
    echo "config_soft_dirty $(config_has CONFIG_MEM_SOFT_DIRTY)"
    echo "config_uffd_wp $(config_has CONFIG_HAVE_ARCH_USERFAULTFD_WP)"
    echo "page_size $page_size"
    echo "guest_rc ${guest_rc:-none}"
    sed -n 's/^@@sdmatrix-setting /setting /p' "$work/console"
    echo "seconds $seconds"
} > "$output.facts"
if [ -z "$guest_rc" ]; then
    say "no end marker from the guest (qemu exit code $rc) after $seconds s; console tail:" >&2
    tail -n 30 "$work/console" >&2
    cat "$work/qemu.log" >&2
    exit 125
fi
say "guest sdscenario exit code $guest_rc, $(grep -c '^end$' "$output") prints, $seconds s"
[ "$guest_rc" = 0 ] || exit 1
