#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The emulator through the cmdlets: the kernel's soft-dirty selftest scenarios, the read rules, fork, swap,
# MADV_DONTNEED, userfaultfd write-protect, kernel profiles, workloads, and the errors of emulated system
# calls. Nothing here needs a kernel with soft-dirty: every process is an emulated one.

BeforeDiscovery {
    $profiles = @('6.1', '6.18', '6.19')
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $page = 4KB

    # Bit 55 of the page at an address.
    function SD($Emulator, [uint64] $Address) { (Get-PageMap -Emulator $Emulator -Address $Address).SoftDirty }

    # Everything a test can observe of an emulated process, as one string: pagemap entries, mappings, faults, RSS.
    function Get-State($Emulator) {
        $pages = @(Get-PageMap -Emulator $Emulator | ForEach-Object { '{0:x}={1:x}' -f $_.Start, $_.Raw }) -join ';'
        $maps = @(Get-MemoryMapping -Emulator $Emulator | ForEach-Object {
            '{0:x}-{1:x} {2} {3} rss={4} swap={5}' -f $_.Start, $_.End, $_.Permissions, ($_.VmFlags -join ','), $_.Rss, $_.Swap
        }) -join ';'
        "$pages | $maps | $($Emulator.Faults) | rss=$($Emulator.RssBytes)"
    }

    # The addresses of page objects: Start member-enumerates (an array's own .Address would be a method).
    function Addresses($Pages) { @($Pages | ForEach-Object Start) }

    # A privileged process with $Pages written pages, cleared, then its second page written again.
    function New-CleanedProcess([int] $Pages) {
        $e = New-EmulatedProcess -Privileged
        $a = ($e | Add-EmulatedMapping -Length ($Pages * $page)).Start
        $e | Write-EmulatedMemory -Address $a -Length ($Pages * $page)
        $e | Clear-SoftDirty
        $e | Write-EmulatedMemory -Address ($a + $page)
        $e, $a
    }

    # The pages of PageRange objects, one address each.
    function Expand-Range($Ranges) {
        foreach ($r in $Ranges) { for ($a = $r.Start; $a -lt $r.End; $a += $page) { $a } }
    }

    # test_merge of soft-dirty.c, first half: returns the soft-dirty bits of page1 and page2 and the process.
    function Invoke-MergeScenario([string] $Kernel) {
        $e = New-EmulatedProcess -Kernel $Kernel
        $base = ($e | Add-EmulatedMapping -Length (5 * $page) -Protection None).Start
        $e | Remove-EmulatedMapping -Address $base -Length (4 * $page)
        $p1 = $base; $p2 = $base + $page; $p3 = $base + 2 * $page
        $null = $e | Add-EmulatedMapping -Length $page -Address $p1 -Fixed
        $e | Clear-SoftDirty
        $null = $e | Add-EmulatedMapping -Length $page -Address $p3 -Fixed
        $null = $e | Move-EmulatedMapping -Address $p3 -Length $page -NewAddress $p2
        [pscustomobject]@{ Emulator = $e; Page1 = (SD $e $p1); Page2 = (SD $e $p2); Base = $base }
    }

    # A scenario that merges no VMA after a clear: every profile must give the same result.
    function Invoke-CommonScenario([string] $Kernel) {
        $e = New-EmulatedProcess -Kernel $Kernel -Privileged
        $a = ($e | Add-EmulatedMapping -Length (64 * $page) -Address 0x10000000).Start
        $f = ($e | Add-EmulatedMapping -Length (8 * $page) -Address 0x20000000 -Shared -Path '/emulated/data.bin').Start
        $e | Write-EmulatedMemory -Address $a -Length (16 * $page)
        $e | Read-EmulatedMemory -Address ($a + 16 * $page) -Length (8 * $page)
        $e | Write-EmulatedMemory -Address $f -Length (2 * $page)
        $e | Clear-SoftDirty
        $e | Write-EmulatedMemory -Address ($a + 4 * $page) -Length (2 * $page)
        $e | Invoke-EmulatedMadvise -Address ($a + 8 * $page) -Length (4 * $page) -Advice PageOut
        $e | Invoke-EmulatedMadvise -Address ($a + 12 * $page) -Length (2 * $page) -Advice DontNeed
        $e | Set-EmulatedProtection -Address ($a + 32 * $page) -Length (8 * $page) -Protection Read
        $child = $e | Copy-EmulatedProcess
        $child | Write-EmulatedMemory -Address $a -Length $page
        $e | Write-EmulatedMemory -Address ($a + $page) -Length $page
        $null = $e | Add-EmulatedMapping -Length (4 * $page) -Address 0x30000000
        $e
    }
}

