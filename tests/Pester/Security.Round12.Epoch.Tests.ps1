#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twelfth attack round, on the soft-dirty bookkeeping round 11 added (new cases only; the epoch folders attacked by
# their owner and by a careless user are in tests/SoftDirty.Engine.Tests/Tracking/EpochRound12Tests.cs).
# Here: an emulated process held by a long workload in another runspace, and Ctrl+C of a clear waiting for it.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force

    # A runspace that runs $Script with $Arguments (the module imported); returns the PowerShell and its async result.
    function script:Start-InRunspace([scriptblock] $Script, [object[]] $Arguments) {
        $ps = [powershell]::Create()
        # One statement (a batch of several outlived a stop and its Dispose, and crashed the host).
        $null = $ps.AddScript({ param($Module, $Script, $Arguments) Import-Module $Module; & ([scriptblock]::Create($Script)) @Arguments })
        $null = $ps.AddArgument($env:SOFTDIRTY_MODULE).AddArgument($Script.ToString()).AddArgument($Arguments)
        [pscustomobject]@{ PowerShell = $ps; Result = $ps.BeginInvoke() }
    }
}

Describe 'Round 12: Ctrl+C of a clear waiting for an emulated process another runspace holds' -Tag 'Security', 'Round12', 'R12Epoch', 'Emulator' {
    It '<Command> waiting while a workload of billions of accesses runs in another runspace stops at once, and the process is usable after' -ForEach @(
        @{ Command = 'Clear-SoftDirty' }
        @{ Command = 'Clear-PageReference -Type All' }
    ) {
        $p = New-EmulatedProcess
        $m = Add-EmulatedMapping -Emulator $p -Length 1MB -Confirm:$false
        # Long enough never to end by itself within the test (it holds the process's machine lock throughout).
        $work = Start-InRunspace { param($p, $s) Invoke-EmulatedWorkload -Emulator $p -Address $s -Length 1MB -WriteRatio 1 -Count 1000000000000 -Confirm:$false } @($p, $m.Start)
        try {
            # Running (its lock is taken at once; the process's counters cannot be read meanwhile: they take the lock too).
            $deadline = [DateTime]::UtcNow.AddMinutes(1) # hang guard
            while ($work.PowerShell.InvocationStateInfo.State -ne 'Running' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            Start-Sleep -Seconds 1 # the module imported and the workload started
            $clear = Start-InRunspace ([scriptblock]::Create("param(`$p) $Command -Emulator `$p -Confirm:`$false")) @($p)
            Start-Sleep -Milliseconds 300 # it waits for the lock (nothing to observe: it must merely be waiting when stopped)
            $clear.Result.IsCompleted | Should -BeFalse -Because 'the clear waits while the workload holds the process'
            $stop = $clear.PowerShell.BeginStop($null, $null)
            $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromMinutes(1)) | Should -BeTrue -Because 'Ctrl+C ends the wait (hang guard)'
            $work.Result.IsCompleted | Should -BeFalse -Because 'the workload in the other runspace goes on'
        }
        finally {
            $work.PowerShell.Stop()
            if ($clear) { $null = $clear.PowerShell.BeginStop($null, $null).AsyncWaitHandle.WaitOne([TimeSpan]::FromMinutes(5)); $clear.PowerShell.Dispose() }
            $work.PowerShell.Dispose()
        }
        { & ([scriptblock]::Create("param(`$p) $Command -Emulator `$p -Confirm:`$false")) $p } | Should -Not -Throw -Because 'neither lock was left held'
    }
}
