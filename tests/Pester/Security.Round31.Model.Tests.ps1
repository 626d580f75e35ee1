#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, thirty-first attack round: the round 30 model runner (Round30Model.ps1) where round 30 left gaps
# (Round31Model.ps1): THP regions, MADV_HUGEPAGE / MADV_NOHUGEPAGE of whole regions and of parts (VMA splits),
# MADV_COLLAPSE, splits, partial mprotect/munmap/madvise of a huge page, under the seed's THP mode on every profile and on
# the real process whatever the host's mode; MAP_PRIVATE and MAP_SHARED of the same file, a private write (a copy), the
# file written underneath (through the shared mapping; with pwrite(2) on the real one), MADV_DONTNEED of a copy; every image
# of the chains received, on the emulator and the real process (Receive-MemoryImage, increments on their received parents,
# some streams first cut short, an increment without its parent); the real file truncated (sdtarget truncate); and a per-operation timeout: each sequence runs in a runspace of its own, and an operation
# longer than SOFTDIRTY_R31MODEL_OPTIMEOUT seconds (default 120) fails the case naming the step and the operation.
# CI runs a few seeds; SOFTDIRTY_R31MODEL_SEEDS=N runs N more (from SOFTDIRTY_R31MODEL_FIRST, default 2000) on the emulator
# and SOFTDIRTY_R31MODEL_REAL_SEEDS=N more on the real process; SOFTDIRTY_R31MODEL_LENGTH sets the operations per sequence.

BeforeDiscovery {
    $R31ModelSeeds = @(10, 14)
    if ($env:SOFTDIRTY_R31MODEL_SEEDS) {
        $first = if ($env:SOFTDIRTY_R31MODEL_FIRST) { [int]$env:SOFTDIRTY_R31MODEL_FIRST } else { 2000 }
        $R31ModelSeeds += $first..($first + [int]$env:SOFTDIRTY_R31MODEL_SEEDS - 1)
    }
    $R31ModelCases = @($R31ModelSeeds | ForEach-Object { @{ Seed = $_ } })
    $R31ModelRealSeeds = @(2)
    if ($env:SOFTDIRTY_R31MODEL_REAL_SEEDS) {
        $first = if ($env:SOFTDIRTY_R31MODEL_FIRST) { [int]$env:SOFTDIRTY_R31MODEL_FIRST } else { 2000 }
        $R31ModelRealSeeds += $first..($first + [int]$env:SOFTDIRTY_R31MODEL_REAL_SEEDS - 1)
    }
    $R31ModelRealCases = @($R31ModelRealSeeds | ForEach-Object { @{ Seed = $_ } })
    $R31ModelRealSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Test-Path (Join-Path $PSScriptRoot '../native/bin/sdtarget'))) { 'tests/native/bin/sdtarget is not built (build.ps1 Native needs a C compiler)' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    . (Join-Path $PSScriptRoot 'Round31Model.ps1')
    $script:R31ModelRoot = (New-Item -ItemType Directory (Join-Path $TestDrive 'r31model')).FullName
    $script:R31ModelLength = if ($env:SOFTDIRTY_R31MODEL_LENGTH) { [int]$env:SOFTDIRTY_R31MODEL_LENGTH } else { 40 }
    function Format-R31Failure($err) {
        $ops = $err.Exception.Data['Ops']
        $text = if ($ops) { ($ops | ForEach-Object { Format-R30Op $_ }) -join "`n" } else { '' }
        "$($err.Exception.Message)`noperations:`n$text"
    }
}

Describe 'Round 31: model sequences with THP, files and receives on the emulator' -Tag 'Security', 'Round31Model' {
    It 'seed <Seed>: every image, and every received image, restores to the memory the model says the save read' -TestCases $R31ModelCases {
        param($Seed)
        $dir = Join-Path $R31ModelRoot "seed$Seed"
        $ctx = $null
        try { $ctx = Invoke-R31Guarded Invoke-R31ModelSeed @{ Seed = $Seed; Root = $dir; Length = $R31ModelLength } }
        catch { throw (Format-R31Failure $_) }
        $ctx.Checked.Saves | Should -BeGreaterThan 0
        $ctx.Checked.Receives | Should -BeGreaterThan 0
        Remove-Item -LiteralPath $dir -Recurse -Force
    }
}