Describe 'The soft-dirty selftest on kernel <_>' -ForEach $profiles {
    BeforeAll { $kernel = $_ }

    It 'test_simple: one page; clear; 200 times: bit 0 -> write -> bit 1 -> clear' {
        $e = New-EmulatedProcess -Kernel $kernel
        $a = ($e | Add-EmulatedMapping -Length $page).Start
        $e | Clear-SoftDirty
        $seen = [System.Collections.Generic.List[string]]::new()
        for ($i = 0; $i -lt 200; $i++) {
            if (SD $e $a) { $seen.Add("iteration ${i}: set before the write") }
            $e | Write-EmulatedMemory -Address $a
            if (-not (SD $e $a)) { $seen.Add("iteration ${i}: clear after the write") }
            $e | Clear-SoftDirty
        }
        $seen | Should -BeNullOrEmpty
        # Each write after a clear faults on the write-protected PTE: that fault is what sets the bit.
        $e.Faults.WriteFaults | Should -Be 200
        $e.Faults.SoftDirtyWriteProtectFaults | Should -Be 199
    }

    It 'test_vma_reuse: a fresh page is soft-dirty (VM_SOFTDIRTY); clear; munmap; mmap at the same place -> soft-dirty again' {
        $e = New-EmulatedProcess -Kernel $kernel
        $a = ($e | Add-EmulatedMapping -Length $page).Start
        SD $e $a | Should -BeTrue
        $e | Clear-SoftDirty
        SD $e $a | Should -BeFalse
        $e | Remove-EmulatedMapping -Address $a -Length $page
        $again = $e | Add-EmulatedMapping -Length $page -Address $a
        $again.Start | Should -Be $a
        SD $e $a | Should -BeTrue
    }

    It 'test_hugepage: the loop on a transparent huge page (-HugePage): 512 entries share one soft-dirty state' {
        $e = New-EmulatedProcess -Kernel $kernel
        $m = $e | Add-EmulatedMapping -Length 2MB -HugePage
        $m.Start % 2MB | Should -Be 0
        $e | Write-EmulatedMemory -Address $m.Start
        ($e | Get-MemoryMapping).AnonHugePages | Should -Be 2MB
        for ($i = 0; $i -lt 10; $i++) {
            $e | Clear-SoftDirty
            @($e | Get-PageMap -SoftDirty).Count | Should -Be 0
            $e | Write-EmulatedMemory -Address ($m.Start + ($i * 37 % 512) * $page)
            $r = @($e | Get-PageMap -AsRange)
            $r | Should -HaveCount 1
            $r[0].PageCount | Should -Be 512
            $r[0].SoftDirty | Should -BeTrue
            $r[0].Present | Should -BeTrue
        }
    }

    It '<Test>: write 1; clear 0; read-only 0; read-write 0; write 1' -ForEach @(
        @{ Test = 'test_mprotect_anon'; Map = @{} }
        @{ Test = 'test_mprotect_file (a -Shared -Path mapping)'; Map = @{ Shared = $true; Path = '/emulated/mprotect.bin' } }
    ) {
        $e = New-EmulatedProcess -Kernel $kernel
        $m = $e | Add-EmulatedMapping -Length $page @Map
        "$($m.Path)" | Should -Be "$($Map.Path)"
        $a = $m.Start
        $e | Write-EmulatedMemory -Address $a
        SD $e $a | Should -BeTrue
        (Get-PageMap -Emulator $e -Address $a).FileOrSharedAnon | Should -Be ([bool]$Map.Shared)
        $e | Clear-SoftDirty
        SD $e $a | Should -BeFalse
        $e | Set-EmulatedProtection -Address $a -Length $page -Protection Read
        SD $e $a | Should -BeFalse
        $e | Set-EmulatedProtection -Address $a -Length $page -Protection Read, Write
        SD $e $a | Should -BeFalse
        $faults = $e.Faults.SoftDirtyWriteProtectFaults
        $e | Write-EmulatedMemory -Address $a
        SD $e $a | Should -BeTrue
        $e.Faults.SoftDirtyWriteProtectFaults | Should -Be ($faults + 1) -Because 'mprotect RW must not make a clean PTE writable while tracking'
    }

    It 'test_merge, second half: page2 mapped RWX (no merge), then page1 made RWX (merges): the merged VMA takes the cleaned page1''s flags before 6.19' {
        $r = Invoke-MergeScenario $kernel
        $e = $r.Emulator
        $p1 = $r.Base; $p2 = $r.Base + $page
        $e | Remove-EmulatedMapping -Address $p1 -Length (2 * $page)
        $null = $e | Add-EmulatedMapping -Length $page -Address $p1 -Fixed
        $e | Clear-SoftDirty
        $null = $e | Add-EmulatedMapping -Length $page -Address $p2 -Fixed -Protection Read, Write, Execute
        @($e | Get-MemoryMapping -Address $p1).End | Should -Be $p2 -Because 'different protections do not merge'
        $e | Set-EmulatedProtection -Address $p1 -Length $page -Protection Read, Write, Execute
        $merged = @($e | Get-MemoryMapping -Address $p1)
        $merged.Start | Should -Be $p1
        $merged.End | Should -Be ($p2 + $page) -Because 'equal protections merge'
        # As Debian's real 6.1 kernel shows: mprotect_fixup gives the merged VMA page1's new flags (clean);
        # 6.19 keeps VM_SOFTDIRTY if either side had it.
        $sticky = $kernel -eq '6.19'
        SD $e $p1 | Should -Be $sticky
        SD $e $p2 | Should -Be $sticky
    }
}

Describe 'test_merge, first half: mremap merges a soft-dirty VMA into a cleared one' {
    It 'loses soft-dirty before 6.19 (the survivor''s flag wins) and keeps it from 6.19 (sticky VM_SOFTDIRTY)' {
        $old = Invoke-MergeScenario '6.1'
        $mid = Invoke-MergeScenario '6.18'
        $new = Invoke-MergeScenario '6.19'
        foreach ($r in $old, $mid, $new) {
            $m = @($r.Emulator | Get-MemoryMapping -Address $r.Base)
            $m.End | Should -Be ($r.Base + 2 * $page) -Because 'page1 and the moved page merge into one VMA on every profile'
        }
        $old.Page1 | Should -BeFalse
        $old.Page2 | Should -BeFalse
        $mid.Page1 | Should -BeFalse
        $mid.Page2 | Should -BeFalse
        $new.Page1 | Should -BeTrue
        $new.Page2 | Should -BeTrue
        ($new.Emulator | Get-MemoryMapping -Address $new.Base).VmFlags | Should -Contain 'sd'
        ($old.Emulator | Get-MemoryMapping -Address $old.Base).VmFlags | Should -Not -Contain 'sd'
    }
}

