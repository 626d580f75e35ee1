#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-third attack round, exec: write tracking of a child of this PowerShell (started by .NET's Process) that
# exec()s again and again from a thread that is not the leader (tests/native/exectarget.c, an exec every 3 ms). .NET's
# SIGCHLD reaping took a ptrace stop of the child for its exit: its Process said HasExited while it ran, Kill() did nothing,
# and once it died .NET's signal thread spun for good, so no later child of that session was reaped (a hang of the session).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $WtSkip = Get-WriteTrackingSkipReason -Relation Descendant
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $ExecTarget = (Resolve-Path (Join-Path $PSScriptRoot '../native/bin/exectarget')).Path
}

Describe 'Round 23: .NET child reaping and write tracking of an exec''ing child of this PowerShell' -Tag 'Security', 'Round23Exec' {
    It 'up to 400 Enable/Disable-WriteTracking pairs: the child''s Process never says it exited, Kill() ends it, and the session reaps children after' -Skip:([bool]$WtSkip) {
        # Before: with an exec every 1 ms (this case), 3 of 3 runs said HasExited (after 19, 268 and 364 pairs, root); with an
        # exec every 3 ms, 4 of 4 runs after 46 to 89 pairs (root and unprivileged). The target then outlived Kill() (a no-op
        # for an exited Process), and once killed with kill(2) .NET's signal thread spun on it (a core busy) and an external
        # command run after never returned. Now: 0 in 900 pairs (3 ms execs) as root, 0 in 300 unprivileged.
        $script = @"
`$psi = [System.Diagnostics.ProcessStartInfo]::new('$ExecTarget')
foreach (`$a in '0', '1000000', '4', '1000') { `$psi.ArgumentList.Add(`$a) }
`$psi.RedirectStandardInput = `$true; `$psi.RedirectStandardOutput = `$true; `$psi.UseShellExecute = `$false
`$p = [System.Diagnostics.Process]::Start(`$psi)
`$null = `$p.StandardOutput.ReadLine()
`$start = (((Get-Content -Raw "/proc/`$(`$p.Id)/stat") -replace '^.*\) ', '') -split ' ')[19]
"TARGET `$(`$p.Id) `$start"
`$flip = 0
foreach (`$i in 1..400) {
    try { `$null = Enable-WriteTracking -Id `$p.Id -ErrorAction Stop } catch { }
    try { Disable-WriteTracking -Id `$p.Id -ErrorAction Stop } catch { }
    if (`$p.HasExited) { `$flip = `$i; break }
}
"EXITEDSAID `$flip ALIVE `$(Test-Path "/proc/`$(`$p.Id)")"
`$p.Kill()
`$gone = `$false
foreach (`$k in 1..1000) { if (-not (Test-Path "/proc/`$(`$p.Id)")) { `$gone = `$true; break }; Start-Sleep -Milliseconds 10 }
"KILLED `$gone"
`$out = & /bin/echo reaped
"EXTERNAL `$out"
"@
        $child = Start-ChildPwsh $script
        $target = 0
        $targetStart = ''
        try {
            $done = $child.WaitForExit(180000)
            if (-not $done) { $child.Kill(); $null = $child.WaitForExit(10000) } # its output ends only with it
            $lines = @($child.StandardOutput.ReadToEnd() -split "`n" | ForEach-Object Trim)
            $targetLine = $lines | Where-Object { $_ -like 'TARGET *' } | Select-Object -First 1
            if ($targetLine) { $target = [int]$targetLine.Split(' ')[1]; $targetStart = $targetLine.Split(' ')[2] }
            Write-Host "    $(($lines | Where-Object { $_ -match '^(EXITEDSAID|KILLED|EXTERNAL) ' }) -join '; ')"
            $done | Should -BeTrue -Because 'the PowerShell that tracked the child still reaps its children (before: it hung in an external command)'
            $lines | Should -Contain 'EXITEDSAID 0 ALIVE True' -Because 'the Process of a running child never says it exited'
            $lines | Should -Contain 'KILLED True'
            $lines | Should -Contain 'EXTERNAL reaped'
        } finally {
            if (-not $child.HasExited) { $child.Kill(); $null = $child.WaitForExit(10000) }
            # The target, if the child pwsh left it (an exec every millisecond: a core's worth of load for the tests after):
            # killed by pid for as long as that pid is the same process (its start time, which an exec keeps), up to 30 s.
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            while ($target -and $clock.Elapsed.TotalSeconds -lt 30) {
                $stat = Get-Content -Raw "/proc/$target/stat" -ErrorAction SilentlyContinue
                if (-not $stat -or ((($stat -replace '^.*\) ', '') -split ' ')[19]) -ne $targetStart) { break }
                try { [System.Diagnostics.Process]::GetProcessById($target).Kill() } catch { }
                Start-Sleep -Milliseconds 10
            }
        }
    }
}
