#!/bin/sh
# The guest command of tests/vm/la57-cmdlets.sh (through tests/vm/run.sh): the kernel and its paging mode, then ONE pwsh
# running tests/vm/la57-cmdlets.ps1 with the staged module and tests/native/bin/sdtarget, its prints between
# "@@la57-begin" and "@@la57-end <exit code>" on the console.
set -u
cd "$(dirname "$0")/../.."
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
[ -w "$HOME" ] || export DOTNET_CLI_HOME=/tmp NUGET_PACKAGES=${NUGET_PACKAGES:-$HOME/.nuget/packages}
echo "@@la57-kernel $(uname -r) $(uname -m)"
echo "@@la57-setting cpu_la57 $(grep -c -m 1 -w la57 /proc/cpuinfo)"
echo "@@la57-setting thp/enabled $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>&1)"
work=$(mktemp -d /tmp/la57.XXXXXX)
echo "@@la57-begin"
if [ -n "${SOFTDIRTY_PWSH:-}" ]; then set -- "$SOFTDIRTY_PWSH"; else set -- dotnet pwsh; fi
"$@" -NoProfile -NonInteractive -File tests/vm/la57-cmdlets.ps1 -Module "$PWD/out/SoftDirty/SoftDirty.psd1" \
    -Target "$PWD/tests/native/bin/sdtarget" -Work "$work"
rc=$?
echo "@@la57-end $rc"
exit $rc