Describe 'Two profiles differ only as documented' {
    It 'a scenario with no merge after a clear gives identical pagemaps, mappings and faults on 6.1, 6.18 and 6.19' {
        $states = foreach ($k in '6.1', '6.18', '6.19') { Get-State (Invoke-CommonScenario $k) }
        $states[0] | Should -Not -BeNullOrEmpty
        $states[1] | Should -Be $states[0]
        $states[2] | Should -Be $states[0]
    }

    It 'test_merge on 6.18 and 6.19 differs in bit 55 and the sd VmFlag of the merged VMA, nothing else' {
        $a = (Invoke-MergeScenario '6.18').Emulator
        $b = (Invoke-MergeScenario '6.19').Emulator
        $pa = @($a | Get-PageMap); $pb = @($b | Get-PageMap)
        $pb.Count | Should -Be $pa.Count
        $diff = for ($i = 0; $i -lt $pa.Count; $i++) {
            $pa[$i].Start | Should -Be $pb[$i].Start
            if ($pa[$i].Raw -ne $pb[$i].Raw) { [uint64]($pa[$i].Raw -bxor $pb[$i].Raw) }
        }
        @($diff) | Should -HaveCount 2 -Because 'page1 and page2 differ'
        $diff | ForEach-Object { $_ | Should -Be ([uint64]1 -shl 55) }
        $ma = @($a | Get-MemoryMapping); $mb = @($b | Get-MemoryMapping)
        $mb.Count | Should -Be $ma.Count
        for ($i = 0; $i -lt $ma.Count; $i++) {
            $mb[$i].Start | Should -Be $ma[$i].Start
            $mb[$i].End | Should -Be $ma[$i].End
            $mb[$i].Permissions | Should -Be $ma[$i].Permissions
            @($mb[$i].VmFlags | Where-Object { $_ -ne 'sd' }) | Should -Be @($ma[$i].VmFlags | Where-Object { $_ -ne 'sd' })
        }
        "$($a.Faults)" | Should -Be "$($b.Faults)"
    }

    It 'Get-SoftDirtySupport -Emulator reports what each profile has' -ForEach @(
        @{ Kernel = '6.1'; Scan = $false }
        @{ Kernel = '6.18'; Scan = $true }
        @{ Kernel = '6.19'; Scan = $true }
    ) {
        $f = New-EmulatedProcess -Kernel $Kernel | Get-SoftDirtySupport
        $f.Emulated | Should -BeTrue
        $f.KernelRelease | Should -BeLike "$Kernel.*"
        $f.SoftDirty | Should -BeTrue
        $f.PagemapScan | Should -Be $Scan
        $f.UffdWriteProtectAsync | Should -Be $Scan
        if (-not $Scan) { $f.PagemapScanReason | Should -Match '6\.7' }
        $f.PfnVisible | Should -BeFalse
        (Get-SoftDirtySupport -Emulator (New-EmulatedProcess -Kernel $Kernel -Privileged)).PfnVisible | Should -BeTrue
    }

    It 'on 6.1, PAGEMAP_SCAN and userfaultfd write-protect are missing; Get-PageMap falls back to pread' {
        $e = New-EmulatedProcess -Kernel 6.1
        $a = ($e | Add-EmulatedMapping -Length (4 * $page)).Start
        $e | Clear-SoftDirty
        $e | Write-EmulatedMemory -Address $a
        { $e | Search-PageMap -ErrorAction Stop } | Should -Throw -ErrorId 'PagemapScanNotSupported,SoftDirty.Commands.SearchPageMapCommand'
        { $e | Get-PageMap -SoftDirty -ReadMethod PagemapScan -ErrorAction Stop } | Should -Throw -ErrorId 'PagemapScanNotSupported,SoftDirty.Commands.GetPageMapCommand'
        { $e | Register-EmulatedWriteProtect -Address $a -Length $page -ErrorAction Stop } |
            Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.RegisterEmulatedWriteProtectCommand'
        (Addresses ($e | Get-PageMap -SoftDirty)) | Should -Be @($a)
    }
}

