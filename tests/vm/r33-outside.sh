#!/usr/bin/env bash
# Usage: tests/vm/r33-outside.sh OUTPUT
#   Boots the kernel VM of setup.sh (Debian's 6.1: soft-dirty) through run.sh, where r33-outside-guest.sh runs
#   tests/vm/r33-outside.ps1 (another process's writes into a soft-dirty chain's target at each step of an increment's save) as root. Writes
#   its prints to OUTPUT and facts to OUTPUT.facts (kernel, script_sha256, guest_rc, seconds). Needs build.ps1 Build,Native
#   and setup.sh first. Exits 0 when the script ran to its end, 125 when the guest did not, 1 otherwise. Environment: what
#   run.sh reads (SOFTDIRTY_VM_TIMEOUT, default here 580; SOFTDIRTY_VM_SMP, default here 2).
set -uo pipefail
vm=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
output=${1:?usage: $0 OUTPUT}
missing=$(cd "$vm/../.." && ls out/SoftDirty/SoftDirty.psd1 tests/native/bin/mmtarget 2>&1 >/dev/null)
[ -z "$missing" ] || { echo "vm-r33: $missing (build.ps1 Build,Native)" >&2; exit 1; }
log=$(mktemp "${TMPDIR:-/tmp}/softdirty-r33.XXXXXX")
trap 'rm -f "$log"' EXIT
began=$SECONDS
export SOFTDIRTY_VM_TIMEOUT=${SOFTDIRTY_VM_TIMEOUT:-580} SOFTDIRTY_VM_SMP=${SOFTDIRTY_VM_SMP:-2}
"$vm/run.sh" "$vm/r33-outside-guest.sh" > "$log" 2>&1; booted=$?
# The prints lie between the guest's markers; "@@r33-end RC" carries the guest pwsh's exit code.
awk '/^@@r33-end /{exit} on{print} /^@@r33-begin$/{on=1}' "$log" > "$output"
guest=$(awk '/^@@r33-end /{print $2}' "$log" | tail -n 1)
printf 'kernel %s\nscript_sha256 %s\nguest_rc %s\nseconds %s\n' "$(awk '/^@@r33-kernel /{print $2; exit}' "$log")" \
    "$(sha256sum < "$vm/r33-outside.ps1" | cut -d' ' -f1)" "${guest:-none}" "$((SECONDS - began))" > "$output.facts"
case "$guest" in
    0) echo "vm-r33: $(wc -l < "$output") lines in $((SECONDS - began)) s" ;;
    '') echo "vm-r33: the guest never reached its end (run.sh: $booted); the console ends:" >&2; tail -n 40 "$log" >&2; exit 125 ;;
    *) echo "vm-r33: the guest pwsh exited $guest; the console ends:" >&2; tail -n 30 "$log" >&2; exit 1 ;;
esac
