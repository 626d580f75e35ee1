#!/usr/bin/env bash
# Usage: tests/vm/power-loss.sh OUTPUT [BOOTS]
#   Real power losses (tests/vm/README.md): BOOTS times (default 6), a fresh ext4 disk image (mkfs.ext4 on the host) is
#   the guest's /dev/vda (virtio-blk, qemu cache=writeback: every flush of the guest reaches the host file as fdatasync);
#   the 6.1 VM (setup.sh, run.sh) runs power-loss-guest.sh, ONE pwsh saving, restoring, receiving and migrating onto that
#   disk over and over; the host waits for a step chosen at random (the PL BEGIN line of the console) and SIGKILLs qemu
#   a random delay after it: the guest's page cache, its queued requests and what its file system had not committed are
#   gone. Then e2fsck replays the journal, the image is mounted read-only through a loop device and PowerLossCheck.ps1
#   reads every result the console announced. OUTPUT gets one line per result checked and a summary; the exit code is
#   1 when a result broke the rule (valid with other bytes, lost or incomplete after its command returned, a restore
#   destination neither old nor new), 125 when a boot did not reach the commands.
# Needs root (loop mount). Environment: SOFTDIRTY_POWERLOSS_DIR (disk and consoles, default /var/tmp/softdirty-vm-powerloss),
#   SOFTDIRTY_POWERLOSS_SEED (default 20261205), SOFTDIRTY_POWERLOSS_MOUNT (the guest's mount options; by default they
#   alternate between defaults and noauto_da_alloc,commit=1: no flush-on-rename help, metadata committed every second),
#   SOFTDIRTY_PWSH (the host's pwsh for the checks, default `dotnet pwsh`); run.sh's SOFTDIRTY_VM_* settings.
#   SOFTDIRTY_POWERLOSS_LOG=STATES: qemu also logs every write and flush of the guest to the disk (blklogwrites), and
#   after each boot PowerLossReplay.ps1 builds STATES more power-loss states from the log, where the writes after the
#   last flush are lost in part or whole (a SIGKILL of qemu loses only what the guest had not sent: what qemu wrote is in
#   the host's page cache, which lives on).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
output=$(realpath -m "${1:?usage: $0 OUTPUT [BOOTS]}")
boots=${2:-6}
dir=${SOFTDIRTY_POWERLOSS_DIR:-/var/tmp/softdirty-vm-powerloss}
base=${SOFTDIRTY_POWERLOSS_SEED:-20261205}
mkdir -p "$dir/mnt"
# The initrd must carry virtio_blk and ext4 (setup.sh: idempotent, a second run takes well under a second).
"$here/setup.sh" > "$dir/setup.log" 2>&1 || { cat "$dir/setup.log"; exit 125; }
disk=$dir/disk.img
pwsh=(dotnet pwsh); [ -n "${SOFTDIRTY_PWSH:-}" ] && pwsh=("$SOFTDIRTY_PWSH")
: > "$output"
status=0
for ((b = 1; b <= boots; b++)); do
    seed=$((base + b))
    RANDOM=$seed
    # The kill: a step of the first two passes (6 commands each; measured 0.5 to 10 s each under TCG), then 0-499 ms,
    # 0-1999 ms or 0-4999 ms after its start (a kill past the step's end lands in a later one).
    step=$((RANDOM % 12 + 1))
    case $((RANDOM % 3)) in 0) delay=$((RANDOM % 500)) ;; 1) delay=$((RANDOM % 2000)) ;; *) delay=$((RANDOM % 5000)) ;; esac
    if [ -n "${SOFTDIRTY_POWERLOSS_MOUNT:-}" ]; then mount=$SOFTDIRTY_POWERLOSS_MOUNT
    elif [ $((b % 2)) = 0 ]; then mount=noauto_da_alloc,commit=1; else mount=defaults; fi
    rm -f "$disk" "$disk.log" "$disk.base"
    truncate -s 1G "$disk"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$disk" || exit 125
    logging=()
    if [ -n "${SOFTDIRTY_POWERLOSS_LOG:-}" ]; then
        cp --sparse=always "$disk" "$disk.base"
        : > "$disk.log"
        logging=(SOFTDIRTY_VM_DISK_LOG="$disk.log")
    fi
    console=$dir/console-$b.log
    pidfile=$dir/qemu.pid
    rm -f "$pidfile"
    env "${logging[@]}" SOFTDIRTY_VM_DISK=$disk SOFTDIRTY_VM_PIDFILE=$pidfile SOFTDIRTY_POWERLOSS_SEED=$seed SOFTDIRTY_POWERLOSS_MOUNT=$mount \
        "$here/run.sh" "$here/power-loss-guest.sh" > "$console" 2>&1 &
    vm=$!
    start=$SECONDS
    killed=no
    while kill -0 "$vm" 2>/dev/null; do
        if grep -q "^PL BEGIN $step " "$console"; then
            sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
            kill -KILL "$(cat "$pidfile")" && killed=yes
            break
        fi
        sleep 0.05
    done
    wait "$vm"
    echo "power-loss: boot $b seed $seed mount $mount: SIGKILL ${killed} ${delay} ms after step $step began, $((SECONDS - start)) s" | tee -a "$output"
    if [ "$killed" != yes ]; then
        echo "power-loss: boot $b never reached step $step" | tee -a "$output"; tail -20 "$console"; status=125; continue
    fi
    e2fsck -fy "$disk" > "$dir/fsck-$b.log" 2>&1
    fsck=$?
    echo "power-loss: boot $b e2fsck exit code $fsck" | tee -a "$output"
    [ $fsck -ge 4 ] && { cat "$dir/fsck-$b.log"; status=1; continue; }
    mount -o ro,loop "$disk" "$dir/mnt" || { status=125; continue; }
    "${pwsh[@]}" -NoProfile -NonInteractive -File "$here/PowerLossCheck.ps1" -Console "$console" -Root "$dir/mnt" \
        -GuestRoot /mnt/softdirty-powerloss -Module "$repo/out/SoftDirty/SoftDirty.psd1" -Scratch "$dir/scratch" >> "$output"
    rc=$?
    umount "$dir/mnt"
    [ $rc = 0 ] || status=1
    if [ -n "${SOFTDIRTY_POWERLOSS_LOG:-}" ]; then
        "${pwsh[@]}" -NoProfile -NonInteractive -File "$here/PowerLossReplay.ps1" -Log "$disk.log" -Base "$disk.base" \
            -Console "$console" -Module "$repo/out/SoftDirty/SoftDirty.psd1" -Work "$dir/replay" \
            -States "$SOFTDIRTY_POWERLOSS_LOG" -Seed "$seed" >> "$output"
        [ $? = 0 ] || status=1
        rm -f "$disk.log" "$disk.base"
    fi
done
echo "power-loss: $(grep -c '^result ' "$output") results checked in $((boots + $(grep -c '^state ' "$output"))) power-loss states ($boots kills, $(grep -c '^state ' "$output") replayed), $(grep -c '^result .* DEFECT' "$output") defects" | tee -a "$output"
exit $status