Describe 'Get-PageMap and Clear-SoftDirty on an emulated process from the pipeline' {
    BeforeAll {
        $e = New-EmulatedProcess -Name filters -Privileged
        $anon = ($e | Add-EmulatedMapping -Length (32 * $page)).Start
        $file = ($e | Add-EmulatedMapping -Length (8 * $page) -Path '/emulated/lib/data.so').Start
        $e | Write-EmulatedMemory -Address $anon -Length (16 * $page)
        $e | Read-EmulatedMemory -Address ($anon + 16 * $page) -Length (4 * $page)
        $e | Read-EmulatedMemory -Address $file -Length (4 * $page)
        $e | Clear-SoftDirty
        $e | Write-EmulatedMemory -Address ($anon + 2 * $page) -Length (3 * $page)
        $e | Write-EmulatedMemory -Address ($anon + 17 * $page)
        $e | Invoke-EmulatedMadvise -Address ($anon + 4 * $page) -Length (4 * $page) -Advice PageOut
        $all = @($e | Get-PageMap)
    }

    It 'reads every page of every mapping, each as the kernel would encode it' {
        $all | Should -HaveCount 40
        @($all | Where-Object SoftDirty).Count | Should -Be 4
        @($all | Where-Object Swapped).Count | Should -Be 4
        (Addresses ($all | Where-Object { $_.Swapped -and $_.SoftDirty })) | Should -Be @(($anon + 4 * $page))
        @($all | Where-Object Present).Count | Should -Be (12 + 4 + 8) -Because 'a file read fault maps its 64 KiB fault-around window, all 8 file pages'
        @($all | Where-Object FileOrSharedAnon).Count | Should -Be 8
    }

    It '-<Name> returns the pages Where-Object picks, and -AsRange the same pages as ranges' -ForEach @(
        @{ Name = 'SoftDirty'; Filter = @{ SoftDirty = $true }; Where = { $_.SoftDirty } }
        @{ Name = 'SoftDirty:$false'; Filter = @{ SoftDirty = $false }; Where = { -not $_.SoftDirty } }
        @{ Name = 'Present'; Filter = @{ Present = $true }; Where = { $_.Present } }
        @{ Name = 'Present:$false'; Filter = @{ Present = $false }; Where = { -not $_.Present } }
        @{ Name = 'Swapped'; Filter = @{ Swapped = $true }; Where = { $_.Swapped } }
        @{ Name = 'Swapped:$false'; Filter = @{ Swapped = $false }; Where = { -not $_.Swapped } }
        @{ Name = 'SoftDirty -Present'; Filter = @{ SoftDirty = $true; Present = $true }; Where = { $_.SoftDirty -and $_.Present } }
        @{ Name = 'SoftDirty -ReadMethod Pread'; Filter = @{ SoftDirty = $true; ReadMethod = 'Pread' }; Where = { $_.SoftDirty } }
        @{ Name = 'SoftDirty -ReadMethod PagemapScan'; Filter = @{ SoftDirty = $true; ReadMethod = 'PagemapScan' }; Where = { $_.SoftDirty } }
        @{ Name = 'Present:$false -ReadMethod PagemapScan'; Filter = @{ Present = $false; ReadMethod = 'PagemapScan' }; Where = { -not $_.Present } }
        @{ Name = 'Mapping data.so'; Filter = @{ Mapping = 'data.so' }; Where = { $_.Mapping -eq '/emulated/lib/data.so' } }
        @{ Name = 'Mapping [anon] -SoftDirty'; Filter = @{ Mapping = '[anon]'; SoftDirty = $true }; Where = { $_.Mapping -eq '[anon]' -and $_.SoftDirty } }
        @{ Name = 'Address -Length'; Filter = @{ Address = 'anon+1'; Length = 6 * 4KB }; Where = { $_.Start -ge $anon + 4KB -and $_.Start -lt $anon + 7 * 4KB } }
    ) {
        $f = $Filter.Clone()
        if ($f.Address -eq 'anon+1') { $f.Address = $anon + $page }
        $expected = @($all | Where-Object $Where | ForEach-Object Start)
        $expected.Count | Should -BeGreaterThan 0 -Because 'the case must select something'
        $expected.Count | Should -BeLessThan $all.Count -Because 'the case must leave something out'
        $pages = @($e | Get-PageMap @f)
        Addresses $pages | Should -Be $expected
        $pages | ForEach-Object { $_.ProcessId | Should -Be $e.ProcessId }
        $ranges = @($e | Get-PageMap @f -AsRange)
        $ranges.Count | Should -BeLessThan $pages.Count
        @(Expand-Range $ranges) | Should -Be $expected
        ($ranges | Measure-Object PageCount -Sum).Sum | Should -Be $expected.Count
    }

    It '$e | Get-PageMap | Where SoftDirty lists the pages written since the clear; $e | Clear-SoftDirty empties it' {
        $c = $e | Copy-EmulatedProcess
        $dirty = @($c | Get-PageMap | Where-Object SoftDirty)
        Addresses $dirty | Should -Be @(($anon + 2 * $page), ($anon + 3 * $page), ($anon + 4 * $page), ($anon + 17 * $page))
        $back = $c | Clear-SoftDirty -PassThru
        [object]::ReferenceEquals($back, $c) | Should -BeTrue
        @($c | Get-PageMap | Where-Object SoftDirty) | Should -BeNullOrEmpty
        @($c | Get-PageMap -SoftDirty -AsRange) | Should -BeNullOrEmpty
        @($c | Get-PageMap -SoftDirty:$false).Count | Should -Be 40
        $c | Write-EmulatedMemory -Address ($anon + 30 * $page)
        (Addresses ($c | Get-PageMap -SoftDirty)) | Should -Be @(($anon + 30 * $page))
    }

    It 'Clear-SoftDirty -WhatIf clears nothing' {
        $c = $e | Copy-EmulatedProcess
        $c | Clear-SoftDirty -WhatIf
        @($c | Get-PageMap -SoftDirty).Count | Should -Be 4
    }

    It 'Search-PageMap -Category SoftDirty finds the same pages as regions' {
        $regions = @($e | Search-PageMap -Category SoftDirty)
        @(Expand-Range $regions) | Should -Be @($all | Where-Object SoftDirty | ForEach-Object Start)
    }

    It 'Get-PageMap -Address outside every mapping is InvalidArgument' {
        { $e | Get-PageMap -Address 0x10000 -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.GetPageMapCommand'
    }
}

Describe 'New-EmulatedProcess -Kernel Host' {
    It 'on Linux takes the running kernel''s measured rules (zero page, THP mode, soft-dirty)' -Skip:(-not $IsLinux) {
        $support = Get-SoftDirtySupport
        $e = New-EmulatedProcess -Kernel Host -Privileged
        $f = $e | Get-SoftDirtySupport
        $f.Emulated | Should -BeTrue
        $f.SoftDirty | Should -Be $support.SoftDirty
        $measured = ($support.Rules | Where-Object Name -EQ 'SharedZeroPage').Value
        ($f.Rules | Where-Object Name -EQ 'SharedZeroPage').Value | Should -Be $measured
        ($f.Rules | Where-Object Name -EQ 'TransparentHugePages').Value | Should -Be ($support.Rules | Where-Object Name -EQ 'TransparentHugePages').Value
        $a = ($e | Add-EmulatedMapping -Length (2 * $page)).Start
        $e | Read-EmulatedMemory -Address $a
        (Get-PageMap -Emulator $e -Address $a).Exclusive | Should -Be ($measured -eq 'False')
    }

    It 'off Linux is a PlatformNotSupported error' -Skip:$IsLinux {
        { New-EmulatedProcess -Kernel Host -ErrorAction Stop } | Should -Throw -ErrorId 'PlatformNotSupported,SoftDirty.Commands.NewEmulatedProcessCommand'
    }
}

Describe 'Reads and the zero page' {
    It 'a read never sets soft-dirty; an anonymous read fault maps the zero page: present, one PFN for all, not soft-dirty' {
        $e = New-EmulatedProcess -Privileged
        $a = ($e | Add-EmulatedMapping -Length (8 * $page)).Start
        $e | Write-EmulatedMemory -Address $a
        $e | Clear-SoftDirty
        $e | Read-EmulatedMemory -Address $a -Length (8 * $page)
        $p = @($e | Get-PageMap)
        $p | ForEach-Object { $_.Present | Should -BeTrue; $_.SoftDirty | Should -BeFalse }
        $zero = @($p | Select-Object -Skip 1)
        @($zero.Pfn | Select-Object -Unique) | Should -HaveCount 1
        $zero[0].Pfn | Should -Not -Be $p[0].Pfn
        $zero | ForEach-Object { $_.Exclusive | Should -BeFalse }
        @($e | Search-PageMap -Category PfnZero -ReturnCategory PfnZero | ForEach-Object PageCount) | Should -Be @(7)
        $e.Faults.ReadFaults | Should -Be 7
        $e.RssBytes | Should -Be $page -Because 'the zero page is not counted in RSS'
    }

    It 'without -Privileged the PFN reads as $null, the flags do not change' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length (2 * $page)).Start
        $e | Read-EmulatedMemory -Address $a -Length (2 * $page)
        $e | Clear-SoftDirty
        $p = @($e | Get-PageMap)
        $p | ForEach-Object { $_.Pfn | Should -BeNullOrEmpty; $_.Present | Should -BeTrue; $_.SoftDirty | Should -BeFalse }
    }

    It 'a write after a read replaces the zero page (copy-on-write) and sets soft-dirty' {
        $e = New-EmulatedProcess -Privileged
        $a = ($e | Add-EmulatedMapping -Length $page).Start
        $e | Read-EmulatedMemory -Address $a
        $e | Clear-SoftDirty
        $zeroPfn = (Get-PageMap -Emulator $e -Address $a).Pfn
        $e | Write-EmulatedMemory -Address $a -Length $page -Value 7
        $after = Get-PageMap -Emulator $e -Address $a
        $after.SoftDirty | Should -BeTrue
        $after.Pfn | Should -Not -Be $zeroPfn
        $e.Faults.CowFaults | Should -Be 1
        $bytes = $e | Read-EmulatedMemory -Address $a -Length 16 -AsByteArray
        $bytes | Should -HaveCount 16
        $bytes | ForEach-Object { $_ | Should -Be 7 }
    }
}

