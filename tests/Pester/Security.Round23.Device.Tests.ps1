#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-third attack round, on device memory (round 21's VM_PFNMAP rule) where maps does not say "device".
# Found: a save looked for VM_PFNMAP (pages that pagemap shows as holes and /proc/PID/mem cannot read) only in mappings of
# pseudo files and of paths under /dev, /sys and /proc. A device node elsewhere (mknod in any folder, a container's device
# bind-mounted into its own tree, which the host sees under that tree) was never looked at: its pages were saved as none,
# and the image tested valid (silent data loss). Now a mapping of a path is looked at unless the path, seen through the
# process's root, is the regular file it maps (tests/SoftDirty.Engine.Tests/Images/DeviceMappingsRound23Tests.cs).
# The device here is /dev/mem's node (1:1) made in a test folder, mapping the BIOS ROM at 0xf0000 (remap_pfn_range): it
# needs root (mknod) and a kernel with CONFIG_DEVMEM (Debian's; the kernel VM runs it: tag Kernel).
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state23d'
    # The page of physical address 0xf0000 (the BIOS ROM: not RAM, so STRICT_DEVMEM allows a mapping of it).
    $script:RomPage = 0xf0000 / [Environment]::SystemPageSize
}

Describe 'Round 23: a device node outside /dev makes an image incomplete, never silently empty' -Tag 'Security', 'Round23Device', 'Kernel' {
    It 'a mapping of /dev/mem''s node made in a test folder: the image counts its page unreadable and tests invalid' {
        $node = Join-Path $TestDrive 'mem'
        $made = & mknod $node c 1 1 2>&1
        if ($LASTEXITCODE -ne 0) { Set-ItResult -Skipped -Because "a device node cannot be made here (mknod: $made; it needs CAP_MKNOD and a folder not mounted nodev)"; return }
        $t = Start-ImgTarget
        try {
            $t.Process.StandardInput.WriteLine("mapat $node 1 1 $RomPage")
            $line = $t.Process.StandardOutput.ReadLine()
            if ($line -notlike 'OK *') { Set-ItResult -Skipped -Because "the node cannot be opened or mapped ($line): this kernel has no /dev/mem (CONFIG_DEVMEM) or refuses the ROM page"; return }
            Wait-ImgTargetIdle $t
            $hex = $line.Substring(3).Trim()
            $mapping = Get-MemoryMapping -Id $t.Id -WarningAction SilentlyContinue | Where-Object Start -EQ ([Convert]::ToUInt64($hex, 16))
            $mapping.Path | Should -Be $node -Because 'maps names the node where it was made, not under /dev'
            if ($mapping.VmFlags -notcontains 'pf') { Set-ItResult -Skipped -Because "this kernel maps /dev/mem with page structs here (VmFlags $($mapping.VmFlags -join ' ')), which pagemap shows"; return }
            $image = Save-MemoryImage -Id $t.Id -Path (Join-Path $TestDrive 'img') -Method Hash -Freeze -WarningVariable w -WarningAction SilentlyContinue
            $image.UnreadablePages | Should -BeGreaterOrEqual 1 -Because 'before round 23 the save found no page there and counted none unreadable'
            "$w" | Should -BeLike '*VM_PFNMAP*' -Because 'the save warns'
            $test = Test-MemoryImage $image.Path -Detailed
            $test.Valid | Should -BeFalse -Because 'the image lacks the device page'
            @($test.Problems | ForEach-Object { "$($_.Error)" }) | Should -Contain 'ImageIncomplete'
        } finally { Stop-ImgTarget $t }
    }
}

# Found too: in a user namespace that does not map the host's root (unshare -Ur, a toolbox sharing the host's tree), every
# folder's parents show as owned by the overflow uid, so each save and Enable-WriteTracking was refused saying that "user
# 65534" could replace what the module writes: true of any other host user, false of root, and nothing said which. The
# refusal stays (the module cannot tell them apart); it now says so, and what to do.
Describe 'Round 23: a folder in a user namespace whose parents belong to an unmapped user' -Tag 'Security', 'Round23Device' {
    It 'Save-MemoryImage is refused with UnsafeDestination, saying the owner is not mapped' {
        $overflow = (Get-Content /proc/sys/kernel/overflowuid).Trim()
        # Round 34: a machine without util-linux's unshare skips (it failed with CommandNotFoundException).
        if (-not (Get-Command unshare -CommandType Application -ErrorAction Ignore)) { Set-ItResult -Skipped -Because 'unshare (util-linux) is not installed: the user namespace is made with it'; return }
        $owner = & unshare -Ur stat -c %u / 2>&1
        if ($LASTEXITCODE -ne 0) { Set-ItResult -Skipped -Because "no user namespace can be made here (unshare -Ur: $owner)"; return }
        if ("$owner".Trim() -ne $overflow) { Set-ItResult -Skipped -Because "this user's namespace maps the owner of / (it shows as $owner): no parent is unmapped"; return }
        $pwsh = Get-PwshCommandLine
        $command = "Import-Module '$env:SOFTDIRTY_MODULE'; try { `$null = Save-MemoryImage -Id `$PID -Mapping '[stack]' -Method Hash -Path '$(Join-Path $TestDrive 'ns-img')' -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `$_.CategoryInfo.Category; `$_.Exception.Message }"
        $out = @(& unshare -Ur @pwsh -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" })
        $out[0] | Should -BeLike 'UnsafeDestination,*'
        $out[1] | Should -Be 'SecurityError'
        ($out[2..($out.Count - 1)] -join ' ') | Should -BeLike '*user namespace does not map*' -Because 'before round 23 it blamed user 65534 as if it were another user'
        Test-Path (Join-Path $TestDrive 'ns-img') | Should -BeFalse
    }
}
