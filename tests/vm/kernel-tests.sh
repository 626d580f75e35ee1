#!/bin/sh
# The guest command of the kernel VM (run by build.ps1 KernelTest through tests/vm/run.sh): ONE pwsh
# (each start costs ~16 s under TCG) runs the Pester tests tagged Kernel against the staged module,
# with SOFTDIRTY_KERNEL_VM=1 so that they require soft-dirty instead of skipping without it.
# Results: tests/results/pester-kernel.{nunit,junit}.xml, in the share, so on the host.
# The guest sees the host's files, so it runs the host's own dotnet and pwsh:
#   SOFTDIRTY_PWSH    the pwsh to run (build.ps1 passes its own); default `dotnet pwsh`, the local
#                     tool of .config/dotnet-tools.json restored under $HOME/.nuget/packages
#   SOFTDIRTY_PESTER  Pester.psd1 (build.ps1 passes the one it uses); default Pester 5.7.1 from NuGet
set -u
cd "$(dirname "$0")/../.."
export SOFTDIRTY_KERNEL_VM=1 DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# dotnet writes under $HOME/.dotnet; the guest's root is writable (overlay), but not if that failed.
[ -w "$HOME" ] || export DOTNET_CLI_HOME=/tmp NUGET_PACKAGES=${NUGET_PACKAGES:-$HOME/.nuget/packages}
pester=${SOFTDIRTY_PESTER:-${NUGET_PACKAGES:-$HOME/.nuget/packages}/pester/5.7.1/tools/Pester.psd1}
for f in out/SoftDirty/SoftDirty.psd1 out/testkit/SoftDirty.TestKit.dll "$pester"; do
    [ -f "$f" ] || { echo "kernel-tests: $f is missing (run ./build.ps1 Build first)" >&2; exit 2; }
done
mkdir -p tests/results
# Pester discovers every file it is given before filtering by tag, and discovery under TCG is slow
# (80 s for all of tests/Pester): give it only the files that name the Kernel tag at all.
# SOFTDIRTY_KERNEL_TEST_FILES (comma-separated) narrows the run to those files, for a quick check of one.
files=${SOFTDIRTY_KERNEL_TEST_FILES:-$(grep -l -w Kernel tests/Pester/*.Tests.ps1 | paste -sd, -)}
[ -n "$files" ] || { echo "kernel-tests: no test file in tests/Pester names the Kernel tag" >&2; exit 2; }
set -- -NoProfile -NonInteractive -File tests/Invoke-PesterSuite.ps1 -PesterPath "$pester" -Path "$files" \
    -ModulePath out/SoftDirty/SoftDirty.psd1 -ResultsPath tests/results -Tag Kernel -ResultName pester-kernel
if [ -n "${SOFTDIRTY_PWSH:-}" ]; then set -- "$SOFTDIRTY_PWSH" "$@"; else set -- dotnet pwsh "$@"; fi
echo "kernel-tests: kernel $(uname -r), + $*"
start=$(cut -d' ' -f1 /proc/uptime)
"$@"
rc=$?
echo "kernel-tests: pwsh exit code $rc, $start -> $(cut -d' ' -f1 /proc/uptime) s of guest uptime"
exit $rc