Describe 'Fork (Copy-EmulatedProcess)' {
    It 'the child copies soft-dirty bits; pages are copy-on-write; a later write sets the bit only in the writer' {
        $p, $a = New-CleanedProcess 2
        $c = $p | Copy-EmulatedProcess -Name child
        $c | Should -BeOfType ([SoftDirty.Emulation.EmulatedProcess])
        $c.Name | Should -Be 'child'
        $c.ProcessId | Should -Not -Be $p.ProcessId
        @($c | Get-PageMap).SoftDirty | Should -Be @($false, $true) -Because 'the child copies the PTE bits'
        @($c | Get-PageMap).Pfn | Should -Be @($p | Get-PageMap).Pfn -Because 'both map the same frames'
        @($p | Get-PageMap).Exclusive | Should -Be @($false, $false)

        $c | Write-EmulatedMemory -Address $a
        SD $c $a | Should -BeTrue
        SD $p $a | Should -BeFalse
        (Get-PageMap -Emulator $c -Address $a).Pfn | Should -Not -Be (Get-PageMap -Emulator $p -Address $a).Pfn
        $c.Faults.CowFaults | Should -Be 1
        $p.Faults.CowFaults | Should -Be 0
    }

    It 'the child has the parent''s mappings and VM_SOFTDIRTY flags' {
        $p = New-EmulatedProcess
        $null = $p | Add-EmulatedMapping -Length $page
        $c = $p | Copy-EmulatedProcess
        ($c | Get-MemoryMapping).SoftDirty | Should -BeTrue
        $p | Clear-SoftDirty
        ($p | Get-MemoryMapping).SoftDirty | Should -BeFalse
        ($c | Get-MemoryMapping).SoftDirty | Should -BeTrue -Because 'a clear in the parent leaves the child alone'
    }
}

Describe 'Swap and MADV_DONTNEED (Invoke-EmulatedMadvise)' {
    It 'PageOut then WillNeed keeps soft-dirty of private anonymous pages, in the swap entry and after' {
        $e, $a = New-CleanedProcess 4
        $e | Invoke-EmulatedMadvise -Address $a -Length (4 * $page) -Advice PageOut
        $out = @($e | Get-PageMap)
        $out.Swapped | Should -Be @($true, $true, $true, $true)
        $out.Present | Should -Be @($false, $false, $false, $false)
        $out.SoftDirty | Should -Be @($false, $true, $false, $false)
        $out | ForEach-Object { $_.SwapOffset | Should -Not -BeNullOrEmpty }
        $e.SwapSlotsUsed | Should -Be 4
        ($e | Get-MemoryMapping).Swap | Should -Be (4 * $page)
        $e | Invoke-EmulatedMadvise -Address $a -Length (4 * $page) -Advice WillNeed
        $in = @($e | Get-PageMap)
        $in.Present | Should -Be @($true, $true, $true, $true)
        $in.SoftDirty | Should -Be @($false, $true, $false, $false)
        $e.Faults.SwapIns | Should -Be 4
        $e.SwapSlotsUsed | Should -Be 0
    }

    It 'shared memory loses soft-dirty on swap out' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length $page -Shared).Start
        $e | Clear-SoftDirty
        $e | Write-EmulatedMemory -Address $a
        SD $e $a | Should -BeTrue
        $e | Invoke-EmulatedMadvise -Address $a -Length $page -Advice PageOut
        SD $e $a | Should -BeFalse
    }

    It 'DontNeed drops the pages: soft-dirty only through VM_SOFTDIRTY' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length (2 * $page)).Start
        $e | Write-EmulatedMemory -Address $a -Length (2 * $page)
        $e | Invoke-EmulatedMadvise -Address $a -Length $page -Advice DontNeed
        $p = @($e | Get-PageMap)
        $p.Present | Should -Be @($false, $true)
        $p[0].SoftDirty | Should -BeTrue -Because 'the new VMA still has VM_SOFTDIRTY'
        $e | Clear-SoftDirty
        $e | Write-EmulatedMemory -Address ($a + $page)
        $e | Invoke-EmulatedMadvise -Address ($a + $page) -Length $page -Advice DontNeed
        @($e | Get-PageMap).Present | Should -Be @($false, $false)
        @($e | Get-PageMap -SoftDirty) | Should -BeNullOrEmpty -Because 'the written page is gone and the VMA is clean'
        $e.RssBytes | Should -Be 0
    }
}

Describe 'userfaultfd write-protect (Register-EmulatedWriteProtect, Search-PageMap -WriteProtect)' {
    It 'Written lists the written pages; -WriteProtect gets and clears them' {
        $e = New-EmulatedProcess -NoSoftDirty
        $a = ($e | Add-EmulatedMapping -Length (8 * $page)).Start
        $e | Write-EmulatedMemory -Address $a -Length (2 * $page)
        $e | Register-EmulatedWriteProtect -Address $a -Length (8 * $page)
        @($e | Search-PageMap -Category Written) | Should -BeNullOrEmpty
        $e | Write-EmulatedMemory -Address ($a + $page) -Length (2 * $page)
        $e | Write-EmulatedMemory -Address ($a + 6 * $page)
        $first = @($e | Search-PageMap -Category Written -WriteProtect -CheckWriteProtectAsync)
        $first | ForEach-Object { $_.Categories | Should -Be 'Written' }
        @(Expand-Range $first) | Should -Be @(($a + $page), ($a + 2 * $page), ($a + 6 * $page))
        @($e | Search-PageMap -Category Written -WriteProtect) | Should -BeNullOrEmpty -Because 'the first scan re-armed them'
        $e | Write-EmulatedMemory -Address ($a + 2 * $page)
        @(Expand-Range @($e | Search-PageMap -Category Written)) | Should -Be @(($a + 2 * $page))
        $e.Faults.UffdWriteProtectFaults | Should -Be 4
        (Get-PageMap -Emulator $e -Address ($a + 7 * $page)).UffdWriteProtected | Should -BeTrue
    }

    It '-CheckWriteProtectAsync on an unregistered range is an error; -WriteProtect alone is WriteProtectNotSupported' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length $page).Start
        $e | Write-EmulatedMemory -Address $a
        $err = { $e | Search-PageMap -Category Written -WriteProtect -CheckWriteProtectAsync -ErrorAction Stop } |
            Should -Throw -ErrorId 'PermissionDenied,SoftDirty.Commands.SearchPageMapCommand' -PassThru
        $err.Exception.Message | Should -Match 'EPERM'
        $err = { $e | Search-PageMap -Category Written -WriteProtect -ErrorAction Stop } |
            Should -Throw -ErrorId 'WriteProtectNotSupported,SoftDirty.Commands.SearchPageMapCommand' -PassThru -Because 'WP_MATCHING would arm nothing on a VMA not registered'
        $err.Exception.Message | Should -Match "VmFlags 'uw'"
        $e | Register-EmulatedWriteProtect -Address $a -Length $page
        $b = ($e | Add-EmulatedMapping -Length $page).Start
        { $e | Search-PageMap -Category Written -WriteProtect -ErrorAction Stop } | Should -Not -Throw -Because "one registered mapping is enough; the kernel skips the other (0x$('{0:x}' -f $b))"
        @($e | Search-PageMap -Category Written).Count | Should -Be 1 -Because 'every present page of an unregistered VMA counts as written'
    }
}

