#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 33 (Lead): what round 32 left open in the lead's own code.
# Found: a MAP_DROPPABLE mapping of a process under another process's write tracking was offered to the kernel for
# registration at every look (a save, a watch sample), by injection: the process stopped and was made to run
# UFFDIO_REGISTER, which the kernel refuses for VM_DROPPABLE, each time. Not a miss (the mapping's present pages count
# at every look), but a stop of the process at every look for nothing. smaps names such a mapping ("dp"), and the look
# that reads smaps no longer offers it. Failed before: 3 increments injected 3 times (one PTRACE_SEIZE each), now none.

BeforeDiscovery {
    $R33LeadWtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state33lead'
    $script:R33LeadRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r33lead')
    $script:R33LeadEngine = [SoftDirty.MemoryMapping].Assembly
    $script:R33LeadInternal = [Reflection.BindingFlags]'NonPublic, Static, Public'
    # The step of a syscall injection that seizes the process (RemoteSyscalls): one a stop of the process.
    $script:R33LeadSeizeStep = 'PTRACE_SEIZE, PTRACE_INTERRUPT, wait'

    # Runs $Command with the injection steps recorded (InjectionSteps, internal, on this thread); the steps seen.
    function Get-R33LeadSteps([scriptblock] $Command) {
        $steps = $R33LeadEngine.GetType('SoftDirty.Injection.InjectionSteps', $true)
        $seen = [System.Collections.Generic.List[string]]::new()
        $recorder = [Activator]::CreateInstance($steps)
        $steps.GetProperty('OnStep').SetValue($recorder, [Action[string]] { param($s) $seen.Add($s) }.GetNewClosure())
        $steps.GetProperty('Current', $R33LeadInternal).SetValue($null, $recorder)
        try { $null = & $Command }
        finally { $steps.GetProperty('Current', $R33LeadInternal).SetValue($null, $null) }
        , $seen
    }
}

Describe 'Round 33: a MAP_DROPPABLE mapping under another process''s write tracking' -Tag 'WriteTracking', 'Security', 'Round33Lead' -Skip:([bool]$R33LeadWtSkip) {
    BeforeAll {
        $script:t = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/shtarget')
        $reply = $t.TrySend('droppable 4')
        $script:R33LeadDropSkip = if ($reply -notmatch '^OK ([0-9a-f]+)$') { "no MAP_DROPPABLE mapping can be made here (Linux 6.11+): $reply" }
        if (-not $R33LeadDropSkip) {
            $script:drop = [Convert]::ToUInt64($Matches[1], 16)
            $flags = @((Get-MemoryMapping -Id $t.Id | Where-Object Start -EQ $drop).VmFlags)
            if ($flags -notcontains 'dp') { $script:R33LeadDropSkip = "smaps does not name the MAP_DROPPABLE mapping (VmFlags: $($flags -join ' '))" }
        }
        $script:plain = [Convert]::ToUInt64($t.Send('map 4'), 16)
    }
    AfterAll { Stop-TestTarget $t }

    It 'three increments inject nothing, and hold every write of the other mapping' {
        if ($R33LeadDropSkip) { Set-ItResult -Skipped -Because $R33LeadDropSkip; return }
        $hex = $plain.ToString('x')
        $null = $t.Send("poke $($drop.ToString('x')) 0 4 7")
        $null = $t.Send("poke $hex 0 4 7")
        $null = Enable-WriteTracking -Id $t.Id
        try {
            $parent = Join-Path $R33LeadRoot 'full'
            $null = Save-MemoryImage -Id $t.Id -Path $parent -Method WriteProtect
            foreach ($i in 1..3) {
                $null = $t.Send("poke $hex $i 1 $(10 + $i)")
                $image = Join-Path $R33LeadRoot "inc$i"
                $steps = Get-R33LeadSteps { Save-MemoryImage -Id $t.Id -Path $image -Parent $parent -Method WriteProtect }
                @($steps | Where-Object { $_ -eq $R33LeadSeizeStep }).Count | Should -Be 0 -Because "increment $i has nothing to register (steps: $($steps -join '; '))"
                Test-MemoryImage -Path $image | Should -BeTrue
                $parent = $image
            }
            $out = Join-Path $R33LeadRoot 'restored'
            $mapping = Restore-MemoryImage -Path $parent -Destination $out | Where-Object { $_.Start -le $plain -and $plain -lt $_.End }
            $bytes = [IO.File]::ReadAllBytes($mapping.File)
            $first = [int](($plain - $mapping.Start) / $t.PageSize)
            $got = @(foreach ($p in 0..3) { $bytes[($first + $p) * $t.PageSize] })
            $got | Should -Be @(7, 11, 12, 13)
        } finally { Disable-WriteTracking -Id $t.Id }
    }
}
