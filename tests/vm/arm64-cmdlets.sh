#!/usr/bin/env bash
# Usage: tests/vm/arm64-cmdlets.sh ID OUTPUT
#   Boots kernel ID of tests/vm/arm64-cmdlets.list under qemu-system-aarch64 (TCG) with an initramfs of a static busybox,
#   the kernel suite's glibc, libstdc++, libgcc_s and OpenSSL (with zlib, zstd), the linux-arm64 .NET runtime pack (NuGet cache, the host's
#   .NET version), the PowerShell tool of .config/dotnet-tools.json (framework-dependent: started through the runtime
#   pack's apphost), out/SoftDirty (build.ps1 Build) and tests/native/sdtarget.c built static for arm64, and runs
#   tests/vm/arm64-cmdlets.ps1 there as root, then as uid 1000 (tests/vm/arm64-init). Writes its prints to OUTPUT and facts to OUTPUT.facts
#   (kernel, package, config_soft_dirty, page_size, script_sha256: the SHA-256 of the guest script that printed them). Exits 0 when the script ran to its end, 125 when the guest did not (no boot, time out), 1 on
#   a setup error. The kernel and the userland are fetched and unpacked by matrix.sh (SOFTDIRTY_MATRIX_FETCH_ONLY), in
#   its cache (SOFTDIRTY_MATRIX_DIR).
# Environment: SOFTDIRTY_ARM64_CPU (qemu -cpu, default max,pauth-impdef=on,sve=off,sme=off: with SVE and SME on, PowerShell
#   under TCG failed at random moments, with or without this module's commands: SIGSEGV, SIGILL, or attribute properties
#   reflection did not find ("'HelpUri' property specified was not found"): 6 of 10 PowerShell runs on 7.2 and 7.2-16k, 0 of 5
#   with them off), SOFTDIRTY_ARM64_TIMEOUT (seconds for the boot, default 3000), SOFTDIRTY_ARM64_MEM (default 2G; under
#   512 MiB a guest boots with THP off), SOFTDIRTY_ARM64_SMP (default 2), NUGET_PACKAGES (default ~/.nuget/packages).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
id=${1:?usage: $0 ID OUTPUT}
output=${2:?usage: $0 ID OUTPUT}
say() { echo "vm-arm64[$id]: $*"; }
kdir=$(SOFTDIRTY_MATRIX_KERNELS="$here/arm64-cmdlets.list" SOFTDIRTY_MATRIX_FETCH_ONLY=1 "$here/matrix.sh" "$id" | tail -n 1)
[ -d "$kdir" ] || { say "matrix.sh did not unpack $id" >&2; exit 1; }
first() { local f; for f in "$@"; do [ -e "$f" ] && { echo "$f"; return; }; done; }
shopt -s nullglob
vmlinuz=$(first "$kdir"/boot/vmlinuz-* "$kdir"/usr/lib/modules/*/vmlinuz)
config=$(first "$kdir"/boot/config-* "$kdir"/usr/lib/modules/*/config)
busybox=$(first "$kdir"/bin/busybox "$kdir"/usr/bin/busybox)
libdir=$kdir/usr/lib/aarch64-linux-gnu
[ -n "$vmlinuz" ] && [ -n "$busybox" ] && [ -e "$libdir/libc.so.6" ] || { say "no vmlinuz, busybox or glibc in $kdir" >&2; exit 1; }
nuget=${NUGET_PACKAGES:-$HOME/.nuget/packages}
version=$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" { v = $2 } END { print v }')
runtime=$nuget/microsoft.netcore.app.runtime.linux-arm64/$version/runtimes/linux-arm64
apphost=$nuget/microsoft.netcore.app.host.linux-arm64/$version/runtimes/linux-arm64/native/apphost
pwshver=$(sed -n '/"powershell"/,/}/s/.*"version": *"\([^"]*\)".*/\1/p' "$root/.config/dotnet-tools.json")
pwsh=$(first "$nuget"/powershell/"$pwshver"/tools/net*/any/unix)
for f in "$runtime/native/libcoreclr.so" "$apphost" "$pwsh/pwsh.dll" "$root/out/SoftDirty/SoftDirty.psd1"; do
    [ -e "$f" ] || { say "$f is missing (the arm64 runtime and host packs: dotnet publish -r linux-arm64 of any net10.0 project; the module: build.ps1 Build)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/softdirty-arm64.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib,opt/dotnet/host/fxr/"$version",opt/dotnet/shared/Microsoft.NETCore.App/"$version",opt/pwsh}
cp "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
aarch64-linux-gnu-gcc -static -O2 -Wall -o "$stage/bin/sdtarget" "$root/tests/native/sdtarget.c"
cp -a "$libdir" "$stage/lib/aarch64-linux-gnu"
ln -s aarch64-linux-gnu/ld-linux-aarch64.so.1 "$stage/lib/ld-linux-aarch64.so.1"
# The shared framework: the runtime pack's files, with the host's own framework manifests (the same files under the
# linux-arm64 name; hostfxr looks for a framework only where its deps.json is).
fx=$stage/opt/dotnet/shared/Microsoft.NETCore.App/$version
cp "$runtime"/lib/net*/*.dll "$runtime"/native/* "$fx/"
mv "$fx/libhostfxr.so" "$stage/opt/dotnet/host/fxr/$version/"
hostfx=$(dotnet --list-runtimes | awk -v v="$version" '$1 == "Microsoft.NETCore.App" && $2 == v { gsub(/[][]/, "", $3); print $3 "/" v }')
sed 's/linux-x64/linux-arm64/g' "$hostfx/Microsoft.NETCore.App.deps.json" > "$fx/Microsoft.NETCore.App.deps.json"
cp "$hostfx/Microsoft.NETCore.App.runtimeconfig.json" "$fx/"
# PowerShell: the tool's files (Linux arm64 natives only) and the apphost with "pwsh.dll" where the SDK writes the app's path.
(cd "$pwsh" && tar --exclude='./runtimes/*' -cf - .) | tar -xf - -C "$stage/opt/pwsh"
mkdir -p "$stage/opt/pwsh/runtimes" && cp -a "$pwsh/runtimes/linux-arm64" "$pwsh/runtimes/unix" "$stage/opt/pwsh/runtimes/" 2>/dev/null || true
cp "$apphost" "$stage/opt/pwsh/pwsh"
placeholder=c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2
offset=$(grep -obUa "$placeholder" "$stage/opt/pwsh/pwsh" | head -n 1 | cut -d: -f1)
[ -n "$offset" ] || { say "no app path placeholder in $apphost" >&2; exit 1; }
dd if=/dev/zero of="$stage/opt/pwsh/pwsh" bs=1 seek="$offset" count=${#placeholder} conv=notrunc status=none
printf pwsh.dll | dd of="$stage/opt/pwsh/pwsh" bs=1 seek="$offset" conv=notrunc status=none
chmod 755 "$stage/opt/pwsh/pwsh"
cp -a "$root/out/SoftDirty" "$stage/opt/SoftDirty"
cp "$here/arm64-cmdlets.ps1" "$stage/arm64-cmdlets.ps1"
install -m 755 "$here/arm64-init" "$stage/init"
# Not compressed: the guest unpacks it faster than it could inflate it under TCG.
(cd "$stage" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) > "$work/initramfs.cpio"

release=$(basename "$(dirname "$config")")
qemu=(qemu-system-aarch64 -accel tcg,thread=multi,tb-size=512 -M virt -cpu "${SOFTDIRTY_ARM64_CPU:-max,pauth-impdef=on,sve=off,sme=off}" -m "${SOFTDIRTY_ARM64_MEM:-2G}"
    -smp "${SOFTDIRTY_ARM64_SMP:-2}" -nodefaults -no-user-config -no-reboot -display none
    -chardev file,id=console,path="$work/console" -serial chardev:console
    -kernel "$vmlinuz" -initrd "$work/initramfs.cpio" -append "console=ttyAMA0 quiet loglevel=1 panic=-1 rdinit=/init")
say "kernel $release, initramfs $(du -m "$work/initramfs.cpio" | cut -f1) MiB, + ${qemu[*]}"
start=$SECONDS
rc=0
timeout -k 10 "${SOFTDIRTY_ARM64_TIMEOUT:-3000}" "${qemu[@]}" </dev/null >"$work/qemu.log" 2>&1 || rc=$?
seconds=$((SECONDS - start))
sed -i 's/\r$//' "$work/console"
end=$(sed -n 's/^@@arm64-end \([0-9]*\).*/\1/p' "$work/console" | tail -n 1)
sed -n '/^@@arm64-begin$/,/^@@arm64-end /p' "$work/console" | sed '1d;$d' > "$output"
{
    echo "kernel $(sed -n 's/^@@arm64-kernel //p' "$work/console" | head -n 1)"
    echo "package $(awk -v id="$id" '$1 == id { print $5 }' "$here/arm64-cmdlets.list")"
    echo "config_soft_dirty $(grep -q '^CONFIG_MEM_SOFT_DIRTY=y' "$config" && echo 1 || echo 0)"
    echo "page_size $(if grep -q '^CONFIG_ARM64_16K_PAGES=y' "$config"; then echo 16384; elif grep -q '^CONFIG_ARM64_64K_PAGES=y' "$config"; then echo 65536; else echo 4096; fi)"
    echo "script_sha256 $(sha256sum < "$here/arm64-cmdlets.ps1" | cut -d' ' -f1)"
    echo "cpu ${SOFTDIRTY_ARM64_CPU:-max,pauth-impdef=on,sve=off,sme=off}"
    echo "guest_rc ${end:-none}"
    sed -n 's/^@@arm64-setting /setting /p' "$work/console"
    echo "seconds $seconds"
} > "$output.facts"
if [ -z "$end" ]; then
    say "no end marker from the guest (qemu exit code $rc) after $seconds s; console tail:" >&2
    tail -n 40 "$work/console" >&2
    cat "$work/qemu.log" >&2
    exit 125
fi
say "guest pwsh exit code $end, $(wc -l < "$output") lines, $seconds s"
[ "$end" = 0 ] || exit 1