Describe 'A kernel without soft-dirty (-NoSoftDirty)' {
    It 'Clear-SoftDirty fails with SoftDirtyNotSupported; Get-PageMap warns; bit 55 is never set' {
        $e = New-EmulatedProcess -NoSoftDirty
        $a = ($e | Add-EmulatedMapping -Length $page).Start
        $e | Write-EmulatedMemory -Address $a
        $err = { $e | Clear-SoftDirty -ErrorAction Stop } | Should -Throw -ErrorId 'SoftDirtyNotSupported,SoftDirty.Commands.ClearSoftDirtyCommand' -PassThru
        $err.CategoryInfo.Category | Should -Be 'NotImplemented'
        $err.Exception.Message | Should -Match 'CONFIG_MEM_SOFT_DIRTY'
        # The warning shows once per session and kernel (Usability.Tests.ps1 checks that in a fresh session); later calls say it with -Verbose.
        $said = @($e | Get-PageMap -Verbose -WarningAction Continue 3>&1 4>&1 | Where-Object { $_ -is [System.Management.Automation.InformationalRecord] })
        ($said.Message -join "`n") | Should -Match 'no soft-dirty bits: the SoftDirty property is always false'
        $pages = @($e | Get-PageMap)
        $pages.Present | Should -Be @($true)
        $pages.SoftDirty | Should -Be @($false)
        ($e | Get-MemoryMapping).VmFlags | Should -Not -Contain 'sd'
        $f = $e | Get-SoftDirtySupport
        $f.SoftDirty | Should -BeFalse
        $f.KernelRelease | Should -BeLike '*nosoftdirty'
    }
}

Describe 'Get-MemoryMapping -Emulator' {
    It 'shows VM_SOFTDIRTY (SoftDirty, VmFlags sd) on a new mapping, gone after a clear, back on a new mapping' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length (4 * $page)).Start
        $m = $e | Get-MemoryMapping
        $m.SoftDirty | Should -BeTrue
        $m.VmFlags | Should -Contain 'sd'
        $m.Kind | Should -Be 'Anonymous'
        $e | Clear-SoftDirty
        $m = $e | Get-MemoryMapping
        $m.SoftDirty | Should -BeFalse
        $m.VmFlags | Should -Not -Contain 'sd'
        $b = ($e | Add-EmulatedMapping -Length $page -Protection Read).Start
        (Get-MemoryMapping -Emulator $e -Address $b).VmFlags | Should -Contain 'sd'
        (Get-MemoryMapping -Emulator $e -Address $a).VmFlags | Should -Not -Contain 'sd'
        $e | Write-EmulatedMemory -Address $a
        (Get-MemoryMapping -Emulator $e -Address $a).SoftDirty | Should -BeFalse -Because 'a write sets the PTE bit, not the VMA flag'
    }

    It '-Mapping selects by file name' {
        $e = New-EmulatedProcess
        $null = $e | Add-EmulatedMapping -Length $page
        $null = $e | Add-EmulatedMapping -Length $page -Path '/emulated/a.bin'
        @($e | Get-MemoryMapping -Mapping 'a.bin').Path | Should -Be @('/emulated/a.bin')
        @($e | Get-MemoryMapping).Count | Should -Be 2
    }
}

Describe 'Clear-PageReference -Emulator' {
    It '-Type PeakRss resets the peak RSS to the current RSS' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length (16 * $page)).Start
        $e | Write-EmulatedMemory -Address $a -Length (16 * $page)
        $e | Invoke-EmulatedMadvise -Address $a -Length (12 * $page) -Advice DontNeed
        $e.RssBytes | Should -Be (4 * $page)
        $e.PeakRssBytes | Should -Be (16 * $page)
        $e | Clear-PageReference -Type PeakRss
        $e.PeakRssBytes | Should -Be (4 * $page)
    }

    It '-Type Anonymous clears the referenced bits of anonymous mappings only' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length $page).Start
        $f = ($e | Add-EmulatedMapping -Length $page -Path '/emulated/ref.bin').Start
        $e | Write-EmulatedMemory -Address $a
        $e | Read-EmulatedMemory -Address $f
        $e | Clear-PageReference -Type Anonymous
        (Get-MemoryMapping -Emulator $e -Address $a).Referenced | Should -Be 0
        (Get-MemoryMapping -Emulator $e -Address $f).Referenced | Should -Be $page
        { $e | Clear-PageReference -Type SoftDirty -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentTransformationError,SoftDirty.Commands.ClearPageReferenceCommand'
    }
}

