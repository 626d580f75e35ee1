#!/bin/sh
# The guest command of power-loss.sh (tests/vm/README.md): mounts the power-loss disk (/dev/vda, ext4 made on the host)
# with SOFTDIRTY_POWERLOSS_MOUNT options and runs ONE pwsh with PowerLoss.ps1 on it until the host kills qemu.
set -u
cd "$(dirname "$0")/../.."
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
[ -w "$HOME" ] || export DOTNET_CLI_HOME=/tmp NUGET_PACKAGES=${NUGET_PACKAGES:-$HOME/.nuget/packages}
root=/mnt/softdirty-powerloss
mkdir -p "$root"
mount -t ext4 -o "${SOFTDIRTY_POWERLOSS_MOUNT:-defaults}" /dev/vda "$root" || { echo "PL NODISK"; exit 2; }
echo "PL MOUNTED $(grep " $root " /proc/mounts)"
if [ -n "${SOFTDIRTY_PWSH:-}" ]; then set -- "$SOFTDIRTY_PWSH"; else set -- dotnet pwsh; fi
"$@" -NoProfile -NonInteractive -File tests/vm/PowerLoss.ps1 -Root "$root" -Seed "${SOFTDIRTY_POWERLOSS_SEED:-1}"
