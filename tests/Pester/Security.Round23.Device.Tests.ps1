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