Describe 'Invoke-EmulatedWorkload' {
    It 'returns what it did, deterministic per seed, and the faults it took' {
        $runs = foreach ($seed in 7, 7, 8) {
            $e = New-EmulatedProcess
            $a = ($e | Add-EmulatedMapping -Length 1MB).Start
            $r = $e | Invoke-EmulatedWorkload -Address $a -Length 1MB -Pattern Random -Count 2000 -WriteRatio 0.3 -Seed $seed
            # Which pages were written (left the zero page) and which were only read.
            $e | Clear-SoftDirty
            $null = $e | Invoke-EmulatedWorkload -Address $a -Length 1MB -Pattern Random -Count 100 -WriteRatio 1 -Seed ($seed + 100)
            [pscustomobject]@{ Result = $r; Dirty = (Addresses ($e | Get-PageMap -SoftDirty)) -join ',' }
        }
        $r = $runs[0].Result
        $r.Accesses | Should -Be 2000
        ($r.Reads + $r.Writes) | Should -Be 2000
        $r.Writes | Should -BeGreaterThan 500
        $r.Writes | Should -BeLessThan 700
        $r.Faults.WriteFaults | Should -BeGreaterThan 0
        $r.Faults.WriteFaults | Should -BeLessOrEqual 256
        "$($runs[1].Result.Faults)" | Should -Be "$($r.Faults)"
        $runs[1].Result.Writes | Should -Be $r.Writes
        $runs[1].Dirty | Should -Be $runs[0].Dirty
        $runs[2].Dirty | Should -Not -Be $runs[0].Dirty -Because 'another seed touches other pages'
    }

    It 'after a clear, the first write to each page takes one soft-dirty fault and later ones none' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length (64 * $page)).Start
        $null = $e | Invoke-EmulatedWorkload -Address $a -Length (64 * $page) -Pattern Sequential -Count 64 -WriteRatio 1
        $e | Clear-SoftDirty
        $r = $e | Invoke-EmulatedWorkload -Address $a -Length (64 * $page) -Pattern Sequential -Count 640 -WriteRatio 1
        $r.Faults.SoftDirtyWriteProtectFaults | Should -Be 64
        $r.Faults.Total | Should -Be 64
        @($e | Get-PageMap -SoftDirty).Count | Should -Be 64
    }

    It 'replays a CSV trace from TestDrive:' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length (8 * $page)).Start
        $trace = Join-Path $TestDrive 'trace.csv'
        @(
            'op,address,length'
            '# a comment'
            ('write,0x{0:x},8' -f $a)
            "read,$($a + 2 * $page)"
            ('write,0x{0:x},8192' -f ($a + 4 * $page))
        ) | Set-Content $trace
        $e | Clear-SoftDirty
        $r = $e | Invoke-EmulatedWorkload -TracePath $trace
        $r.Accesses | Should -Be 3
        $r.Reads | Should -Be 1
        $r.Writes | Should -Be 2
        $r.Faults.ReadFaults | Should -Be 1
        $r.Faults.WriteFaults | Should -Be 3
        (Addresses ($e | Get-PageMap -SoftDirty)) | Should -Be @($a, ($a + 4 * $page), ($a + 5 * $page))
        (Get-PageMap -Emulator $e -Address ($a + 2 * $page)).Present | Should -BeTrue
    }

    It 'a malformed trace is InvalidArgument, a missing one TraceNotFound, and nothing runs' {
        $e = New-EmulatedProcess
        $a = ($e | Add-EmulatedMapping -Length $page).Start
        $bad = Join-Path $TestDrive 'bad.csv'
        @(('write,0x{0:x}' -f $a), 'jump,1') | Set-Content $bad
        { $e | Invoke-EmulatedWorkload -TracePath $bad -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.InvokeEmulatedWorkloadCommand'
        (Get-PageMap -Emulator $e -Address $a).Present | Should -BeFalse
        { $e | Invoke-EmulatedWorkload -TracePath (Join-Path $TestDrive 'none.csv') -ErrorAction Stop } | Should -Throw -ErrorId 'TraceNotFound,SoftDirty.Commands.InvokeEmulatedWorkloadCommand'
    }
}

