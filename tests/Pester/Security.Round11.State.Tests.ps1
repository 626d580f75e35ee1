#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, eleventh attack round, on the state the module keeps outside images (new cases only; rounds 2-10 are in
# Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1; the epoch folder over logins, root
# acting for another user and what that user plants are in tests/SoftDirty.Engine.Tests/Tracking/StateRound11Tests.cs).
# Here: one emulated process used from several runspaces at once (thread jobs) while image chains of it are saved.

BeforeDiscovery {
    $ThreadJobSkip = if (-not (Get-Command Start-ThreadJob -ErrorAction SilentlyContinue)) { 'Start-ThreadJob is not available in this PowerShell' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r11s')
    $script:Pages = 256

    # Restores $Image and returns the SHA-256 of each restored mapping file, by name.
    function script:Get-RestoredHash([string] $Image, [string] $Destination) {
        $null = Restore-MemoryImage -Path $Image -Destination $Destination -Confirm:$false
        $h = @{}
        Get-ChildItem $Destination -Filter *.bin | ForEach-Object { $h[$_.Name] = (Get-FileHash $_.FullName).Hash }
        $h
    }

    # Asserts that the chain ending at $Last restores what a full image of the same (now quiet) process restores.
    function script:Assert-SameAsFull([string] $Last, [string] $Full, [string] $Name) {
        Test-MemoryImage -Path $Last | Should -BeTrue
        $a = Get-RestoredHash $Last (Join-Path $root "restored-$Name-chain")
        $b = Get-RestoredHash $Full (Join-Path $root "restored-$Name-full")
        $a.Count | Should -Be $b.Count
        foreach ($k in $b.Keys) { $a[$k] | Should -Be $b[$k] -Because "mapping $k of the chain's last increment" }
    }

    # A thread job that writes pages of $Emulator with changing values (and copies it) until $Stop is set (it sets $Started
    # after its first write); returns its loop count.
    $script:Writer = {
        param($Emulator, [uint64] $Start, [int] $Pages, $Stop, $Started, [string] $Module)
        Import-Module $Module
        $rng = [System.Random]::new(11)
        $i = 0
        while ($i -eq 0 -or -not $Stop.IsSet) {
            $i++
            $page = [uint64]$rng.Next(0, $Pages)
            Write-EmulatedMemory -Emulator $Emulator -Address ($Start + $page * 4KB) -Length 64 -Value ([byte]($i % 251 + 1)) -Confirm:$false
            if ($i % 50 -eq 0) { $null = Copy-EmulatedProcess -Emulator $Emulator -Confirm:$false }
            $Started.Set()
        }
        $i
    }

    # Starts the writer on $F (New-FilledEmulator) and waits until it writes; returns the job.
    function script:Start-Writer($F, $Stop) {
        $started = [System.Threading.ManualResetEventSlim]::new($false)
        $job = Start-ThreadJob -ScriptBlock $Writer -ArgumentList $F.Emulator, ([uint64]$F.Mapping.Start), $Pages, $Stop, $started, $env:SOFTDIRTY_MODULE
        $started.Wait([TimeSpan]::FromMinutes(2)) | Should -BeTrue -Because 'hang guard: the writer never wrote'
        $job
    }
}

Describe 'Round 11: an emulated process shared between runspaces' -Tag 'Security', 'Round11', 'R11State', 'Emulator' {
    It 'a <Method> chain saved while another runspace writes the process (and copies it) ends exact, with no error on either side' -Skip:([bool]$ThreadJobSkip) -ForEach @(
        @{ Method = 'SoftDirty' }, @{ Method = 'WriteProtect' }
    ) {
        $f = New-FilledEmulator -Pages $Pages
        $e = $f.Emulator
        $stop = [System.Threading.ManualResetEventSlim]::new($false)
        $job = Start-Writer $f $stop
        try {
            $null = Save-MemoryImage -Emulator $e -Path "$root/$Method-0" -Method $Method -Confirm:$false -ErrorAction Stop
            for ($k = 1; $k -le 5; $k++) {
                $null = Save-MemoryImage -Emulator $e -Path "$root/$Method-$k" -Parent "$root/$Method-$($k - 1)" -Method $Method -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue
            }
        } finally {
            $stop.Set()
            $loops = $job | Wait-Job -Timeout 300 | Receive-Job
        }
        $job.State | Should -Be 'Completed'
        $job.Error.Count | Should -Be 0
        $loops | Should -BeGreaterThan 0
        # Quiet now: one more increment, and a full image of the same moment.
        $null = Save-MemoryImage -Emulator $e -Path "$root/$Method-6" -Parent "$root/$Method-5" -Method $Method -Confirm:$false -ErrorAction Stop
        $null = Save-MemoryImage -Emulator $e -Path "$root/$Method-full" -Confirm:$false -ErrorAction Stop
        Assert-SameAsFull "$root/$Method-6" "$root/$Method-full" $Method
    }

    It 'two chains of one emulated process saved from two runspaces at once both end exact (each sees the other''s clears)' -Skip:([bool]$ThreadJobSkip) {
        $f = New-FilledEmulator -Pages $Pages
        $e = $f.Emulator
        $stop = [System.Threading.ManualResetEventSlim]::new($false)
        $writer = Start-Writer $f $stop
        $other = Start-ThreadJob -ScriptBlock {
            param($Emulator, [string] $Root, [string] $Module)
            Import-Module $Module
            $null = Save-MemoryImage -Emulator $Emulator -Path "$Root/o0" -Confirm:$false -ErrorAction Stop
            for ($k = 1; $k -le 5; $k++) { $null = Save-MemoryImage -Emulator $Emulator -Path "$Root/o$k" -Parent "$Root/o$($k - 1)" -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue }
        } -ArgumentList $e, "$root", $env:SOFTDIRTY_MODULE
        try {
            $null = Save-MemoryImage -Emulator $e -Path "$root/m0" -Confirm:$false -ErrorAction Stop
            for ($k = 1; $k -le 5; $k++) {
                $null = Save-MemoryImage -Emulator $e -Path "$root/m$k" -Parent "$root/m$($k - 1)" -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue
            }
            $null = $other | Wait-Job -Timeout 300
        } finally {
            $stop.Set()
            $null = $writer | Wait-Job -Timeout 300
        }
        $other.State | Should -Be 'Completed'
        $other.Error.Count | Should -Be 0
        $writer.Error.Count | Should -Be 0
        # Quiet now: each chain's next increment against one full image. A chain that trusted soft-dirty the other had
        # cleared would miss pages here.
        $null = Save-MemoryImage -Emulator $e -Path "$root/m6" -Parent "$root/m5" -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue
        $null = Save-MemoryImage -Emulator $e -Path "$root/o6" -Parent "$root/o5" -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue
        $null = Save-MemoryImage -Emulator $e -Path "$root/tfull" -Confirm:$false -ErrorAction Stop
        Assert-SameAsFull "$root/m6" "$root/tfull" 'm'
        Assert-SameAsFull "$root/o6" "$root/tfull" 'o'
    }
}
