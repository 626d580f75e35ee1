#!/usr/bin/env bash
# Usage: tests/vm/bench-criu.sh OUTPUT.json [--quick]
#   The CRIU comparison of `build.ps1 Bench`: in the soft-dirty VM of this folder (Debian 6.1, run.sh),
#   one target (tests/native/wftarget, 512 MiB filled, then 64 MiB written) is saved by CRIU and by
#   Save-MemoryImage, interleaved: `criu dump` against a full Save-MemoryImage, and `criu pre-dump
#   --track-mem` over a previous pre-dump against Save-MemoryImage -Parent (soft-dirty). Ratios only (CRIU's
#   time over ours; the VM is TCG), with spread, and the pages each stored in the target region.
#   Writes one JSON object to OUTPUT (tests/vm/BenchCriu.ps1 makes it in the guest); when the VM or CRIU
#   cannot be had, {"skipped": "why"} and exit code 0.
#   Debian bookworm's criu and the libraries it needs that the host lacks are fetched with `apt-get
#   download` through a private apt state (its own sources list, Dir::State, Dir::Cache: the machine's apt
#   configuration is neither read nor changed) and unpacked with `dpkg -x` into the cache (never
#   installed); the guest, which sees the host's files, runs them from there.
# Environment: SOFTDIRTY_BENCH_CRIU (0: skip, as a bench without the VM's minutes),
#   SOFTDIRTY_CRIU_DIR (the cache, default /var/tmp/softdirty-vm-criu), SOFTDIRTY_DEBIAN_MIRROR
#   (default http://deb.debian.org/debian), SOFTDIRTY_PWSH (the pwsh the guest runs; default `dotnet pwsh`),
#   and those of run.sh (SOFTDIRTY_VM_TIMEOUT, SOFTDIRTY_VM_MEM, SOFTDIRTY_VM_SMP, SOFTDIRTY_VM_ACCEL).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:?usage: $0 OUTPUT.json [--quick]}
quick=${2:-}
cache=${SOFTDIRTY_CRIU_DIR:-/var/tmp/softdirty-vm-criu}
say() { echo "bench-criu: $*" >&2; }
skip() {
    say "skipped: $1"
    printf '{ "skipped": "%s" }\n' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')" > "$out"
    exit 0
}

[ "${SOFTDIRTY_BENCH_CRIU:-1}" = 0 ] && skip "SOFTDIRTY_BENCH_CRIU=0"

# 1. The VM (qemu, the 6.1 kernel, the initrd; cached by setup.sh).
bash "$here/setup.sh" >&2 || skip "tests/vm/setup.sh failed: no kernel VM on this machine"
vmdir=${SOFTDIRTY_VM_DIR:-/var/tmp/softdirty-vm}
release=$(ls "$vmdir/kernel/lib/modules" 2>/dev/null)
[ -n "$release" ] || skip "no kernel in $vmdir"

# 2. CRIU, and the libraries of its package that this machine lacks (bookworm's versions).
packages="criu libnet1 libnftables1 libnftnl11 libprotobuf-c1"
mkdir -p "$cache/debs" "$cache/apt"/{etc,state/lists/partial,cache/archives/partial}
missing=()
for p in $packages; do compgen -G "$cache/debs/${p}_*.deb" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    mirror=${SOFTDIRTY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bookworm main" > "$cache/apt/etc/sources.list"
    apt_opts=(-o Dir::Etc::SourceList="$cache/apt/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State="$cache/apt/state" -o Dir::Cache="$cache/apt/cache" -o Debug::NoLocking=1
        -o APT::Architecture=amd64 -o Acquire::Languages=none
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false)
    apt-get "${apt_opts[@]}" update -qq >&2 || skip "apt-get update of the private bookworm sources failed (no network?)"
    (cd "$cache/debs" && apt-get "${apt_opts[@]}" download "${missing[@]}" >&2) || skip "apt-get download ${missing[*]} failed"
fi
stamp=$(ls "$cache/debs" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$cache/root/.debs" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$cache/root" && mkdir -p "$cache/root"
    for f in "$cache"/debs/*.deb; do dpkg -x "$f" "$cache/root" || skip "dpkg -x $f failed"; done
    echo "$stamp" > "$cache/root/.debs"
fi
criu=$cache/root/usr/sbin/criu
libs=$cache/root/usr/lib/x86_64-linux-gnu
LD_LIBRARY_PATH=$libs "$criu" --version >/dev/null 2>&1 || skip "criu from $cache does not start here (a library missing?)"

# 3. The guest: loopback, the netfilter modules CRIU's checks need, then BenchCriu.ps1 in one pwsh.
for f in out/SoftDirty/SoftDirty.psd1 out/testkit/SoftDirty.TestKit.dll tests/native/bin/wftarget; do
    [ -f "$repo/$f" ] || skip "$f is missing (build.ps1 Build, Native and the test kit first)"
done
result=$repo/tests/results/bench-criu.json
mkdir -p "$repo/tests/results" && rm -f "$result"
export SOFTDIRTY_CRIU_BIN=$criu SOFTDIRTY_CRIU_LIBS=$libs SOFTDIRTY_CRIU_MODULES=$vmdir/kernel/lib/modules/$release/kernel
export SOFTDIRTY_CRIU_RESULT=$result SOFTDIRTY_CRIU_QUICK=${quick:+1}
export SOFTDIRTY_VM_TIMEOUT=${SOFTDIRTY_VM_TIMEOUT:-900}
bash "$here/run.sh" "$here/bench-criu-guest.sh" >&2
rc=$?
[ -s "$result" ] || skip "the VM run gave no result (run.sh exit code $rc)"
cp "$result" "$out"
exit 0