Describe 'Round 31: model sequences with THP regions and files on a real process' -Tag 'Security', 'Round31Model' -Skip:([bool]$R31ModelRealSkip) {
    It 'seed <Seed>: every image of the real process restores to the memory the model says the save read' -TestCases $R31ModelRealCases {
        param($Seed)
        $dir = Join-Path $R31ModelRoot "real$Seed"
        $ctx = $null
        try { $ctx = Invoke-R31Guarded Invoke-R31RealSeed @{ Seed = $Seed; Root = $dir; Length = 30 } }
        catch { throw (Format-R31Failure $_) }
        $ctx.Checked.Saves | Should -BeGreaterThan 0
        Remove-Item -LiteralPath $dir -Recurse -Force
    }
}

Describe 'Round 31: the runner''s per-operation timeout' -Tag 'Security', 'Round31Model' {
    It 'an operation that does not end fails the run, named by its step and operation, and shrinks to itself' {
        # 'sleep' is the runner's own check (an operation that hangs); the timeout is one second, the sleep an hour.
        $ops = @(
            @{ Op = 'map'; Addr = [uint64]0x7e0000000000; Pages = 4; Prot = 3; Shared = $false }
            @{ Op = 'sleep'; Seconds = 3600 }
            @{ Op = 'write'; Target = 'parent'; Addr = [uint64]0x7e0000000000; Length = [uint64]4096; Value = [byte]1; Pages = 1 })
        $dir = Join-Path $R31ModelRoot 'hang'
        $err = $null
        try { $null = Invoke-R31Guarded Invoke-R31ModelOps @{ Ops = $ops; Root = $dir } 1 } catch { $err = $_ }
        $err | Should -Not -BeNullOrEmpty
        $err.Exception.Message | Should -BeLike 'step 1 did not end within 1 s (a hang): *Op=sleep*'
        $err.Exception.Data['Hung'] | Should -Be 1
        $shrunk = Get-R31ShrunkOps @($err.Exception.Data['Ops']) $dir -TimeoutSeconds 1 -Hang -Budget 4
        $shrunk.Count | Should -Be 1
        $shrunk[0].Op | Should -Be 'sleep'
    }
}

