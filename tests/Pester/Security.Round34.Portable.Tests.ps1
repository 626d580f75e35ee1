#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 34 (Portable): the test suite and the module on another machine: another temporary file system, another
# kernel build, another culture, umask, HOME and PATH.
# Found (wrong answer, a differential that held on one machine only): the host differential of the emulator (round 33,
# tests/scenarios/host) compared the kernel with an emulator whose file fault-around always mapped the whole 64 KiB
# window, as readahead of a disk file system makes it; on tmpfs (shmem_fault, no readahead) a read fault maps around only
# the pages already cached, so four truncation scenarios differed wherever the temporary folder was tmpfs (the 6.1 VM's
# /tmp). sdscenario made its file in /tmp whatever TMPDIR said, so nothing could test it elsewhere. Now the emulator has
# the rule (EmulatedFileSystem.Tmpfs: fault-around maps only cached pages, as for shared anonymous memory), sdscenario
# uses $TMPDIR, and the test kit probes the folder's mount (ScenarioTempFolder: fdinfo mnt_id, mountinfo, the backing
# device's read_ahead_kb) and skips file scenarios, with the evidence, where the file system is not modelled. Before: with
# TMPDIR on a tmpfs, 4 of the 30 host scenarios differed (r33-truncate-shared/-private/-fork, r33-trunc-partial-vma); the
# recorded 6.1 prints (tmpfs) now match all 30 on the Tmpfs model (xunit), where 4 were left out.
# Found (wrong answer): the Host profile took mseal(2) from the release profile at or below the kernel's version, so a 6.10
# or 6.11 kernel (release profile 6.1) was emulated without mseal: a seal the kernel performed failed with ENOSYS in the
# emulator. mseal is now probed (Get-SoftDirtySupport rule HasMseal: mseal(0, 0, 1), EINVAL where it exists, nothing
# sealed). Before, the rule was missing and the profile's value came from the version.
# Found (test suite): without util-linux's unshare or setpriv, Round 21 State failed discovery and Round 23 Device, Round 6
# Images (two cases) and Round 29 ErrA failed with CommandNotFoundException: they now skip with the reason. Workflows.Security
# cleared the soft-dirty bits of pid 2 whatever it was: now only where it is kthreadd (in a pid namespace it can be ours).
# Held: the cmdlets under tr-TR, de-DE and ar-SA (manifests, SVG charts and parsing invariant; only format views follow the
# culture) and 9 Pester files under LANG tr_TR/ar_SA; umask 000 and 077 (images, restores, charts 0600, folders 0700); HOME
# unset, relative or missing; the FUSE, strace and gdb cases probe before they run; THP and pid 1/2 assumptions are probed.
# Random: 900 scenarios with file mappings and truncation (seeds 3401-3403) and the 65 hand-written ones matched on tmpfs.

