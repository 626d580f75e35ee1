#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 28 (Arm): the cmdlets under PowerShell on arm64, where features differ from x86-64: Debian's arm64 kernels
# (4 KiB and 16 KiB pages, 7.2) are built without soft-dirty (clear_refs "4" is accepted, bit 55 never set), and syscall
# injection (WriteProtect of another process, Enable-WriteTracking) is x86-64 only. tests/vm/arm64-cmdlets.sh boots each
# kernel of tests/vm/arm64-cmdlets.list under qemu-system-aarch64 with the linux-arm64 .NET runtime, PowerShell 7.6.9 and
# the module, and runs tests/vm/arm64-cmdlets.ps1 there as root and as uid 1000: Get-PageMap (pread and PAGEMAP_SCAN),
# Clear-SoftDirty, Watch-DirtyPage, Save/Test/Restore-MemoryImage (a full image and two increments), Invoke-PreCopyMigration
# to a folder, each with each method, -Freeze, Enable-WriteTracking and WriteProtect of PowerShell's own memory. Its prints
# (tests/vm/recorded/arm64-cmdlets.<id>.txt) are checked here against the rules everywhere; with SOFTDIRTY_KERNEL_MATRIX the
# kernels boot again and must print the same. Found: nothing (every refusal is the method's ErrorId, Auto takes Hash for
# another process and WriteProtect for its own, every chain and migration restores the live bytes).

BeforeDiscovery {
    # Each recording holds a run as root, then one as uid 1000 (its lines prefixed "user ").
    $script:Runs = @(@{ Prefix = ''; Who = 'root' }, @{ Prefix = 'user '; Who = 'uid 1000' })
    $script:Recorded = @(Get-ChildItem (Join-Path $PSScriptRoot '../vm/recorded') -Filter 'arm64-cmdlets.*.txt' |
        ForEach-Object { @{ Id = $_.Name -replace '^arm64-cmdlets\.|\.txt$'; Path = $_.FullName } })
}

BeforeAll {
    $script:vm = Join-Path $PSScriptRoot '../vm'
    # The recorded lines of one user ('' root, 'user ' uid 1000), without that prefix.
    function Get-RunLines([string] $Path, [string] $Prefix) {
        $lines = [IO.File]::ReadAllLines($Path)
        if ($Prefix) { @($lines | Where-Object { $_.StartsWith($Prefix) } | ForEach-Object { $_.Substring($Prefix.Length) }) }
        else { @($lines | Where-Object { -not $_.StartsWith('user ') }) }
    }
    function Get-Facts([string] $Path) {
        $facts = @{}
        foreach ($line in [IO.File]::ReadAllLines("$Path.facts")) { $k, $v = $line -split ' ', 2; $facts[$k] = $v }
        $facts
    }
}

