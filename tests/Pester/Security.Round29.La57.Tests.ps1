#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 29 (la57): the ends of the user address space. On x86-64 with 5-level paging (CONFIG_X86_5LEVEL and a CPU
# with la57) a process maps memory above 2^47 when it asks with a hint there, up to the task size 2^56 - 4 KiB; the emulator
# models 4-level paging (EmulatedProcess.TaskSize = 2^47 - 4 KiB). tests/vm/la57-cmdlets.sh boots Debian's 6.1 (soft-dirty,
# no PAGEMAP_SCAN) and 6.12 (soft-dirty, PAGEMAP_SCAN, async write-protect) under qemu with -cpu max (la57), where
# tests/vm/la57-cmdlets.ps1 has sdtarget map 'edge47' (across 2^47: the top page of a 4-level space and the first above),
# 'high' (a hint of 2^52) and 'top56' (the last 16 pages below 2^56 - 4 KiB) beside an ordinary mapping, write known bytes,
# and compares every cmdlet's answer with them: Get-MemoryMapping, Get-PageMap (pread, PAGEMAP_SCAN, the whole process),
# Search-PageMap, Clear-SoftDirty, Save-MemoryImage full and incremental with every -Method, Test/Get/Restore-MemoryImage,
# Watch-DirtyPage, Invoke-PreCopyMigration, Enable/Disable-WriteTracking. Its prints (tests/vm/recorded/la57-cmdlets.<id>.txt)
# are checked here everywhere; with SOFTDIRTY_KERNEL_MATRIX the kernels boot again and must print the same.
# Found: nothing lost above 2^47 (every page of every region in every image, increment and migration, every range a
# watch saw inside its region); an image of such a process restored into the emulator failed on the emulated mmap
# (EmulatorNotMapped, "mmap: ... (ENOMEM)") after mapping what lay below: now PlatformNotSupported before anything is
# mapped, naming the mapping and the 4-level task size (EmulatedProcessRestoreTargetTests has the engine's side).

BeforeDiscovery {
    $script:La57Recorded = @(Get-ChildItem (Join-Path $PSScriptRoot '../vm/recorded') -Filter 'la57-cmdlets.*.txt' |
        ForEach-Object { @{ Id = $_.Name -replace '^la57-cmdlets\.|\.txt$'; Path = $_.FullName } })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:vm = Join-Path $PSScriptRoot '../vm'
    function Get-Facts([string] $Path) {
        $facts = @{}
        # 'setting' lines repeat: those keep every value.
        foreach ($line in [IO.File]::ReadAllLines("$Path.facts")) {
            $k, $v = $line -split ' ', 2
            $facts[$k] = if ($facts.ContainsKey($k)) { @($facts[$k]) + $v } else { $v }
        }
        $facts
    }
    # The regions of the guest script, where they were asked to be, and the pages written in each (sdtarget's 'write').
    $script:Regions = [ordered]@{
        low    = @{ Line = 'region low 0x0-0x0 pages 8'; Present = '11111111' }
        edge47 = @{ Line = 'region edge47 0x7fffffffe000-0x800000002000 pages 4'; Present = '1111' }
        high   = @{ Line = 'region high 0x10000000000000-0x10000000010000 pages 16'; Present = '1010101010101010' }
        top56  = @{ Line = 'region top56 0xfffffffffef000-0xfffffffffff000 pages 16'; Present = '1111111111111111' }
    }
    # The ErrorId (first word) of a command's refusal, terminating or not; 'none' when it did not refuse.
    function Get-Refusal([scriptblock] $Command) {
        $ErrorActionPreference = 'Stop'
        try { $null = & $Command; 'none' } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
    }
}