Describe 'Round 34: the host differential on the file system of the temporary folder' -Tag 'Round34Portable', 'Security' -Skip:(-not $IsLinux) {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state34portable'
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        $script:R34PortableProgram = Join-Path $PSScriptRoot '../native/bin/sdscenario'
        $script:R34PortableHost = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Load((Join-Path $PSScriptRoot '../scenarios/host'))
        # A tmpfs of our own as root (removed in AfterAll); else /dev/shm where it is a writable tmpfs.
        $script:R34PortableMount = $null
        $script:R34PortableTmpfs = $null
        $root = (id -u) -eq '0'
        if ($root) {
            $dir = New-Item -ItemType Directory (Join-Path $TestDrive 'r34portable-tmpfs')
            mount -t tmpfs -o size=16m,mode=1777 r34portable $dir.FullName 2>$null
            if ($LASTEXITCODE -eq 0) { $script:R34PortableMount = $dir.FullName; $script:R34PortableTmpfs = $dir.FullName }
        }
        if (-not $R34PortableTmpfs -and (Test-Path /dev/shm) -and [SoftDirty.TestKit.Scenarios.ScenarioTempFolder]::Probe('/dev/shm').FileSystem -eq 'Tmpfs') {
            $probeFile = Join-Path /dev/shm "r34portable-$PID"
            try { [IO.File]::WriteAllText($probeFile, 'x'); Remove-Item $probeFile; $script:R34PortableTmpfs = '/dev/shm' } catch { }
        }
        function Invoke-R34PortableWithTmpDir([string] $Folder, [scriptblock] $Body) {
            $saved = $env:TMPDIR
            $env:TMPDIR = $Folder
            try { & $Body } finally { $env:TMPDIR = $saved }
        }
        function Assert-R34PortableMatched($result, [string] $what) {
            $because = if ($result.FirstMismatch) { "$what differ ($($result.Differing) of $($result.Scenarios)):`n$($result.FirstMismatch)" } else { '' }
            $result.Matched | Should -BeTrue -Because $because
        }
    }
    AfterAll {
        if ($R34PortableMount) { umount $R34PortableMount 2>$null }
    }

    It 'probes a tmpfs as Tmpfs, by its mount' {
        if (-not $R34PortableTmpfs) { Set-ItResult -Skipped -Because 'no tmpfs to use (not root, and /dev/shm is not a writable tmpfs)'; return }
        $probe = [SoftDirty.TestKit.Scenarios.ScenarioTempFolder]::Probe($R34PortableTmpfs)
        $probe.FileSystem | Should -Be 'Tmpfs'
        $probe.Evidence | Should -Match 'tmpfs on '
        Invoke-R34PortableWithTmpDir $R34PortableTmpfs { [SoftDirty.TestKit.Scenarios.ScenarioTempFolder]::Probe().Path | Should -BeLike "$R34PortableTmpfs*" }
    }

    It 'with TMPDIR on a tmpfs, prints what the kernel prints for every host scenario (and the disk model would not)' {
        if (-not $R34PortableTmpfs) { Set-ItResult -Skipped -Because 'no tmpfs to use (not root, and /dev/shm is not a writable tmpfs)'; return }
        Invoke-R34PortableWithTmpDir $R34PortableTmpfs {
            $result = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::CompareHost($R34PortableProgram, $R34PortableHost)
            Assert-R34PortableMatched $result "with TMPDIR=$R34PortableTmpfs, the host scenarios"
            $result.Scenarios | Should -Be $R34PortableHost.Count
            # The rule decided something here: the same kernel prints against the disk model differ.
            $disk = [SoftDirty.TestKit.Scenarios.EmulatedScenarioRunner]::new([SoftDirty.Emulation.KernelProfile]::Get('Host'), 'Disk')
            $onDisk = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Compare([SoftDirty.TestKit.Scenarios.NativeScenarioRunner]::new($R34PortableProgram), $disk, $R34PortableHost, $false)
            $onDisk.Differing | Should -BeGreaterThan 0
            @($onDisk.DifferingNames | Where-Object { $n = $_; -not ($R34PortableHost | Where-Object { $_.Name -eq $n -and $_.MapsFile }) }).Count | Should -Be 0 -Because 'only scenarios that map the file depend on its file system'
        }
    }

    It 'with TMPDIR on a tmpfs, matches on 150 random scenarios with file mappings and truncation' {
        if (-not $R34PortableTmpfs) { Set-ItResult -Skipped -Because 'no tmpfs to use (not root, and /dev/shm is not a writable tmpfs)'; return }
        $support = Get-SoftDirtySupport
        $scenarios = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Random(34, 150, $true, ($support.PagemapScan -and $support.UffdWriteProtectAsync), $true)
        @($scenarios | Where-Object MapsFile).Count | Should -BeGreaterThan 0
        Invoke-R34PortableWithTmpDir $R34PortableTmpfs {
            Assert-R34PortableMatched ([SoftDirty.TestKit.Scenarios.ScenarioDifferential]::CompareHost($R34PortableProgram, $scenarios)) 'random scenarios of seed 34 on tmpfs'
        }
    }

    It 'in the default temporary folder, prints what the kernel prints for every host scenario (or says why the file system is not modelled)' {
        $probe = [SoftDirty.TestKit.Scenarios.ScenarioTempFolder]::Probe()
        $scenarios = [System.Collections.Generic.List[SoftDirty.TestKit.Scenarios.Scenario]]::new()
        foreach ($s in $R34PortableHost) { if ($null -ne $probe.FileSystem -or -not $s.MapsFile) { $scenarios.Add($s) } }
        $result = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::CompareHost($R34PortableProgram, $scenarios)
        Assert-R34PortableMatched $result "in $($probe.Path) ($($probe.Evidence)), the host scenarios"
        if ($null -eq $probe.FileSystem) { Set-ItResult -Skipped -Because "the file scenarios were left out: $($probe.Evidence)" }
    }

    It 'refuses a file scenario where the file system is not modelled, rather than compare it on a guess' {
        # A folder on sysfs/proc cannot hold the file, but it can be probed: no readahead device, no tmpfs.
        $probe = [SoftDirty.TestKit.Scenarios.ScenarioTempFolder]::Probe('/proc')
        $probe.FileSystem | Should -BeNullOrEmpty
        $probe.Evidence | Should -Match 'proc'
    }
}

Describe 'Round 34: mseal(2) is probed, not taken from the kernel version' -Tag 'Round34Portable', 'Security' -Skip:(-not $IsLinux) {
    BeforeAll {
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state34portable-mseal'
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        $script:R34PortableProgram = Join-Path $PSScriptRoot '../native/bin/sdscenario'
    }

    It 'reports HasMseal as the kernel answers a seal, and the Host profile seals likewise' {
        $rule = (Get-SoftDirtySupport).Rules | Where-Object Name -EQ 'HasMseal'
        $rule | Should -Not -BeNullOrEmpty
        $rule.Evidence | Should -Match '^mseal\(0, 0, 1\): '
        $s = [SoftDirty.TestKit.Scenarios.Scenario]::Parse("scenario m`nreserve 2`nmap 0 2 rw anon`nseal 0 1`nunmap 0 2`ncheck`nend`n")
        $print = [SoftDirty.TestKit.Scenarios.NativeScenarioRunner]::new($R34PortableProgram).Run($s)[0]
        $kernelHas = $print -notmatch '(?m)^op \d+ ENOSYS$'
        $rule.Value | Should -Be "$kernelHas"
        ([SoftDirty.Emulation.KernelProfile]::Get('Host')).HasMseal | Should -Be $kernelHas
        $e = New-EmulatedProcess -Kernel Host -NoSoftDirty
        $a = ($e | Add-EmulatedMapping -Length 8192).Start
        $err = $null
        $e | Invoke-EmulatedMadvise -Address $a -Length 4096 -Advice Seal -ErrorVariable err -ErrorAction SilentlyContinue
        ($err.Count -eq 0) | Should -Be $kernelHas
    }
}
