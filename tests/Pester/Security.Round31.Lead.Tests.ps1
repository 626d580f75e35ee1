#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, thirty-first attack round, the lead's cases: a thread this PowerShell seized and could not let go.
# Found: a thread asleep in the kernel where only a fatal signal wakes it (a read a FUSE server holds: request_wait_answer)
# does not stop for PTRACE_INTERRUPT, and PTRACE_DETACH needs a stopped tracee. A -Freeze save or Enable-WriteTracking failed
# after 10 s (right), then gave up letting the thread go: it stayed traced by the PowerShell's pipeline thread, its interrupt
# pending, and once the server answered it stopped for good, for as long as the PowerShell ran (TracerPid the PowerShell's,
# state t). Now every ptrace request of a command is made by a thread of its own (TracerThread) that ends with the command:
# the kernel lets go of a tracee of a thread that exits, as when the PowerShell dies. Both cases below failed before.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $R31LeadFuseSkip = if (-not (Get-Command dd -CommandType Application -ErrorAction Ignore)) { 'dd is not installed: the target is a dd reading the FUSE file' }
    elseif ($R31LeadFuseProbe = Get-FuseHoldSkipReason) { $R31LeadFuseProbe }
    else { Get-PtraceSkipReason }
    $R31LeadWtSkip = if ($R31LeadFuseSkip) { $R31LeadFuseSkip } else { Get-WriteTrackingSkipReason -Relation Descendant }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:R31LeadRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r31lead')
    $script:savedState = $env:SOFTDIRTY_STATE_DIR
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'

    # The State and TracerPid lines of a process's status, on one line ('' once it is gone).
    function script:Get-R31LeadState([int] $Id) { (@(Get-Content "/proc/$Id/status" -ErrorAction Ignore) -match '^(State|TracerPid):' -replace '\s+', ' ') -join '; ' }

    # Starts dd reading one page of the FUSE file (direct I/O) while fusehold holds reads, and waits until it sleeps in the
    # read; returns the process.
    function script:Start-R31LeadHeldReader($Fuse) {
        $Fuse.Send('hold') | Should -Be 'OK'
        $psi = [Diagnostics.ProcessStartInfo]::new('dd')
        foreach ($a in "if=$($Fuse.MountPoint)/f", 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct') { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardError = $true; $psi.UseShellExecute = $false
        $dd = [Diagnostics.Process]::Start($psi)
        $Fuse.Read() | Should -BeLike 'READ *' -Because 'fusehold holds the read of dd'
        $dd
    }
}

AfterAll { $env:SOFTDIRTY_STATE_DIR = $savedState }

Describe 'Round 31: a thread that does not stop for PTRACE_INTERRUPT is let go when the command ends' -Tag 'Security', 'Round31Lead' -ForEach @(@{ FuseSkip = $R31LeadFuseSkip }) {
    BeforeAll {
        # $FuseSkip: the discovery's probe, handed over (BeforeAll sees no variable of BeforeDiscovery).
        if (-not $FuseSkip) {
            $script:R31LeadMnt = Join-Path ([IO.Path]::GetTempPath()) "r31fuse-$([guid]::NewGuid().ToString('n'))"
            $null = New-Item -ItemType Directory $R31LeadMnt
            $script:R31LeadFuse = Start-FuseHold $R31LeadMnt
        }

        # Runs $Command on a dd whose read fusehold holds: ProcIOError naming where the thread sleeps; no tracer left at once;
        # dd runs to its end once the read is answered. Before: the error came (after 10 s), then "State: t (tracing stop);
        # TracerPid: <this PowerShell's thread>" once the read was answered, for as long as this PowerShell ran; dd never ended.
        function script:Test-R31LeadLetGo([scriptblock] $Command) {
            $dd = Start-R31LeadHeldReader $R31LeadFuse
            try {
                $err = $null
                try { & $Command $dd.Id } catch { $err = $_ }
                $err | Should -Not -BeNullOrEmpty -Because 'the thread never stopped'
                $err.FullyQualifiedErrorId | Should -BeLike 'ProcIOError,*'
                $err.Exception.Message | Should -BeLike '*did not stop*sleeps in the kernel*'
                Get-R31LeadState $dd.Id | Should -BeLike '*TracerPid: 0*' -Because 'the command let go of the thread it seized'
                $R31LeadFuse.Send('go') | Should -Be 'GO 1'
                $dd.WaitForExit(20000) | Should -BeTrue -Because "dd runs to its end once its read is answered (now: $(Get-R31LeadState $dd.Id))"
                $dd.ExitCode | Should -Be 0
                @(Get-ChildItem -Force $R31LeadRoot) | Should -BeNullOrEmpty -Because 'a failed save leaves nothing'
            }
            finally {
                if (-not $dd.HasExited) { $dd.Kill(); $null = $dd.WaitForExit(5000) }
                $null = $R31LeadFuse.Send('go')
            }
        }
    }
    AfterAll {
        if ($R31LeadFuse) { Stop-FuseHold $R31LeadFuse }
        if ($R31LeadMnt) { Remove-Item -LiteralPath $R31LeadMnt -ErrorAction SilentlyContinue }
    }

    It 'Save-MemoryImage -Freeze of a process whose thread a FUSE read holds: ProcIOError naming where it sleeps; untraced at once, and it runs to its end once answered' -Skip:([bool]$R31LeadFuseSkip) {
        Test-R31LeadLetGo { param($Id) Save-MemoryImage -Id $Id -Path (Join-Path $R31LeadRoot "img-$Id") -Freeze -ErrorAction Stop }
    }

    It 'Enable-WriteTracking of a process whose thread a FUSE read holds: the same' -Skip:([bool]$R31LeadWtSkip) {
        Test-R31LeadLetGo { param($Id) Enable-WriteTracking -Id $Id -ErrorAction Stop }
    }
}