Describe 'Round 29: mappings above 2^47 under 5-level paging (recorded under qemu)' -Tag 'Security', 'Round29La57' {
    It 'there is a recording of 6.1 and of 6.12' {
        @($La57Recorded | ForEach-Object Id | Sort-Object) | Should -Be @('6.1', '6.12')
    }

    Context '<Id>' -ForEach $La57Recorded {
        BeforeAll {
            $script:facts = Get-Facts $Path
            $script:lines = [IO.File]::ReadAllLines($Path)
            $script:support = $lines | Where-Object { $_ -like 'support softdirty *' }
        }

        It 'was printed by the guest script in the tree, to its end, on a guest with 5-level paging' {
            $facts.guest_rc | Should -Be '0'
            $facts.script_sha256 | Should -Be (Get-FileHash (Join-Path $vm 'la57-cmdlets.ps1') -Algorithm SHA256).Hash.ToLowerInvariant() -Because 'a changed guest script is recorded again (la57-cmdlets.sh)'
            $facts.setting | Should -Contain 'cpu_la57 1'
            $lines[0] | Should -Be 'pagesize 4096 la57 True'
            $lines[-1] | Should -Be 'done'
        }

        It 'every region was mapped where it was asked, and Get-MemoryMapping shows each exactly' {
            foreach ($name in $Regions.Keys) {
                $lines | Should -Contain $Regions[$name].Line
                $lines | Should -Contain "mapping $name 1"
            }
        }

        It 'Get-PageMap reads each page of each region as written, by range and over the whole process' {
            foreach ($name in $Regions.Keys) {
                $present = $Regions[$name].Present
                $lines | Should -Contain "getpagemap Pread $name present $present truth $present"
            }
            $lines | Should -Contain 'getpagemap Pread whole low 8 edge47 4 high 8 top56 16'
        }

        It 'Get-SoftDirtySupport finds PAGEMAP_SCAN and async write-protect from 6.7 on, guard regions (6.15) or not' {
            $expected = if ($facts.kernel -like '6.1.*') { 'support softdirty True pagemapscan False wpasync False' } else { 'support softdirty True pagemapscan True wpasync True' }
            $support | Should -Be $expected -Because "kernel $($facts.kernel) (6.12 has PAGEMAP_SCAN without PAGE_IS_GUARD: a probe that asked for that bit met EINVAL and said no PAGEMAP_SCAN, and WriteProtect was refused with it)"
        }

        It 'PAGEMAP_SCAN (Get-PageMap -ReadMethod PagemapScan, Search-PageMap) reads the same, or is refused where the kernel has none' {
            if ($support -like '* pagemapscan False *') {
                $lines | Where-Object { $_ -match '^(getpagemap PagemapScan|searchpagemap) ' -and $_ -notmatch ' PagemapScanNotSupported$' } | Should -BeNullOrEmpty
                return
            }
            foreach ($name in $Regions.Keys) {
                $present = $Regions[$name].Present
                $lines | Should -Contain "getpagemap PagemapScan $name present $present truth $present"
                $lines | Should -Contain "searchpagemap $name pages $(($present.ToCharArray() | Where-Object { $_ -eq '1' }).Count)"
            }
            $lines | Should -Contain 'getpagemap PagemapScan whole low 8 edge47 4 high 8 top56 16'
        }

        It 'Clear-SoftDirty clears every region, and a write sets exactly its page again' {
            $support | Should -BeLike 'support softdirty True *'
            $lines | Should -Contain 'clearsoftdirty none'
            $lines | Should -Contain 'softdirty after clear and a write to page 2 low 00100000'
            $lines | Should -Contain 'softdirty after clear and a write to page 2 edge47 0010'
            $lines | Should -Contain 'softdirty after clear and a write to page 2 high 0010000000000000'
            $lines | Should -Contain 'softdirty after clear and a write to page 2 top56 0010000000000000'
        }

        It 'every image, increment and migration that ran is valid and restores every page of every region' {
            $ran = @($lines | Where-Object { $_ -match '^(save|migrate) \S+ .*method ' })
            $ran.Count | Should -Be $(if ($support -like '* wpasync True') { 16 } else { 12 }) -Because 'Hash, SoftDirty and Auto (and WriteProtect where the kernel has async write-protect): a full image, two increments and a migration each'
            $ran | Where-Object { $_ -notmatch ' valid True .*restored low True edge47 True high True top56 True$' } | Should -BeNullOrEmpty
            $lines | Where-Object { $_ -like 'save * full method *' } | Where-Object { $_ -notmatch ' mappings-in-image True ' } | Should -BeNullOrEmpty
            # A refusal is only the method's own, where the kernel lacks it.
            $refused = @($lines | Where-Object { $_ -match '^(save|migrate|watch) ' -and $_ -notmatch ' method ' })
            $refused | Where-Object { $_ -notmatch '^\S+ WriteProtect .*WriteProtectNotSupported$' } | Should -BeNullOrEmpty
            if ($support -like '* wpasync True') { $refused | Should -BeNullOrEmpty }
        }

        It 'Watch-DirtyPage with each method sees the page written in ''high'' and ''top56'', and no range outside them' {
            $watched = @($lines | Where-Object { $_ -match '^watch \S+ (high|top56) method ' })
            $watched.Count | Should -Be $(if ($support -like '* wpasync True') { 8 } else { 6 })
            $watched | Where-Object { $_ -notmatch ' written-page-seen True ranges-outside 0$' } | Should -BeNullOrEmpty
        }

        It 'an image of these mappings is refused by the emulator (PlatformNotSupported), which is left as it was' {
            $lines | Should -Contain 'restore into the emulator PlatformNotSupported mappings after 0'
        }

        It 'the truth the script kept is what the process holds at the end' {
            foreach ($name in $Regions.Keys) { $lines | Should -Contain "truth $name matches the live bytes True" }
        }

        It 'booted again (SOFTDIRTY_KERNEL_MATRIX): the kernel prints what was recorded' -Tag 'KernelMatrix' {
            if (-not $env:SOFTDIRTY_KERNEL_MATRIX) { Set-ItResult -Skipped -Because 'SOFTDIRTY_KERNEL_MATRIX is not set: these boots run with the kernel matrix (build.ps1 KernelTest)'; return }
            $dir = Join-Path $PSScriptRoot '../results/kernel-matrix'
            $null = New-Item -ItemType Directory $dir -Force
            $output = Join-Path $dir "la57-cmdlets.$Id.txt"
            $kernel = if ($Id -eq '6.1') { @() } else { @($Id) }
            bash (Join-Path $vm 'la57-cmdlets.sh') $output @kernel | Write-Host
            $LASTEXITCODE | Should -Be 0
            [IO.File]::ReadAllText($output) | Should -BeExactly ([IO.File]::ReadAllText($Path))
        }
    }
}

