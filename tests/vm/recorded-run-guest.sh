#!/bin/sh
# The guest command of tests/vm/recorded-run.sh NAME (through tests/vm/run.sh): ONE pwsh running tests/vm/NAME.ps1, its
# prints between "@@recorded-begin" and "@@recorded-end <exit code>" on the console.
set -u
name=${1:?usage: $0 NAME}
cd "$(dirname "$0")/../.."
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
[ -w "$HOME" ] || export DOTNET_CLI_HOME=/tmp NUGET_PACKAGES=${NUGET_PACKAGES:-$HOME/.nuget/packages}
echo "@@recorded-kernel $(uname -r)"
work=$(mktemp -d /tmp/recorded.XXXXXX)
echo "@@recorded-begin"
if [ -n "${SOFTDIRTY_PWSH:-}" ]; then set -- "$SOFTDIRTY_PWSH"; else set -- dotnet pwsh; fi
"$@" -NoProfile -NonInteractive -File "tests/vm/$name.ps1" -Module "$PWD/out/SoftDirty/SoftDirty.psd1" \
    -Target "$PWD/tests/native/bin/mmtarget" -TestSupport "$PWD/tests/Pester/SoftDirty.TestSupport.psm1" -Work "$work"
rc=$?
echo "@@recorded-end $rc"
exit $rc
