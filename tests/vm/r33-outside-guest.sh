#!/bin/sh
# The guest command of tests/vm/r33-outside.sh (through tests/vm/run.sh): ONE pwsh running tests/vm/r33-outside.ps1, its
# prints between "@@r33-begin" and "@@r33-end <exit code>" on the console.
set -u
cd "$(dirname "$0")/../.."
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
[ -w "$HOME" ] || export DOTNET_CLI_HOME=/tmp NUGET_PACKAGES=${NUGET_PACKAGES:-$HOME/.nuget/packages}
echo "@@r33-kernel $(uname -r)"
work=$(mktemp -d /tmp/r33.XXXXXX)
echo "@@r33-begin"
if [ -n "${SOFTDIRTY_PWSH:-}" ]; then set -- "$SOFTDIRTY_PWSH"; else set -- dotnet pwsh; fi
"$@" -NoProfile -NonInteractive -File tests/vm/r33-outside.ps1 -Module "$PWD/out/SoftDirty/SoftDirty.psd1" \
    -Target "$PWD/tests/native/bin/mmtarget" -TestSupport "$PWD/tests/Pester/SoftDirty.TestSupport.psm1" -Work "$work"
rc=$?
echo "@@r33-end $rc"
exit $rc
