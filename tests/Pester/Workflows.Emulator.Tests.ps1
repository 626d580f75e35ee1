#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The workflows on an emulated process: the workload runs in emulated time between samples and rounds,
# so these results are deterministic and fast, on any OS.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    function New-Busy([string] $Kernel = '6.18', [switch] $NoSoftDirty) {
        $e = New-EmulatedProcess -Name busy -Kernel $Kernel -NoSoftDirty:$NoSoftDirty
        $m = $e | Add-EmulatedMapping -Length 16MB
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        @{ Emulator = $e; Mapping = $m }
    }
}

Describe 'Workflows on an emulated process' -Tag 'Workflows', 'Emulator' {
    It 'Watch-DirtyPage samples the pages a HotSet workload dirties, with soft-dirty on 6.18' {
        $b = New-Busy
        $w = @{ Address = $b.Mapping.Start; Length = $b.Mapping.Size; Pattern = 'HotSet'; AccessesPerSecond = 20000; WriteRatio = 0.5; Seed = 3 }
        $samples = @(Watch-DirtyPage -Emulator $b.Emulator -Workload $w -Interval 1 -Count 4)
        $samples | Should -HaveCount 4
        $samples.ForEach('Method') | Sort-Object -Unique | Should -Be 'SoftDirty'
        foreach ($s in $samples) {
            $s.DirtyPages | Should -BeGreaterThan 0
            # 10,000 writes a second into 4096 pages with 90% on the hot tenth: at most 4096 pages, more than the hot set's 409.
            $s.DirtyPages | Should -BeLessOrEqual 4096
            $s.DirtyBytes | Should -Be ($s.DirtyPages * 4096)
        }
    }

    It 'Watch-DirtyPage is deterministic for a seed; without soft-dirty Auto takes WriteProtect, and Hash counts the same' {
        $w = { param($b) @{ Address = $b.Mapping.Start; Length = $b.Mapping.Size; Pattern = 'Random'; AccessesPerSecond = 2000; WriteRatio = 1; Seed = 9 } }
        $a = New-Busy; $b = New-Busy; $c = New-Busy -NoSoftDirty
        $one = @(Watch-DirtyPage -Emulator $a.Emulator -Workload (& $w $a) -Interval 1 -Count 3).ForEach('DirtyPages')
        $two = @(Watch-DirtyPage -Emulator $b.Emulator -Workload (& $w $b) -Interval 1 -Count 3).ForEach('DirtyPages')
        $one | Should -Be $two
        $d = New-Busy -NoSoftDirty
        $auto = @(Watch-DirtyPage -Emulator $d.Emulator -Workload (& $w $d) -Interval 1 -Count 3)
        $auto.ForEach('Method') | Sort-Object -Unique | Should -Be 'WriteProtect'
        $auto.ForEach('DirtyPages') | Should -Be $one
        $hash = @(Watch-DirtyPage -Emulator $c.Emulator -Workload (& $w $c) -Interval 1 -Count 3 -Method Hash)
        $hash.ForEach('Method') | Sort-Object -Unique | Should -Be 'Hash'
        # Hash sees changed content only: every emulated write without -Value changes it, so the counts agree.
        $hash.ForEach('DirtyPages') | Should -Be $one
    }

    It 'Invoke-PreCopyMigration converges on a light workload and not on a heavy one' {
        $light = New-Busy
        $wl = @{ Address = $light.Mapping.Start; Length = 64KB; Pattern = 'Random'; AccessesPerSecond = 50; WriteRatio = 1 }
        $out = @(Invoke-PreCopyMigration -Emulator $light.Emulator -Workload $wl -Bandwidth 100MB -MaxIterations 10 -StopThreshold 64 -Confirm:$false)
        $summary = $out[-1]
        $summary.Converged | Should -BeTrue
        $summary.StopReason | Should -Be 'Converged'
        $rounds = $out[0..($out.Count - 2)]
        $rounds[0].PagesSent | Should -Be 4096
        $summary.TotalPagesSent | Should -Be (($rounds | Measure-Object PagesSent -Sum).Sum)

        $heavy = New-Busy
        $wh = @{ Address = $heavy.Mapping.Start; Length = $heavy.Mapping.Size; Pattern = 'Random'; AccessesPerSecond = 2000000; WriteRatio = 1 }
        $hs = @(Invoke-PreCopyMigration -Emulator $heavy.Emulator -Workload $wh -Bandwidth 10MB -MaxIterations 4 -StopThreshold 16 -Confirm:$false)[-1]
        $hs.Converged | Should -BeFalse
        $hs.StopReason | Should -BeIn 'MaxIterations', 'NotConverging'
    }

    It 'a full image plus an increment of an emulated process restores into another emulated process byte for byte' {
        $b = New-Busy
        $e = $b.Emulator; $m = $b.Mapping
        $root = Join-Path $TestDrive 'emu-chain'
        $null = Save-MemoryImage -Emulator $e -Path "$root/full" -Confirm:$false
        $e | Write-EmulatedMemory -Address ($m.Start + 5 * 4KB) -Length 12KB
        $e | Write-EmulatedMemory -Address ($m.Start + 4000 * 4KB) -Value 7
        $inc = Save-MemoryImage -Emulator $e -Path "$root/inc" -Parent "$root/full" -Confirm:$false
        $inc.PagesWritten | Should -BeLessThan 10
        $copy = New-EmulatedProcess -Name restored
        $restored = Restore-MemoryImage -Path "$root/inc" -Emulator $copy -Confirm:$false
        $restored.ProcessId | Should -Be $copy.ProcessId
        $want = [byte[]]::new($m.Size); $got = [byte[]]::new($m.Size)
        $null = $e.ReadMemory($m.Start, $want)
        $null = $copy.ReadMemory($m.Start, $got)
        [Linq.Enumerable]::SequenceEqual($want, $got) | Should -BeTrue
        $got[4000 * 4KB] | Should -Be 7
    }

    It 'Export-DirtyPageChart draws the emulated pre-copy rounds' {
        $b = New-Busy
        $wl = @{ Address = $b.Mapping.Start; Length = 1MB; Pattern = 'Random'; AccessesPerSecond = 500; WriteRatio = 1 }
        $svg = Join-Path $TestDrive 'emu.svg'
        Invoke-PreCopyMigration -Emulator $b.Emulator -Workload $wl -Bandwidth 50MB -MaxIterations 5 -StopThreshold 8 -Confirm:$false |
            Export-DirtyPageChart -Path $svg | Out-Null
        $text = Get-Content -Raw $svg
        $text | Should -Match '<svg'
        $text | Should -Match '</svg>\s*$'
    }
}