Describe 'Round 31: MADV_HUGEPAGE and MADV_NOHUGEPAGE in the emulator, as the kernel has them' -Tag 'Security', 'Round31Model' {
    # The emulator took VM_HUGEPAGE only at mmap (-HugePage) and had no VM_NOHUGEPAGE, so the model runs could not mark a
    # region or part of one. mm/khugepaged.c hugepage_madvise: MADV_HUGEPAGE sets VM_HUGEPAGE and clears VM_NOHUGEPAGE,
    # MADV_NOHUGEPAGE the other way round, on any VMA (split at the range); a VM_NOHUGEPAGE VMA maps no THP on a fault
    # whatever the mode, and MADV_COLLAPSE refuses it (EINVAL: the THP checks refuse VM_NOHUGEPAGE even where the
    # collapse ignores the sysfs mode). Each failed before (no such -Advice).
    It 'under <Mode>, after <Advice> a write to an aligned 2 MiB <Maps>' -TestCases @(
        @{ Mode = 'Always'; Advice = 'NoHugePage'; Maps = 'maps no huge page'; HugeKb = 0 }
        @{ Mode = 'Madvise'; Advice = 'HugePage'; Maps = 'maps a huge page'; HugeKb = 2048 }
        @{ Mode = 'Never'; Advice = 'HugePage'; Maps = 'maps no huge page'; HugeKb = 0 }
    ) {
        param($Mode, $Advice, $Maps, $HugeKb)
        $e = New-EmulatedProcess -Kernel 6.18 -TransparentHugePages $Mode -Name r31thp
        $m = $e | Add-EmulatedMapping -Address 0x7e0000000000 -Fixed -Length 2MB
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length 2MB -Advice $Advice
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value 1
        $flags = @($e | Get-MemoryMapping | Where-Object Start -EQ $m.Start)
        $flags.Count | Should -Be 1
        @($e | Get-PageMap -Address $m.Start -Length 2MB | Where-Object Present).Count | Should -Be $(if ($HugeKb) { 512 } else { 1 })
    }
    It 'a part marked NoHugePage is a VMA of its own, and MADV_COLLAPSE of it is InvalidArgument' {
        $e = New-EmulatedProcess -Kernel 6.18 -TransparentHugePages Madvise -Name r31thp
        $m = $e | Add-EmulatedMapping -Address 0x7e0000000000 -Fixed -Length 4MB -HugePage
        $e | Invoke-EmulatedMadvise -Address ($m.Start + 2MB) -Length 2MB -Advice NoHugePage
        @($e | Get-MemoryMapping | Where-Object { $_.Start -ge $m.Start -and $_.Start -lt $m.Start + 4MB }).Count | Should -Be 2
        { $e | Invoke-EmulatedMadvise -Address ($m.Start + 2MB) -Length 2MB -Advice Collapse -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.InvokeEmulatedMadviseCommand'
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length 2MB -Advice Collapse
        $e | Invoke-EmulatedMadvise -Address ($m.Start + 2MB) -Length 2MB -Advice HugePage
        @($e | Get-MemoryMapping | Where-Object { $_.Start -ge $m.Start -and $_.Start -lt $m.Start + 4MB }).Count | Should -Be 1
        $e | Invoke-EmulatedMadvise -Address ($m.Start + 2MB) -Length 2MB -Advice Collapse
    }
    It 'the host kernel refuses MADV_COLLAPSE of a MADV_NOHUGEPAGE region and takes it after MADV_HUGEPAGE, as the emulator does' -Skip:([bool]$R31ModelRealSkip) {
        $t = Start-TestTarget
        try {
            $a = [Convert]::ToUInt64($t.Send('mapthp 1'), 16)
            $null = $t.Send(('write {0:x} 0 512' -f $a))
            $null = $t.Send(('madvise {0:x} 512 hugepage' -f $a))
            $probe = $t.TrySend(('madvise {0:x} 512 collapse' -f $a))
            if ($probe -notmatch '^OK') { Set-ItResult -Skipped -Because "this kernel has no MADV_COLLAPSE of a MADV_HUGEPAGE region (6.1+ with THP): $probe"; return }
            $null = $t.Send(('madvise {0:x} 512 nohugepage' -f $a))
            $t.TrySend(('madvise {0:x} 512 collapse' -f $a)) | Should -BeLike 'ERR EINVAL*'
            $null = $t.Send(('madvise {0:x} 512 hugepage' -f $a))
            $t.TrySend(('madvise {0:x} 512 collapse' -f $a)) | Should -Match '^OK|^ERR (EAGAIN|ENOMEM)'
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 31: shrunk sequences kept as named cases' -Tag 'Security', 'Round31Model' {
    # Seed 2006 (7.2, THP always): a guard region in a 2 MiB mapping, saved and restored into an emulated process, which
    # installs the guards again (Restore-MemoryImage, documented); round 30's runner read the whole restored mapping and
    # took the guard's fault for a failure of the restore. The runner now reads around the guards (zeros, as the model and
    # the restored file hold). It failed before the runner's fix (SegmentationFault in r30copy).
    It '<Name>' -TestCases @(
        @{ Name = 'a guard region in a 2 MiB mapping, restored into an emulated process (7.2, THP always)'; Kernel = '7.2'; Thp = 'Always'; Ops = @(
                @{ Op = 'map'; Addr = [uint64]0x7e0000600000; Pages = 512; Prot = 3; Shared = $false }
                @{ Op = 'madvise'; Addr = [uint64]0x7e0000743000; Pages = 10; Advice = 'GuardInstall' }
                @{ Op = 'save'; Chain = 'A'; Full = $false; Method = 'Auto'; Verify = $false; Emulator = $true }) }
    ) {
        param($Name, $Kernel, $Thp, $Ops)
        $dir = Join-Path $R31ModelRoot ('named' + [guid]::NewGuid().ToString('N'))
        $ctx = Invoke-R31Guarded Invoke-R31ModelOps @{ Ops = $Ops; Root = $dir; Kernel = $Kernel; Thp = $Thp }
        $ctx.Checked.Saves | Should -Be 1
        $ctx.Checked.EmulatorRestores | Should -Be 1
        Remove-Item -LiteralPath $dir -Recurse -Force
    }
}