Describe 'Round 28: the cmdlets on arm64 kernels (recorded under qemu)' -Tag 'Security', 'Round28Arm' {
    It 'there is a recording of each kernel of arm64-cmdlets.list' {
        $ids = @(Get-Content (Join-Path $vm 'arm64-cmdlets.list') | Where-Object { $_ -match '^\S' -and $_ -notmatch '^#' } | ForEach-Object { ($_ -split '\s+')[0] })
        $ids | Should -Not -BeNullOrEmpty
        @($Recorded | ForEach-Object Id | Sort-Object) | Should -Be @($ids | Sort-Object)
    }

    Context '<Id>' -ForEach $Recorded {
        BeforeAll { $script:facts = Get-Facts $Path }

        It 'was printed by the guest script in the tree, to its end, as root and as uid 1000' {
            $facts.guest_rc | Should -Be '0'
            $facts.script_sha256 | Should -Be (Get-FileHash (Join-Path $vm 'arm64-cmdlets.ps1') -Algorithm SHA256).Hash.ToLowerInvariant() -Because 'a changed guest script is recorded again (arm64-cmdlets.sh)'
            foreach ($prefix in '', 'user ') { (Get-RunLines $Path $prefix)[-1] | Should -Be 'done' -Because "the $(if ($prefix) { 'unprivileged' } else { 'root' }) run ends" }
        }

        It 'runs on arm64 with the kernel''s page size, and probes soft-dirty as the kernel was built (<Who>)' -ForEach $Runs {
            $lines = Get-RunLines $Path $Prefix
            $lines[0] | Should -Be "arch Arm64 pagesize $($facts.page_size)"
            $support = $lines | Where-Object { $_ -like 'support softdirty *' }
            $support | Should -BeLike "support softdirty $([bool][int]$facts.config_soft_dirty) *"
        }

        It 'Get-PageMap reads the same bits by pread and by PAGEMAP_SCAN (<Who>)' -ForEach $Runs {
            $lines = Get-RunLines $Path $Prefix
            $pread = $lines | Where-Object { $_ -like 'getpagemap Pread *' }
            $scan = $lines | Where-Object { $_ -like 'getpagemap PagemapScan *' }
            $pread | Should -BeLike 'getpagemap Pread present 11111111 *'
            ($scan -replace '^getpagemap PagemapScan ') | Should -Be ($pread -replace '^getpagemap Pread ')
        }

        It 'without soft-dirty, every SoftDirty command refuses (never zero changed pages) (<Who>)' -ForEach $Runs {
            if ($facts.config_soft_dirty -ne '0') { Set-ItResult -Skipped -Because "kernel $($facts.kernel) has soft-dirty"; return }
            $lines = Get-RunLines $Path $Prefix
            $lines | Should -Contain 'clearsoftdirty SoftDirtyNotSupported'
            $lines | Should -Contain 'after clear and a write to page 3: present 11111111 softdirty 00000000 exclusive 11111111'
            foreach ($what in 'watch SoftDirty', 'save SoftDirty full', 'migrate SoftDirty') { $lines | Should -Contain "$what SoftDirtyNotSupported" }
            $lines | Where-Object { $_ -match ' method SoftDirty ' } | Should -BeNullOrEmpty
        }

        It 'WriteProtect of another process is WriteProtectNotSupported (no injection off x86-64), and Auto takes Hash (<Who>)' -ForEach $Runs {
            $lines = Get-RunLines $Path $Prefix
            foreach ($what in 'watch WriteProtect', 'save WriteProtect full', 'migrate WriteProtect', 'enable-writetracking') { $lines | Should -Contain "$what WriteProtectNotSupported" }
            $lines | Should -Contain 'watch Auto method Hash page6 True'
            @($lines | Where-Object { $_ -like 'save Auto *' }) | Should -Be @(
                'save Auto full method Hash kind Full valid True restored-equal True'
                'save Auto increment 1 method Hash kind Incremental data True valid True restored-equal True'
                'save Auto increment 2 method Hash kind Incremental data True valid True restored-equal True')
            $lines | Should -Contain 'migrate Auto method Hash converged True valid True restored-equal True'
        }

        It 'every chain and migration that ran is valid and restores the live bytes, -Freeze included (<Who>)' -ForEach $Runs {
            $lines = Get-RunLines $Path $Prefix
            $ran = @($lines | Where-Object { $_ -match '^(save|migrate) \S+ .*method ' })
            $ran.Count | Should -Be 8 -Because 'Hash and Auto: a full image, two increments and a migration each'
            $ran | Where-Object { $_ -notmatch ' valid True restored-equal True$' } | Should -BeNullOrEmpty
            $lines | Should -Contain 'save -Freeze none'
            $lines | Should -Contain 'save Hash increment 2 method Hash kind Incremental data True valid True restored-equal True'
        }

        It 'this process''s own memory: WriteProtect through its own userfaultfd sees the page written (<Who>)' -ForEach $Runs {
            $lines = Get-RunLines $Path $Prefix
            if (-not ($lines | Where-Object { $_ -like 'support * wpasync True *' })) { Set-ItResult -Skipped -Because 'this kernel offers no async write-protect'; return }
            $lines | Should -Contain 'watch self Auto method WriteProtect page3 True'
            $lines | Should -Contain 'watch self WriteProtect method WriteProtect page3 True'
            $lines | Should -Contain 'watch self Hash method Hash page3 True'
            $lines | Should -Contain 'watch Hash method Hash page6 True'
        }

        It 'booted again (SOFTDIRTY_KERNEL_MATRIX): the kernel prints what was recorded' -Tag 'KernelMatrix' {
            if (-not $env:SOFTDIRTY_KERNEL_MATRIX) { Set-ItResult -Skipped -Because 'SOFTDIRTY_KERNEL_MATRIX is not set: these boots run with the kernel matrix (build.ps1 KernelTest)'; return }
            $dir = Join-Path $PSScriptRoot '../results/kernel-matrix'
            $null = New-Item -ItemType Directory $dir -Force
            $output = Join-Path $dir "arm64-cmdlets.$Id.txt"
            bash (Join-Path $vm 'arm64-cmdlets.sh') $Id $output | Write-Host
            $LASTEXITCODE | Should -Be 0
            [IO.File]::ReadAllText($output) | Should -BeExactly ([IO.File]::ReadAllText($Path))
        }
    }
}
