#!/bin/sh
# The guest command of tests/vm/bench-criu.sh: brings loopback up and loads nfnetlink and nf_tables
# (CRIU's start-up checks need both), runs `criu check`, then tests/vm/BenchCriu.ps1 in one pwsh.
# From the host (run.sh passes SOFTDIRTY_* in): SOFTDIRTY_CRIU_BIN, SOFTDIRTY_CRIU_LIBS (criu and its
# unpacked libraries), SOFTDIRTY_CRIU_MODULES (the 6.1 kernel's module tree), SOFTDIRTY_CRIU_RESULT (the
# JSON to write, in the share), SOFTDIRTY_CRIU_QUICK (1: fewer repetitions), SOFTDIRTY_PWSH,
# SOFTDIRTY_CRIU_DOTNET_AVX2.
set -u
cd "$(dirname "$0")/../.."
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
[ -w "$HOME" ] || export DOTNET_CLI_HOME=/tmp NUGET_PACKAGES=${NUGET_PACKAGES:-$HOME/.nuget/packages}
# SOFTDIRTY_CRIU_DOTNET_AVX2=0: .NET without AVX2 in the guest (a diagnosis: TCG emulates vector code slowly).
[ "${SOFTDIRTY_CRIU_DOTNET_AVX2:-1}" = 0 ] && export DOTNET_EnableAVX2=0
bb=/bin/busybox
ip link set lo up 2>/dev/null || $bb ip link set lo up || echo "bench-criu-guest: cannot bring lo up"
# crc32c first: libcrc32c asks the crypto layer for it at load (no modprobe in the guest to do it).
for m in crypto/crc32c_generic.ko lib/libcrc32c.ko net/netfilter/nfnetlink.ko net/netfilter/nf_tables.ko; do
    $bb insmod "$SOFTDIRTY_CRIU_MODULES/$m" 2>/dev/null || grep -q "^$(basename "$m" .ko) " /proc/modules || echo "bench-criu-guest: insmod $m failed"
done
LD_LIBRARY_PATH=$SOFTDIRTY_CRIU_LIBS "$SOFTDIRTY_CRIU_BIN" check || echo "bench-criu-guest: criu check failed (dumps may fail too)"
set -- -NoProfile -NonInteractive -File tests/vm/BenchCriu.ps1 -Criu "$SOFTDIRTY_CRIU_BIN" -CriuLibraryPath "$SOFTDIRTY_CRIU_LIBS" \
    -OutPath "$SOFTDIRTY_CRIU_RESULT"
[ "${SOFTDIRTY_CRIU_QUICK:-}" = 1 ] && set -- "$@" -Quick
if [ -n "${SOFTDIRTY_PWSH:-}" ]; then set -- "$SOFTDIRTY_PWSH" "$@"; else set -- dotnet pwsh "$@"; fi
echo "bench-criu-guest: kernel $(uname -r), + $*"
exec "$@"
