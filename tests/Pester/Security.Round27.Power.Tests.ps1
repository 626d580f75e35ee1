#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 27 (Power): real power losses on a real kernel and file system. tests/vm/power-loss.sh gives the 6.1
# guest a disk (virtio-blk on a raw file, ext4 made on the host, qemu cache=writeback), runs saves (full, increments
# -Method SoftDirty and Hash), restores into files, receives and pre-copy migrations onto it in one pwsh, and SIGKILLs
# qemu a random delay after a random step began; after e2fsck the image is mounted read-only and PowerLossCheck.ps1 reads
# every result the console announced. Its print is recorded (tests/vm/recorded/power-loss.6.1.txt) and checked here
# everywhere: every line's verdict follows from its state by the rule, no line is a defect, every kind was hit. The
# checker's own rule is proved here on states made to break it (a checker that passes everything would pass the print).
# With SOFTDIRTY_KERNEL_MATRIX the power losses run for real (3 boots, 3-5 minutes each under TCG, each with 20 states
# replayed from its write log).

BeforeDiscovery {
    $VmSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not $env:SOFTDIRTY_KERNEL_MATRIX) { 'the power-loss boots run only with SOFTDIRTY_KERNEL_MATRIX set (about 3 minutes a boot under TCG); the recorded print is checked instead' }
    elseif ((id -u) -ne '0') { 'the power-loss boots mount the disk image through a loop device: root only' }
    elseif (-not (Get-Command qemu-system-x86_64, mkfs.ext4, e2fsck -CommandType Application -ErrorAction Ignore)) { 'qemu-system-x86_64, mkfs.ext4 or e2fsck is not installed' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:vm = Join-Path $PSScriptRoot '../vm'
    $script:checker = Join-Path $vm 'PowerLossCheck.ps1'
    # The verdict a result line must carry, from its state alone (the rule of PowerLossCheck.ps1, written again).
    function Get-Verdict([string] $Kind, [string] $How, [string] $State) {
        $returned = $How -eq 'returned'
        $ok = switch ($Kind) {
            'image' { $State -eq 'valid:same' -or (-not $returned -and ($State -eq 'absent' -or $State -match '^refused:Image[A-Za-z]+(\+Image[A-Za-z]+)*$')) }
            'restore' { $State -eq 'complete:same' -or (-not $returned -and $State -in 'absent', 'empty') }
            'migration' {
                $rounds = @(if ($State -notin 'absent', 'empty') { $State -split ',' })
                $whole = -not ($rounds | Where-Object { $_ -notmatch '^round-\d+=(valid:same|absent|refused:Image[A-Za-z+]+)$' })
                if ($returned) { $whole -and $rounds.Count -gt 0 -and $rounds[-1] -match '=valid:same$' } else { $whole }
            }
            default { $false }
        }
        if ($ok) { 'OK' } else { 'DEFECT' }
    }
    function Assert-PowerLossPrint([string[]] $Lines, [int] $MinimumKills, [int] $MinimumReplayed, [switch] $Coverage) {
        $results = @($Lines | Where-Object { $_ -like 'result *' })
        $kills = @($Lines | Where-Object { $_ -match '^power-loss: boot \d+ seed \d+ mount \S+: SIGKILL yes ' })
        $kills.Count | Should -BeGreaterOrEqual $MinimumKills
        # Each replayed state: its line, then the checker's lines for it; a state e2fsck could not repair is a defect line.
        $replayed = @($Lines | Where-Object { $_ -match '^state flush-request \d+ request \d+ (at-flush|torn kept \d+ of \d+) returned \[[0-9,]*\] e2fsck (\d+)$' })
        $replayed.Count | Should -BeGreaterOrEqual $MinimumReplayed
        @($Lines | Where-Object { $_ -like 'state *' }).Count | Should -Be $replayed.Count -Because 'every state line has the expected form'
        @($Lines | Where-Object { $_ -match '^replay: .* [1-9]\d* with a defect$' }) | Should -BeNullOrEmpty
        @($Lines | Where-Object { $_ -match '^power-loss: boot \d+ e2fsck exit code (\d+)$' -and [int]$Matches[1] -ge 4 }) | Should -BeNullOrEmpty -Because 'e2fsck repaired every image'
        $results.Count | Should -BeGreaterThan $kills.Count
        foreach ($r in $results) {
            $r | Should -Match '^result \d+ (image|restore|migration) \S+ (returned|in-flight|failed:\S+) \S+ (OK|DEFECT)( .*)?$'
            $w = $r -split ' '
            $w[6] | Should -Be (Get-Verdict $w[2] $w[4] $w[5]) -Because "the rule decides '$r'"
            $w[6] | Should -Be 'OK' -Because "a power loss broke nothing: '$r'"
        }
        if ($Coverage) {
            # The recorded print covers every kind, and not only results that were whole long before the kill: some were cut
            # (in flight at the kill). A live run of 3 boots may draw only early steps: it is held to the rule alone.
            foreach ($kind in 'image', 'restore', 'migration') {
                @($results | Where-Object { ($_ -split ' ')[2] -eq $kind }).Count | Should -BeGreaterThan 0 -Because "a $kind was checked"
            }
            @($results | Where-Object { ($_ -split ' ')[4] -eq 'in-flight' }).Count | Should -BeGreaterThan 0
        }
    }
}

