#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Get-PageMap against a real child process (tests/native/sdtarget) whose memory each test controls.

BeforeDiscovery {
    # -Skip conditions are evaluated at discovery: probe the kernel then.
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $support = Get-SoftDirtySupport
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    # The no-soft-dirty warning is asserted in its own test; elsewhere it is noise.
    $PSDefaultParameterValues = @{ 'Get-PageMap:WarningAction' = 'SilentlyContinue' }
    $support = Get-SoftDirtySupport
    $t = Start-TestTarget
    $ps = $t.PageSize

    # The entries of $Pages pages from $Base, with any extra Get-PageMap parameters.
    function Get-Pages([uint64] $Base, [int] $Pages, [hashtable] $Extra = @{}) {
        Get-PageMap -Id $t.Id -Address $Base -Length ([uint64]$Pages * $ps) @Extra
    }
}

AfterAll {
    Stop-TestTarget -All
}

Describe 'Get-PageMap on private anonymous memory' {
    BeforeAll {
        $anon = $t.Map(8)
        $before = Get-Pages $anon 8
        $t.Send("write $(Hex $anon) 2 3")   # pages 2, 3, 4
        $after = Get-Pages $anon 8
    }

    It 'emits one PageEntry per page with its address, in order' {
        $after | Should -HaveCount 8
        $after[0] | Should -BeOfType ([SoftDirty.PageEntry])
        ($after | ForEach-Object Start) | Should -Be @(0..7 | ForEach-Object { $anon + [uint64]$_ * $ps })
        $after.ProcessId | Select-Object -Unique | Should -Be $t.Id
    }

    It 'shows no page present before the child writes' {
        $before | Should -HaveCount 8
        @($before | Where-Object Present) | Should -HaveCount 0
    }

    It 'shows exactly the written pages present' {
        Get-Index $anon ($after | Where-Object Present) | Should -Be 2, 3, 4
    }

    It 'marks written private anonymous pages Exclusive and not FileOrSharedAnon' {
        $written = $after | Where-Object Present
        $written.Exclusive | Should -Not -Contain $false
        $after.FileOrSharedAnon | Should -Not -Contain $true
    }

    It 'shows PFNs of present pages where the caller may see them (root), none for absent pages, none at all elsewhere' {
        if ($support.PfnVisible) {
            foreach ($e in $after | Where-Object Present) { $e.Pfn | Should -BeGreaterThan 0 }
            foreach ($e in $after | Where-Object { -not $_.Present }) { $e.Pfn | Should -BeNullOrEmpty }
            # Three distinct frames: the writes did not share one page.
            @($after | Where-Object Present | Select-Object -ExpandProperty Pfn -Unique) | Should -HaveCount 3
        } else {
            @($after | Where-Object { $null -ne $_.Pfn }) | Should -BeNullOrEmpty -Because 'pagemap hides PFNs from a caller without CAP_SYS_ADMIN'
        }
    }

    It 'keeps Raw consistent with the decoded flags' {
        foreach ($e in $after) {
            $e.Present | Should -Be ([bool]($e.Raw -shr 63))
            $e.Exclusive | Should -Be ([bool](($e.Raw -shr 56) -band 1))
        }
    }

    It 'names the mapping of each page' {
        $after.Mapping | Select-Object -Unique | Should -Be '[anon]'
    }

    It 'loses the pages again after madvise(DONTNEED)' {
        $m = $t.Map(4)
        $t.Send("write $(Hex $m) 0 4")
        @(Get-Pages $m 4 @{ Present = $true }) | Should -HaveCount 4
        $t.Send("madvise $(Hex ($m + $ps)) 1 dontneed")
        Get-Index $m (Get-Pages $m 4 @{ Present = $true }) | Should -Be 0, 2, 3
    }

    It 'reads an anonymous page as present after a read: the shared zero page (not exclusive) or, where the kernel has none, a fresh exclusive page' {
        # Whether this kernel maps the zero page is a measured rule (a boot option can take it away).
        $zeroPage = ($support.Rules | Where-Object Name -EQ 'SharedZeroPage').Value
        $zeroPage | Should -BeIn 'True', 'False'
        $m = $t.Map(2)
        $t.Send("read $(Hex $m) 0") | Should -Be '0'
        $e = Get-Pages $m 2
        $e[0].Present | Should -BeTrue
        $e[0].Exclusive | Should -Be ($zeroPage -eq 'False') -Because "SharedZeroPage is $zeroPage here"
        $e[1].Present | Should -BeFalse
    }
}