Describe 'Errors of emulated system calls' {
    BeforeAll {
        $e = New-EmulatedProcess -Name errors
        $rw = ($e | Add-EmulatedMapping -Length (2 * $page) -Address 0x40000000).Start
        $ro = ($e | Add-EmulatedMapping -Length (2 * $page) -Address 0x40002000 -Protection Read).Start
        $e | Write-EmulatedMemory -Address $rw -Length (2 * $page) -Value 0xAB
        $tail = ($e | Add-EmulatedMapping -Length $page -Address 0x40008000).Start
        $hole = 0x50000000
    }

    It '<Name>: InvalidArgument, the same ErrorId as a real kernel''s EINVAL, nothing changed' -ForEach @(
        @{ Name = 'mmap of zero bytes'; Class = 'AddEmulatedMappingCommand'; Run = { Add-EmulatedMapping -Emulator $e -Length 0 } }
        @{ Name = 'mmap -Fixed at an unaligned address'; Class = 'AddEmulatedMappingCommand'; Run = { Add-EmulatedMapping -Emulator $e -Length $page -Address ($hole + 1) -Fixed } }
        @{ Name = 'munmap at an unaligned address'; Class = 'RemoveEmulatedMappingCommand'; Run = { Remove-EmulatedMapping -Emulator $e -Address ($rw + 1) -Length $page } }
        @{ Name = 'munmap of zero bytes'; Class = 'RemoveEmulatedMappingCommand'; Run = { Remove-EmulatedMapping -Emulator $e -Address $rw -Length 0 } }
        @{ Name = 'mprotect at an unaligned address'; Class = 'SetEmulatedProtectionCommand'; Run = { Set-EmulatedProtection -Emulator $e -Address ($rw + 8) -Length $page -Protection Read } }
        @{ Name = 'mremap at an unaligned address'; Class = 'MoveEmulatedMappingCommand'; Run = { Move-EmulatedMapping -Emulator $e -Address ($rw + 8) -Length $page -NewAddress $hole } }
        @{ Name = 'mremap to an unaligned address'; Class = 'MoveEmulatedMappingCommand'; Run = { Move-EmulatedMapping -Emulator $e -Address $rw -Length $page -NewAddress ($hole + 8) } }
        @{ Name = 'madvise at an unaligned address'; Class = 'InvokeEmulatedMadviseCommand'; Run = { Invoke-EmulatedMadvise -Emulator $e -Address ($rw + 8) -Length $page -Advice DontNeed } }
        @{ Name = 'a workload over zero bytes'; Class = 'InvokeEmulatedWorkloadCommand'; Run = { Invoke-EmulatedWorkload -Emulator $e -Address $rw -Length 0 -Count 1 } }
        # UFFDIO_REGISTER of a range with no VMA at all is EINVAL (measured on 6.18 by the differential run).
        @{ Name = 'userfaultfd register of an unmapped range'; Class = 'RegisterEmulatedWriteProtectCommand'; Run = { Register-EmulatedWriteProtect -Emulator $e -Address $hole -Length $page } }
    ) {
        $before = Get-State $e
        $err = { & $Run -ErrorAction Stop } | Should -Throw -ErrorId "InvalidArgument,SoftDirty.Commands.$Class" -PassThru
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.Exception.Message | Should -Match 'EINVAL'
        Get-State $e | Should -Be $before
    }

    It '<Name>: EmulatorNotMapped, as the kernel''s <Errno>, nothing changed' -ForEach @(
        @{ Name = 'mprotect of an unmapped range'; Class = 'SetEmulatedProtectionCommand'; Errno = 'ENOMEM'; Run = { Set-EmulatedProtection -Emulator $e -Address $hole -Length $page -Protection Read } }
        @{ Name = 'madvise PageOut of an unmapped range'; Class = 'InvokeEmulatedMadviseCommand'; Errno = 'ENOMEM'; Run = { Invoke-EmulatedMadvise -Emulator $e -Address $hole -Length $page -Advice PageOut } }
        @{ Name = 'mremap of an unmapped range'; Class = 'MoveEmulatedMappingCommand'; Errno = 'EFAULT'; Run = { Move-EmulatedMapping -Emulator $e -Address $hole -Length $page -NewAddress ($hole + 16 * $page) } }
    ) {
        $before = Get-State $e
        $err = { & $Run -ErrorAction Stop } | Should -Throw -ErrorId "EmulatorNotMapped,SoftDirty.Commands.$Class" -PassThru
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.Exception.Message | Should -Match $Errno
        $err.Exception.Message | Should -Match ('0x{0:x}' -f $hole)
        Get-State $e | Should -Be $before
    }

    It 'munmap of an unmapped range succeeds, as the kernel''s' {
        $before = Get-State $e
        $e | Remove-EmulatedMapping -Address $hole -Length (4 * $page) -ErrorVariable ev
        $ev | Should -BeNullOrEmpty
        Get-State $e | Should -Be $before
    }

    It 'mprotect of a range that runs into a hole changes up to the hole, then fails with ENOMEM' {
        $x = New-EmulatedProcess
        $a = ($x | Add-EmulatedMapping -Length (2 * $page) -Address 0x60000000).Start
        { $x | Set-EmulatedProtection -Address $a -Length (4 * $page) -Protection Read -ErrorAction Stop } |
            Should -Throw -ErrorId 'EmulatorNotMapped,SoftDirty.Commands.SetEmulatedProtectionCommand'
        ($x | Get-MemoryMapping -Address $a).Permissions | Should -Be 'r--p'
    }

    It 'SegmentationFault (<Name>) names the address and the reason, and nothing changes' -ForEach @(
        @{ Name = 'a write outside any mapping'; Class = 'WriteEmulatedMemoryCommand'; At = 'hole'; Reason = 'no mapping'; Run = { Write-EmulatedMemory -Emulator $e -Address $hole -Value 0xCD } }
        @{ Name = 'a write running off the end of a mapping'; Class = 'WriteEmulatedMemoryCommand'; At = 'tailEnd'; Reason = 'no mapping'; Run = { Write-EmulatedMemory -Emulator $e -Address $tail -Length (2 * $page) -Value 0xCD } }
        @{ Name = 'a read running off the end of a mapping'; Class = 'ReadEmulatedMemoryCommand'; At = 'roEnd'; Reason = 'no mapping'; Run = { Read-EmulatedMemory -Emulator $e -Address $ro -Length (3 * $page) } }
        @{ Name = 'a write to a read-only mapping'; Class = 'WriteEmulatedMemoryCommand'; At = 'ro'; Reason = 'without write permission'; Run = { Write-EmulatedMemory -Emulator $e -Address $ro -Value 0xCD } }
        @{ Name = 'a write from a writable into a read-only mapping'; Class = 'WriteEmulatedMemoryCommand'; At = 'ro'; Reason = 'without write permission'; Run = { Write-EmulatedMemory -Emulator $e -Address $rw -Length (3 * $page) -Value 0xCD } }
        @{ Name = 'a read outside any mapping'; Class = 'ReadEmulatedMemoryCommand'; At = 'hole'; Reason = 'no mapping'; Run = { Read-EmulatedMemory -Emulator $e -Address $hole } }
        @{ Name = 'a workload writing to a read-only mapping'; Class = 'InvokeEmulatedWorkloadCommand'; At = 'ro'; Reason = 'without write permission'; Run = { Invoke-EmulatedWorkload -Emulator $e -Address $ro -Length $page -Count 10 -WriteRatio 1 } }
    ) {
        $address = switch ($At) { 'hole' { $hole } 'ro' { $ro } 'roEnd' { $ro + 2 * $page } 'tailEnd' { $tail + $page } }
        $before = Get-State $e
        $bytesBefore = $e | Read-EmulatedMemory -Address $rw -Length (2 * $page) -AsByteArray
        $err = { & $Run -ErrorAction Stop } | Should -Throw -ErrorId "SegmentationFault,SoftDirty.Commands.$Class" -PassThru
        $err.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $err.Exception.Message | Should -Match ('0x{0:x}' -f $address)
        $err.Exception.Message | Should -Match $Reason
        $err.Exception.Message | Should -Match 'Nothing was changed'
        Get-State $e | Should -Be $before
        $bytesAfter = $e | Read-EmulatedMemory -Address $rw -Length (2 * $page) -AsByteArray
        [Convert]::ToBase64String($bytesAfter) | Should -Be ([Convert]::ToBase64String($bytesBefore))
        $bytesAfter[0] | Should -Be 0xAB
    }

    It 'errors are non-terminating: the next emulated process in the pipeline still runs' {
        $x = New-EmulatedProcess
        $null = $x | Add-EmulatedMapping -Length $page -Address $hole -Fixed
        $out = @($e, $x | Write-EmulatedMemory -Address $hole -ErrorVariable ev -ErrorAction SilentlyContinue)
        $out | Should -BeNullOrEmpty
        $ev | Should -HaveCount 1
        $ev[0].FullyQualifiedErrorId | Should -Be 'SegmentationFault,SoftDirty.Commands.WriteEmulatedMemoryCommand'
        SD $x $hole | Should -BeTrue
        (Get-PageMap -Emulator $x -Address $hole).Present | Should -BeTrue
    }
}

Describe 'A huge sparse mapping' {
    It 'a 64 TiB mapping costs memory only for the pages touched' {
        [GC]::Collect()
        $before = [GC]::GetTotalMemory($true)
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64TB
        $m.Size | Should -Be 64TB
        foreach ($offset in 0, 1GB, 17TB, 32TB, (64TB - $page)) {
            $e | Write-EmulatedMemory -Address ($m.Start + $offset) -Length $page
        }
        $e | Clear-SoftDirty
        $e | Write-EmulatedMemory -Address ($m.Start + 32TB)
        $grown = [GC]::GetTotalMemory($true) - $before
        $grown | Should -BeLessThan 50MB
        $r = @(Get-PageMap -Emulator $e -Address ($m.Start + 32TB - $page) -Length (3 * $page))
        $r.Present | Should -Be @($false, $true, $false)
        $r.SoftDirty | Should -Be @($false, $true, $false)
        (Addresses ($e | Get-PageMap -SoftDirty)) | Should -Be @(($m.Start + 32TB))
        $e.RssBytes | Should -Be (5 * $page)
        [GC]::KeepAlive($e)
    }
}