Describe 'Round 27: a power loss of a real kernel while images, restores, receives and migrations are written' -Tag 'Security', 'Round27Power' {
    It 'the recorded power losses of the 6.1 guest: every result whole, refused or untouched, none lost once returned' {
        $print = Join-Path $vm 'recorded/power-loss.6.1.txt'
        Assert-PowerLossPrint (Get-Content -LiteralPath $print) 7 100 -Coverage
    }

    It 'the checker calls a defect what breaks the rule (states made to break it)' {
        $work = (New-Item -ItemType Directory (Join-Path $TestDrive 'r27p')).FullName
        $g = "$work/disk"; $null = New-Item -ItemType Directory $g
        $f = New-FilledEmulator
        $null = Save-MemoryImage -Emulator $f.Emulator -Path "$g/good"
        $null = Restore-MemoryImage -Path "$g/good" -Destination "$g/rest-good"
        $region = '{0:x12}-{1:x12}.bin' -f $f.Mapping.Start, ($f.Mapping.Start + $f.Mapping.Size)
        $h = (Get-FileHash -LiteralPath "$g/rest-good/$region" -Algorithm SHA256).Hash
        Copy-Item -Recurse "$g/good" "$g/trunc"
        $pages = Get-Item "$g/trunc/pages.bin"
        $stream = [IO.File]::Open($pages.FullName, 'Open', 'Write'); $stream.SetLength($pages.Length - 4096); $stream.Dispose()
        $null = New-Item -ItemType Directory "$g/rest-empty", "$g/rest-partial", "$g/mig"
        Copy-Item -LiteralPath "$g/rest-good/$region" "$g/rest-partial/"
        Copy-Item -Recurse "$g/good" "$g/mig/round-01"
        Copy-Item -Recurse "$g/trunc" "$g/mig/round-02"
        $other = 'AB' * 32
        $console = "$work/console.log"
        $steps = @(
            @(1, 'image', 'good', $h, $true), @(2, 'image', 'trunc', $h, $true), @(3, 'image', 'trunc', $h, $false),
            @(4, 'image', 'good', $other, $false), @(5, 'image', 'gone', $h, $true), @(6, 'image', 'gone', $h, $false),
            @(7, 'restore', 'rest-partial', $h, $false), @(8, 'restore', 'rest-empty', $h, $false), @(9, 'restore', 'rest-empty', $h, $true),
            @(10, 'restore', 'rest-good', $h, $true), @(11, 'restore', 'rest-good', $other, $false),
            @(12, 'migration', 'mig', $h, $true), @(13, 'migration', 'mig', $h, $false), @(14, 'migration', 'gone', $h, $true))
        @("PL REGION 1 $region"; foreach ($s in $steps) { "PL BEGIN $($s[0]) $($s[1]) /g/$($s[2]) $($s[3])"; if ($s[4]) { "PL END $($s[0]) 0.1" } }) | Set-Content -LiteralPath $console
        $lines = @(& $checker -Console $console -Root $g -GuestRoot /g -Module $module -Scratch "$work/scratch")
        $LASTEXITCODE | Should -Be 1
        $flags = @{}
        foreach ($l in $lines | Where-Object { $_ -like 'result *' }) { $w = $l -split ' '; $flags[[int]$w[1]] = "$($w[5]) $($w[6])" }
        $flags[1] | Should -Be 'valid:same OK'
        $flags[2] | Should -Match '^refused:Image\S+ DEFECT$'
        $flags[3] | Should -Match '^refused:Image\S+ OK$'
        $flags[4] | Should -Be "valid:other:$h DEFECT"
        $flags[5] | Should -Be 'absent DEFECT'
        $flags[6] | Should -Be 'absent OK'
        $flags[7] | Should -Be "partial:$region DEFECT"
        $flags[8] | Should -Be 'empty OK'
        $flags[9] | Should -Be 'empty DEFECT'
        $flags[10] | Should -Be 'complete:same OK'
        $flags[11] | Should -Be "complete:other:$h DEFECT"
        $flags[12] | Should -Match '^round-01=valid:same,round-02=refused:Image\S+ DEFECT$'
        $flags[13] | Should -Match '^round-01=valid:same,round-02=refused:Image\S+ OK$'
        $flags[14] | Should -Be 'absent DEFECT'
        # And the print's rule agrees with the checker on every one of them.
        foreach ($l in $lines | Where-Object { $_ -like 'result *' }) { $w = $l -split ' '; $w[6] | Should -Be (Get-Verdict $w[2] $w[4] $w[5]) -Because $l }
    }

    It 'power losses now: 3 boots of the 6.1 guest, each killed at a random step, and 20 states replayed from each boot''s write log' -Skip:([bool]$VmSkip) {
        $out = Join-Path $TestDrive 'power-loss.txt'
        # A fresh seed each run (the kill points and the region's bytes), named in the failure.
        $env:SOFTDIRTY_POWERLOSS_SEED = $seed = Get-Random -Minimum 1 -Maximum 1000000000
        $env:SOFTDIRTY_POWERLOSS_DIR = Join-Path $TestDrive 'vm'
        $env:SOFTDIRTY_POWERLOSS_LOG = 20
        try { $said = & bash (Join-Path $vm 'power-loss.sh') $out 3 2>&1 }
        finally { Remove-Item Env:SOFTDIRTY_POWERLOSS_SEED, Env:SOFTDIRTY_POWERLOSS_DIR, Env:SOFTDIRTY_POWERLOSS_LOG }
        $LASTEXITCODE | Should -Be 0 -Because "seed ${seed}: $($said | Select-Object -Last 30 | Out-String)"
        Assert-PowerLossPrint (Get-Content -LiteralPath $out) 3 60
    }
}