Describe 'Get-PageMap on file and shared mappings' {
    BeforeAll {
        $dir = Join-Path ([IO.Path]::GetTempPath()) "softdirty pester $PID"
        $null = New-Item -ItemType Directory $dir -Force
        $file = Join-Path $dir 'mapped file.bin'
        $fileMap = $t.Map(4, "file `"$file`"")
        $t.Send("write $(Hex $fileMap) 0 2")
        $t.Send("read $(Hex $fileMap) 3")
        $shared = $t.Map(4, 'shared')
        $t.Send("write $(Hex $shared) 1 2")
        $filePages = Get-Pages $fileMap 4
        $sharedPages = Get-Pages $shared 4
    }
    AfterAll { Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue }

    It 'marks written and read pages of a shared file mapping present and FileOrSharedAnon' {
        # Page 2 may be present too: fault-around maps neighbours that are in the page cache.
        $present = Get-Index $fileMap ($filePages | Where-Object Present)
        foreach ($i in 0, 1, 3) { $present | Should -Contain $i }
        ($filePages | Where-Object Present).FileOrSharedAnon | Should -Not -Contain $false
    }

    It 'marks written shared anonymous pages present and FileOrSharedAnon' {
        Get-Index $shared ($sharedPages | Where-Object Present) | Should -Be 1, 2
        ($sharedPages | Where-Object Present).FileOrSharedAnon | Should -Not -Contain $false
    }

    It 'writes through a MAP_SHARED file mapping to the file' {
        $bytes = [IO.File]::ReadAllBytes($file)
        $bytes.Length | Should -Be (4 * $ps)
        $bytes[0] | Should -Be 1
        $bytes[$ps] | Should -Be 2
        $bytes[2 * $ps] | Should -Be 0
    }

    It 'selects a file mapping by a wildcard on its path (with spaces)' {
        $e = Get-PageMap -Id $t.Id -Mapping '*softdirty pester*mapped file.bin'
        $e | Should -HaveCount 4
        ($e | ForEach-Object Start) | Should -Be (Get-Pages $fileMap 4 | ForEach-Object Start)
        $e.Mapping | Select-Object -Unique | Should -Be $file
    }

    It 'selects a file mapping by its file name alone' {
        @(Get-PageMap -Id $t.Id -Mapping 'mapped file.bin') | Should -HaveCount 4
    }
}

Describe 'Get-PageMap range selection' {
    It 'selects [heap] and [stack] literally, matching Get-MemoryMapping' -ForEach @(
        @{ Name = '[heap]' }, @{ Name = '[stack]' }
    ) {
        $vma = @(Get-MemoryMapping -Id $t.Id | Where-Object Path -EQ $Name)
        $vma | Should -HaveCount 1
        $e = Get-PageMap -Id $t.Id -Mapping $Name
        $e | Should -HaveCount ($vma[0].Size / $ps)
        $e[0].Start | Should -Be $vma[0].Start
        $e.Mapping | Select-Object -Unique | Should -Be $Name
        @($e | Where-Object Present).Count | Should -BeGreaterThan 0
    }

    It 'reads one page when -Address has no -Length' {
        $m = $t.Map(3)
        $e = @(Get-PageMap -Id $t.Id -Address ($m + $ps))
        $e | Should -HaveCount 1
        $e[0].Start | Should -Be ($m + $ps)
    }

    It 'reads every mapped page of the process by default' {
        $all = Get-PageMap -Id $t.Id
        $maps = Get-MemoryMapping -Id $t.Id | Where-Object Kind -NE 'Vsyscall'
        $all | Should -HaveCount (($maps | Measure-Object Size -Sum).Sum / $ps)
    }

    It 'skips, with a warning, the pages of a range that lie outside any mapping' {
        $m = $t.Map(2)
        # Take away the guard page below the mapping: that page is now mapped by nothing.
        $t.Send("unmap $(Hex ($m - $ps)) 1")
        $e = Get-PageMap -Id $t.Id -Address ($m - $ps) -Length (3 * $ps) -WarningVariable wv -WarningAction SilentlyContinue
        ($e | ForEach-Object Start) | Should -Be $m, ($m + $ps)
        ($wv -join "`n") | Should -Match '1 page\(s\).*outside any mapping'
    }
}

Describe 'Get-PageMap filters' {
    BeforeAll {
        $f = $t.Map(16)
        $t.Send("write $(Hex $f) 0 4")
        $t.Send("write $(Hex $f) 10 2")
    }

    It '-Present keeps exactly the present pages' {
        Get-Index $f (Get-Pages $f 16 @{ Present = $true }) | Should -Be 0, 1, 2, 3, 10, 11
    }

    It '-Present:$false keeps exactly the absent pages' {
        Get-Index $f (Get-Pages $f 16 @{ Present = $false }) | Should -Be 4, 5, 6, 7, 8, 9, 12, 13, 14, 15
    }

    It '-Swapped finds nothing in memory that was never swapped, and -Swapped:$false keeps everything' {
        @(Get-Pages $f 16 @{ Swapped = $true }) | Should -HaveCount 0
        @(Get-Pages $f 16 @{ Swapped = $false }) | Should -HaveCount 16
    }

    It '-SoftDirty and -SoftDirty:$false split the pages by bit 55' {
        $all = Get-Pages $f 16
        $sd = @(Get-Pages $f 16 @{ SoftDirty = $true })
        $clean = @(Get-Pages $f 16 @{ SoftDirty = $false })
        ($sd | ForEach-Object Start) | Should -Be @($all | Where-Object SoftDirty | ForEach-Object Start)
        ($sd.Count + $clean.Count) | Should -Be 16
        if (-not $support.SoftDirty) { $sd | Should -HaveCount 0 }
    }

    It 'combines filters (present and not swapped)' {
        Get-Index $f (Get-Pages $f 16 @{ Present = $true; Swapped = $false }) | Should -Be 0, 1, 2, 3, 10, 11
    }
}

Describe 'Get-PageMap -AsRange' {
    BeforeAll {
        $r = $t.Map(16)
        $t.Send("write $(Hex $r) 3 5")   # pages 3..7
        $t.Send("write $(Hex $r) 12 1")
        $ranges = @(Get-Pages $r 16 @{ AsRange = $true })
    }

    It 'emits PageRange objects whose page counts sum to the pages read' {
        $ranges[0] | Should -BeOfType ([SoftDirty.PageRange])
        ($ranges | Measure-Object PageCount -Sum).Sum | Should -Be 16
        foreach ($x in $ranges) { $x.Size | Should -Be ($x.PageCount * $ps) }
    }

    It 'splits where the flags change and nowhere else' {
        $ranges | Should -HaveCount 5
        $ranges.Start | Should -Be @(0, 3, 8, 12, 13 | ForEach-Object { $r + [uint64]$_ * $ps })
        $ranges.PageCount | Should -Be 3, 5, 4, 1, 3
        $ranges.Present | Should -Be $false, $true, $false, $true, $false
        # Each range is contiguous with the next.
        for ($i = 1; $i -lt $ranges.Count; $i++) { $ranges[$i].Start | Should -Be $ranges[$i - 1].End }
    }

    It 'applies filters before coalescing' {
        $p = @(Get-Pages $r 16 @{ AsRange = $true; Present = $true })
        $p.PageCount | Should -Be 5, 1
        @(Get-Pages $r 16 @{ AsRange = $true } | Where-Object Present).PageCount | Should -Be 5, 1
    }

    It 'splits a run of present pages where Exclusive changes (after fork, one page written again)' {
        $x = $t.Map(6)
        $t.Send("write $(Hex $x) 0 6")
        $child = [int]$t.Send('fork')
        try {
            # The fork made every page copy-on-write shared; writing page 2 gives the parent its own copy.
            $t.Send("write $(Hex $x) 2")
            $e = Get-PageMap -Id $t.Id -Address $x -Length (6 * $ps)
            $e.Exclusive | Should -Be $false, $false, $true, $false, $false, $false
            $xr = @(Get-PageMap -Id $t.Id -Address $x -Length (6 * $ps) -AsRange)
            $xr.PageCount | Should -Be 2, 1, 3
            $xr.Present | Should -Not -Contain $false
            $xr.Exclusive | Should -Be $false, $true, $false
        } finally {
            Stop-Process -Id $child -Force -ErrorAction SilentlyContinue
        }
    }

    It 'Save-MemoryImage and the Hash method leave copy-on-write shared pages shared (no unshare by reading)' {
        # process_vm_readv pins what it reads, and a read pin of a fork-shared anonymous page makes the kernel
        # copy it for the target; the module reads such pages through /proc/PID/mem, which does not.
        $x = $t.Map(64)
        $t.Send("write $(Hex $x) 0 64")
        $child = [int]$t.Send('fork')
        $folder = Join-Path ([IO.Path]::GetTempPath()) "sd-cow-$([guid]::NewGuid())"
        try {
            (Get-PageMap -Id $t.Id -Address $x -Length (64 * $ps)).Exclusive | Should -Not -Contain $true
            $null = Save-MemoryImage -Id $t.Id -Path $folder -Method Hash
            $after = Get-PageMap -Id $t.Id -Address $x -Length (64 * $ps)
            $after.Present | Should -Not -Contain $false
            $after.Exclusive | Should -Not -Contain $true -Because 'reading a page must not give the target its own copy'
        } finally {
            Stop-Process -Id $child -Force -ErrorAction SilentlyContinue
            Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction SilentlyContinue
        }
    }

    It 'ends a range at a VMA boundary even when the flags are equal' {
        $a = $t.Map(4)
        $t.Send("write $(Hex $a) 0 4")
        $t.Send("mprotect $(Hex ($a + 2 * $ps)) 2 ro")   # two VMAs now, pages alike
        $e = Get-PageMap -Id $t.Id -Address $a -Length (4 * $ps)
        $e.Flags | Select-Object -Unique | Should -HaveCount 1
        $rr = @(Get-PageMap -Id $t.Id -Address $a -Length (4 * $ps) -AsRange)
        $rr.PageCount | Should -Be 2, 2
        $rr[1].Start | Should -Be ($a + 2 * $ps)
    }
}

Describe 'Get-PageMap pipeline binding' {
    BeforeAll {
        $b = $t.Map(4)
        $t.Send("write $(Hex $b) 1")
    }

    It 'binds Id from Get-Process' {
        $e = Get-Process -Id $t.Id | Get-PageMap -Address $b -Length (4 * $ps)
        $e | Should -HaveCount 4
        $e.ProcessId | Select-Object -Unique | Should -Be $t.Id
        Get-Index $b ($e | Where-Object Present) | Should -Be 1
    }

    It 'binds Id from a ProcessId property' {
        $e = [pscustomobject]@{ ProcessId = $t.Id } | Get-PageMap -Address $b -Length (4 * $ps) -Present
        Get-Index $b $e | Should -Be 1
    }

    It 'binds Id from a PID property' {
        @([pscustomobject]@{ PID = $t.Id } | Get-PageMap -Address $b -Length (4 * $ps)) | Should -HaveCount 4
    }
}

Describe 'Get-PageMap: the PAGEMAP_SCAN path equals the pread path' {
    BeforeAll {
        $s = $t.Map(64)
        $t.Send("write $(Hex $s) 5 20")
        $t.Send("write $(Hex $s) 40 3")
        $null = $t.Send('clock')   # the vDSO maps [vvar] pages (VM_PFNMAP: PAGEMAP_SCAN skips those VMAs)
        $sh = $t.Map(8, 'shared')
        $t.Send("write $(Hex $sh) 2 2")
        function Get-Key($Entries) { @($Entries | ForEach-Object { '{0:x}:{1:x}' -f $_.Start, $_.Raw }) }
        function Get-RangeKey($Ranges) { @($Ranges | ForEach-Object { '{0:x}-{1:x}:{2}' -f $_.Start, $_.End, $_.Flags }) }
    }

    It 'returns the same pages (Address and Raw) with <Name>' -Skip:(-not $support.PagemapScan) -ForEach @(
        @{ Name = 'no filter'; Filter = @{} }
        @{ Name = '-Present'; Filter = @{ Present = $true } }
        @{ Name = '-Present:$false'; Filter = @{ Present = $false } }
        @{ Name = '-SoftDirty'; Filter = @{ SoftDirty = $true } }
        @{ Name = '-SoftDirty:$false'; Filter = @{ SoftDirty = $false } }
        @{ Name = '-Swapped:$false -Present'; Filter = @{ Swapped = $false; Present = $true } }
    ) {
        $scan = Get-PageMap -Id $t.Id -ReadMethod PagemapScan @Filter
        $pread = Get-PageMap -Id $t.Id -ReadMethod Pread @Filter
        $scanKeys = Get-Key $scan
        $scanKeys | Should -Be (Get-Key $pread)
        # The comparison covers the pages this test wrote (except where the filter excludes them).
        if ($Filter.Present -ne $false) {
            $mine = @($scan | Where-Object { $_.Start -ge $s -and $_.Start -lt $s + 64 * $ps -and $_.Present })
            if ($Filter.SoftDirty -ne $true -or $support.SoftDirty) { $mine | Should -HaveCount 23 }
        }
    }

    It 'returns the same ranges with -AsRange -Present' -Skip:(-not $support.PagemapScan) {
        $scan = Get-PageMap -Id $t.Id -ReadMethod PagemapScan -Present -AsRange
        $pread = Get-PageMap -Id $t.Id -ReadMethod Pread -Present -AsRange
        @($scan).Count | Should -BeGreaterThan 2
        Get-RangeKey $scan | Should -Be (Get-RangeKey $pread)
    }

    It 'returns the same pages of one mapping (-Mapping) with -Present' -Skip:(-not $support.PagemapScan) {
        $scan = Get-PageMap -Id $t.Id -Mapping '[heap]' -ReadMethod PagemapScan -Present
        $pread = Get-PageMap -Id $t.Id -Mapping '[heap]' -ReadMethod Pread -Present
        @($scan).Count | Should -BeGreaterThan 0
        Get-Key $scan | Should -Be (Get-Key $pread)
    }
}

Describe 'Get-PageMap with several ids' {
    It 'reports a bad id and still reads the good one' {
        $bad = Get-UnusedProcessId
        $m = $t.Map(2)
        $e = Get-PageMap -Id $bad, $t.Id -Address $m -Length (2 * $ps) -ErrorVariable ev -ErrorAction SilentlyContinue
        $ev | Should -HaveCount 1
        $ev[0].FullyQualifiedErrorId | Should -Be 'ProcessNotFound,SoftDirty.Commands.GetPageMapCommand'
        $ev[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $ev[0].TargetObject | Should -Be $bad
        $e | Should -HaveCount 2
        $e.ProcessId | Select-Object -Unique | Should -Be $t.Id
    }

    It 'reads each of two good ids' {
        $t2 = Start-TestTarget
        try {
            $e = Get-PageMap -Id $t.Id, $t2.Id -Mapping '[stack]'
            $e.ProcessId | Select-Object -Unique | Should -Be $t.Id, $t2.Id
        } finally { Stop-TestTarget $t2 }
    }
}