Describe 'Round 29: the ends of the address space on this machine' -Tag 'Security', 'Round29La57' {
    It 'a range at the top page of a 4-level space, at [vsyscall], or that wraps past 2^64 is InvalidArgument, never a silent empty answer' -Skip:(-not $IsLinux) {
        $top = [uint64]0x7ffffffff000
        $vsyscall = 0xffffffffff600000u
        foreach ($cmdlet in 'Get-PageMap', 'Search-PageMap', 'Watch-DirtyPage') {
            $extra = if ($cmdlet -eq 'Watch-DirtyPage') { @{ Count = 1; Interval = 0.1; Method = 'Hash' } } else { @{} }
            # Nothing of this PowerShell is mapped there ([vsyscall] has no page table of its own, and is skipped).
            Get-Refusal { & $cmdlet -Id $PID -Address $top -Length 4096 @extra } | Should -Be 'InvalidArgument' -Because "$cmdlet at 0x7ffffffff000"
            Get-Refusal { & $cmdlet -Id $PID -Address $vsyscall -Length 4096 @extra } | Should -Be 'InvalidArgument' -Because "$cmdlet at [vsyscall]"
            Get-Refusal { & $cmdlet -Id $PID -Address ([uint64]::MaxValue) -Length 1 @extra } | Should -Be 'InvalidArgument' -Because "$cmdlet at 2^64 - 1"
            Get-Refusal { & $cmdlet -Id $PID -Address 0xfffffffffffff000u -Length 8192 @extra } | Should -Be 'InvalidArgument' -Because "$cmdlet past 2^64"
        }
    }

    It 'Search-PageMap with no category asks for those the kernel knows: on 6.12 (no guard regions) it was EINVAL' {
        # The categories the kernel's PAGEMAP_SCAN takes (KernelFeatures.PagemapScanCategories, internal: not part of the output).
        function Get-ScanCategories($Emulator) {
            $f = Get-SoftDirtySupport -Emulator $Emulator
            "$($f.GetType().GetProperty('PagemapScanCategories', [Reflection.BindingFlags]'Instance,Public,NonPublic').GetValue($f))"
        }
        $e = New-EmulatedProcess -Kernel 6.12
        $m = Add-EmulatedMapping -Emulator $e -Length 16384
        Write-EmulatedMemory -Emulator $e -Address $m.Start -Length 4096
        Get-ScanCategories $e | Should -Not -Match 'Guard' 
        $found = @($e | Search-PageMap -ErrorAction Stop)
        @($found | ForEach-Object { '{0:x}-{1:x} {2}' -f ($_.Start - $m.Start), ($_.End - $m.Start), $_.Categories }) |
            Should -Be @('0-1000 Written, Present, SoftDirty', '1000-4000 Written, SoftDirty')
        Get-ScanCategories (New-EmulatedProcess -Kernel 7.3) | Should -Match 'Guard' 
    }

    It 'the emulator maps up to its task size (2^47 - 4 KiB) and refuses a fixed mapping past it; a hint past it is placed below' {
        $e = New-EmulatedProcess
        $m = Add-EmulatedMapping -Emulator $e -Address ([uint64]0x7fffffffe000) -Length 4096 -Fixed
        '{0:x}-{1:x}' -f $m.Start, $m.End | Should -Be '7fffffffe000-7ffffffff000'
        foreach ($a in [uint64]0x7ffffffff000, [uint64]0x800000000000, [uint64]0x10000000000000, [uint64]0xfffffffffef000) {
            Get-Refusal { Add-EmulatedMapping -Emulator $e -Address $a -Length 4096 -Fixed } | Should -Be 'EmulatorNotMapped' -Because ('0x{0:x} lies past the 4-level task size (ENOMEM)' -f $a)
            $placed = Add-EmulatedMapping -Emulator $e -Address $a -Length 4096
            $placed.End | Should -BeLessOrEqual ([uint64]0x7ffffffff000) -Because 'a 4-level kernel takes a hint past the task size for none'
        }
        Get-Refusal { Write-EmulatedMemory -Emulator $e -Address ([uint64]0x7ffffffff000) -Length 1 } | Should -Be 'SegmentationFault'
    }
}
