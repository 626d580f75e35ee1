#!/usr/bin/env bash
# Usage: tests/vm/recorded-run.sh NAME OUTPUT
#   Boots the kernel VM of setup.sh (Debian's 6.1: soft-dirty) through run.sh, where recorded-run-guest.sh runs the guest
#   script tests/vm/NAME.ps1 as root: r31-sharers (soft-dirty chains of one memory under two pids, cleared through the other
#   pid), r33-outside (another process's writes into a soft-dirty chain's target at each step of a save). Writes its prints
#   to OUTPUT and facts to OUTPUT.facts (kernel, script_sha256, guest_rc, seconds), as tests/vm/recorded holds them. Needs
#   build.ps1 Build,Native and setup.sh first. Exits 0 when the script ran to its end, 125 when the guest did not, 1
#   otherwise. Environment: what run.sh reads (SOFTDIRTY_VM_TIMEOUT, default here 580; SOFTDIRTY_VM_SMP, default here 2).
set -uo pipefail
vm=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
name=${1:?usage: $0 NAME OUTPUT}
output=${2:?usage: $0 NAME OUTPUT}
[ -f "$vm/$name.ps1" ] || { echo "vm-recorded: no guest script tests/vm/$name.ps1" >&2; exit 1; }
missing=$(cd "$vm/../.." && ls out/SoftDirty/SoftDirty.psd1 tests/native/bin/mmtarget 2>&1 >/dev/null)
[ -z "$missing" ] || { echo "vm-recorded: $missing (build.ps1 Build,Native)" >&2; exit 1; }
log=$(mktemp "${TMPDIR:-/tmp}/softdirty-recorded.XXXXXX")
trap 'rm -f "$log"' EXIT
began=$SECONDS
export SOFTDIRTY_VM_TIMEOUT=${SOFTDIRTY_VM_TIMEOUT:-580} SOFTDIRTY_VM_SMP=${SOFTDIRTY_VM_SMP:-2}
"$vm/run.sh" "$vm/recorded-run-guest.sh" "$name" > "$log" 2>&1; booted=$?
# The prints lie between the guest's markers; "@@recorded-end RC" carries the guest pwsh's exit code.
awk '/^@@recorded-end /{exit} on{print} /^@@recorded-begin$/{on=1}' "$log" > "$output"
guest=$(awk '/^@@recorded-end /{print $2}' "$log" | tail -n 1)
printf 'kernel %s\nscript_sha256 %s\nguest_rc %s\nseconds %s\n' "$(awk '/^@@recorded-kernel /{print $2; exit}' "$log")" \
    "$(sha256sum < "$vm/$name.ps1" | cut -d' ' -f1)" "${guest:-none}" "$((SECONDS - began))" > "$output.facts"
case "$guest" in
    0) echo "vm-recorded: $name: $(wc -l < "$output") lines in $((SECONDS - began)) s" ;;
    '') echo "vm-recorded: $name: the guest never reached its end (run.sh: $booted); the console ends:" >&2; tail -n 40 "$log" >&2; exit 125 ;;
    *) echo "vm-recorded: $name: the guest pwsh exited $guest; the console ends:" >&2; tail -n 30 "$log" >&2; exit 1 ;;
esac
