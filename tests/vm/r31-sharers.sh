#!/usr/bin/env bash
# Usage: tests/vm/r31-sharers.sh OUTPUT
#   Boots the kernel VM of setup.sh (Debian's 6.1: soft-dirty) through run.sh, where r31-sharers-guest.sh runs
#   tests/vm/r31-sharers.ps1 (soft-dirty chains of one memory under two pids, cleared through the other pid) as root. Writes
#   its prints to OUTPUT and facts to OUTPUT.facts (kernel, script_sha256, guest_rc, seconds). Needs build.ps1 Build,Native
#   and setup.sh first. Exits 0 when the script ran to its end, 125 when the guest did not, 1 otherwise. Environment: what
#   run.sh reads (SOFTDIRTY_VM_TIMEOUT, default here 580; SOFTDIRTY_VM_SMP, default here 2).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
output=${1:?usage: $0 OUTPUT}
for f in "$root/out/SoftDirty/SoftDirty.psd1" "$root/tests/native/bin/mmtarget"; do
    [ -e "$f" ] || { echo "vm-r31: $f is missing (build.ps1 Build,Native)" >&2; exit 1; }
done
console=$(mktemp "${TMPDIR:-/tmp}/softdirty-r31.XXXXXX")
trap 'rm -f "$console"' EXIT
start=$SECONDS
SOFTDIRTY_VM_TIMEOUT=${SOFTDIRTY_VM_TIMEOUT:-580} SOFTDIRTY_VM_SMP=${SOFTDIRTY_VM_SMP:-2} "$here/run.sh" "$here/r31-sharers-guest.sh" > "$console" 2>&1
rc=$?
seconds=$((SECONDS - start))
end=$(sed -n 's/^@@r31-end \([0-9]*\).*/\1/p' "$console" | tail -n 1)
sed -n '/^@@r31-begin$/,/^@@r31-end /p' "$console" | sed '1d;$d' > "$output"
{
    echo "kernel $(sed -n 's/^@@r31-kernel //p' "$console" | head -n 1)"
    echo "script_sha256 $(sha256sum < "$here/r31-sharers.ps1" | cut -d' ' -f1)"
    echo "guest_rc ${end:-none}"
    echo "seconds $seconds"
} > "$output.facts"
if [ -z "$end" ]; then
    echo "vm-r31: no end marker from the guest (run.sh exit code $rc) after $seconds s; console tail:" >&2
    tail -n 40 "$console" >&2
    exit 125
fi
echo "vm-r31: guest pwsh exit code $end, $(wc -l < "$output") lines, $seconds s"
[ "$end" = 0 ] || { tail -n 30 "$console" >&2; exit 1; }
