#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 34 (Freeze): someone else controls the target's scheduling. The target (imgtarget) is put in a cgroup v1
# freezer of its own (/sys/fs/cgroup/freezer/r34freeze-*) and frozen before a command, or at a step of it (the module's step
# hook, InjectionSteps.OnStep: the freeze lands exactly there, no sleeps); then thawed, and looked at.
# Found (TARGET HARMED): Enable-WriteTracking whose target was frozen right after the injected userfaultfd() (or after
# UFFDIO_API): the next injected call was resumed but never came back (a frozen thread runs only once thawed), the wait gave
# up after 10 s, and the cleanup then told the target's restore code not to close the new userfaultfd before trying to close
# it itself, which it could not (the thread was not in a stop): after the thaw the target held an anon_inode:[userfaultfd]
# descriptor for good, which no command knew of (Disable said WriteTrackingNotEnabled). An injected call in flight now
# leaves the thread parked on the trampoline with its arguments and undo slot, as if this PowerShell had died: it makes the
# call when it runs again and its restore code closes the descriptor. Failed before: the descriptor was there after the thaw.
# Found (other): Ctrl+C while an injection waited for a frozen thread was not honoured: the command ran on to the 10 s bound
# (RemoteSyscalls.Wait looked at no cancellation). A wait past StatusGrace now ends on Ctrl+C. Failed before: after the
# stop the userfaultfd stayed in the target (the same cleanup ran after the timeout).
# Found (other): the error of a wait for a frozen thread said "it sleeps in the kernel where only a fatal signal wakes it
# (in ptrace_stop), such as a read a FUSE server holds" and "Nothing was injected" where a call was in flight; it now names
# the cgroup's freezer file and the call. Failed before: the message named no freezer.
# Held (host, Linux 6.18, cgroup v1 freezer): a target frozen before Save-MemoryImage (with and without -Freeze),
# Enable-WriteTracking and Disable-WriteTracking: without -Freeze the save reads it as it is; the others end with
# ProcIOError after their bound, and after the thaw the target runs, is traced by nobody, has its own signal mask, and its
# tracking (where enabled) still works and disables. A freeze at every step of Enable-WriteTracking (13 steps) and of
# Disable-WriteTracking (5 steps): nothing traced or stopped after the thaw, the signal mask the process's own, and no
# descriptor left behind once fixed (a Disable frozen after its attach fails with ProcIOError; the restore code closes the
# descriptor on thaw, so the tracking ends and the next Disable says WriteTrackingNotEnabled). These tests need root (a
# cgroup of their own): unprivileged they skip.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state34freeze'
    # Looked at when the tests run (a BeforeDiscovery variable is not there then).
    $script:R34FreezeSkip = if (-not $IsLinux) { 'Linux only' }
    elseif ((id -u) -ne '0') { 'a cgroup v1 freezer of its own needs root (mkdir under /sys/fs/cgroup/freezer)' }
    elseif (-not (Test-Path /sys/fs/cgroup/freezer/cgroup.procs)) { 'no cgroup v1 freezer hierarchy at /sys/fs/cgroup/freezer' }
    $script:R34FreezeWtSkip = if ($R34FreezeSkip) { $R34FreezeSkip } else { Get-WriteTrackingSkipReason }
    $script:R34FreezeRoot = (New-Item -ItemType Directory (Join-Path $TestDrive 'r34freeze')).FullName
    $asm = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
    $script:R34FreezeSteps = $asm.GetType('SoftDirty.Injection.InjectionSteps', $true)
    $script:R34FreezeStatic = [Reflection.BindingFlags]'NonPublic,Public,Static'

    # A freezer cgroup of this test's own holding a new imgtarget with a filled region: { Target, Cgroup, Address }.
    function New-R34FreezeTarget {
        $cgroup = "/sys/fs/cgroup/freezer/r34freeze-$PID-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
        $null = New-Item -ItemType Directory $cgroup
        $t = Start-ImgTarget
        $a = Send-ImgTarget $t 'map 16'
        $null = Send-ImgTarget $t "fill $a 16 3"
        [IO.File]::WriteAllText("$cgroup/cgroup.procs", "$($t.Id)")
        [pscustomobject]@{ Target = $t; Cgroup = $cgroup; Address = $a }
    }
    function Set-R34FreezeState($F, [ValidateSet('FROZEN', 'THAWED')] [string] $State) {
        [IO.File]::WriteAllText("$($F.Cgroup)/freezer.state", $State)
        # FREEZING until every task is in the refrigerator: a condition, looked at until it holds.
        while ([IO.File]::ReadAllText("$($F.Cgroup)/freezer.state").Trim() -ne $State) { Start-Sleep -Milliseconds 1 }
    }
    function Remove-R34FreezeTarget($F) {
        if (-not $F) { return }
        if (Test-Path $F.Cgroup) { Set-R34FreezeState $F THAWED }
        Stop-ImgTarget $F.Target
        if (Test-Path $F.Cgroup) {
            while ([IO.File]::ReadAllText("$($F.Cgroup)/cgroup.procs").Trim()) { Start-Sleep -Milliseconds 1 }
            [IO.Directory]::Delete($F.Cgroup)
        }
    }
    # A hook that freezes the cgroup when the command passes step $Step (by name), then runs $Then; the steps passed.
    function Invoke-R34FreezeAt($F, [string] $Step, [scriptblock] $Command, [scriptblock] $Then = {}) {
        $seen = [Collections.Generic.List[string]]::new()
        $freeze = ${function:Set-R34FreezeState}
        $rec = [Activator]::CreateInstance($R34FreezeSteps)
        $R34FreezeSteps.GetProperty('OnStep').SetValue($rec, [Action[string]] {
                param($s)
                $seen.Add($s)
                if ($s -eq $Step) { & $freeze $F FROZEN; & $Then }
            }.GetNewClosure())
        $R34FreezeSteps.GetProperty('Current', $R34FreezeStatic).SetValue($null, $rec)
        try { & $Command } finally { $R34FreezeSteps.GetProperty('Current', $R34FreezeStatic).SetValue($null, $null) }
        , $seen
    }
    # What a thawed target shows: its userfaultfd descriptors, tracer, state letter and blocked signals, and its answer.
    function Get-R34FreezeAfter($F) {
        $id = $F.Target.Id
        $status = Get-Content "/proc/$id/status"
        $uffd = @(Get-ChildItem "/proc/$id/fd" | Where-Object { $_.LinkTarget -eq 'anon_inode:[userfaultfd]' })
        $F.Target.Process.StandardInput.WriteLine("write $($F.Address) 1")
        [pscustomobject]@{
            Userfaultfds = $uffd.Count
            Tracer = [int](($status | Where-Object { $_ -like 'TracerPid:*' }) -replace '\D', '')
            SigBlk = ($status | Where-Object { $_ -like 'SigBlk:*' }) -replace '^SigBlk:\s*', ''
            # Bounded: a target left stopped never answers, and the test must fail, not hang.
            Answer = & { $line = $F.Target.Process.StandardOutput.ReadLineAsync(); if ($line.Wait(60000)) { $line.Result } else { 'no answer (stopped?)' } }
        }
    }
}

Describe 'Round 34: the target''s cgroup freezer freezes it during write tracking''s injection' -Tag 'Security', 'Round34Freeze', 'WriteTracking' {
    It 'frozen after <Step>: Enable fails with ProcIOError naming the freezer, and after the thaw the target holds no userfaultfd, is untraced and runs' -ForEach @(
        @{ Step = 'inject userfaultfd' }, @{ Step = 'write arguments, inject UFFDIO_API' }
    ) {
        if ($R34FreezeWtSkip) { Set-ItResult -Skipped -Because $R34FreezeWtSkip; return }
        $f = New-R34FreezeTarget
        try {
            $err = $null
            $seen = Invoke-R34FreezeAt $f $Step { try { Enable-WriteTracking -Id $f.Target.Id -ErrorAction Stop } catch { $script:R34FreezeErr = $_ } }
            $err = $script:R34FreezeErr; $script:R34FreezeErr = $null
            $seen | Should -Contain $Step
            $err | Should -Not -BeNullOrEmpty -Because 'the injected call after the freeze never came back'
            Set-R34FreezeState $f THAWED
            # The thread makes the call it was resumed for, then its restore code: the answer to a command is read after it.
            $after = Get-R34FreezeAfter $f
            $after.Answer | Should -Be 'OK'
            $after.Userfaultfds | Should -Be 0 -Because 'the userfaultfd made for a tracking that failed must not stay in the process'
            $after.Tracer | Should -Be 0
            $after.SigBlk | Should -Be '0000000000000000'
            $err.FullyQualifiedErrorId | Should -BeLike 'ProcIOError,*'
            $err.Exception.Message | Should -BeLike "*$($f.Cgroup)/freezer.state: FROZEN*" -Because 'the freezer holds the thread, not a FUSE read'
            { Disable-WriteTracking -Id $f.Target.Id -ErrorAction Stop } | Should -Throw -ErrorId 'WriteTrackingNotEnabled,*'
        } finally { Remove-R34FreezeTarget $f }
    }

    It 'Ctrl+C while the injection waits for a frozen thread ends the command, and after the thaw no userfaultfd is left' {
        if ($R34FreezeWtSkip) { Set-ItResult -Skipped -Because $R34FreezeWtSkip; return }
        $f = New-R34FreezeTarget
        $ps = [powershell]::Create()
        try {
            $sync = [hashtable]::Synchronized(@{ Frozen = $false })
            $module = (Get-Module SoftDirty).Path
            $null = $ps.AddScript({
                    param($Module, $Id, $Sync, $Cgroup)
                    Import-Module $Module
                    $asm = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
                    $type = $asm.GetType('SoftDirty.Injection.InjectionSteps', $true)
                    $rec = [Activator]::CreateInstance($type)
                    # Frozen once the userfaultfd is made; the test then stops the command (Ctrl+C: StopProcessing) while the next call waits.
                    $type.GetProperty('OnStep').SetValue($rec, [Action[string]] {
                            param($s)
                            if ($s -ne 'inject userfaultfd') { return }
                            [IO.File]::WriteAllText("$Cgroup/freezer.state", 'FROZEN')
                            while ([IO.File]::ReadAllText("$Cgroup/freezer.state").Trim() -ne 'FROZEN') { Start-Sleep -Milliseconds 1 }
                            # No hook from here on: script run while the pipeline stops throws, and a throw from a step
                            # stands for a kill of this PowerShell there (the restore's step would then skip the detach).
                            $type.GetProperty('Current', [Reflection.BindingFlags]'NonPublic,Public,Static').SetValue($null, $null)
                            $Sync.Frozen = $true
                        }.GetNewClosure())
                    $type.GetProperty('Current', [Reflection.BindingFlags]'NonPublic,Public,Static').SetValue($null, $rec)
                    Enable-WriteTracking -Id $Id
                }).AddArgument($module).AddArgument($f.Target.Id).AddArgument($sync).AddArgument($f.Cgroup)
            $run = $ps.BeginInvoke()
            # The hook says when the freeze has landed: looked at until then (or until the command ended without one).
            while (-not $sync.Frozen -and -not $run.IsCompleted) { Start-Sleep -Milliseconds 1 }
            $sync.Frozen | Should -BeTrue -Because 'the freeze landed after the userfaultfd was made'
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            @($ps.Streams.Error | Where-Object { $_.FullyQualifiedErrorId -like 'ProcIOError,*' }) | Should -BeNullOrEmpty -Because 'the stop ended the wait, not its bound'
            Set-R34FreezeState $f THAWED
            $after = Get-R34FreezeAfter $f
            $after.Answer | Should -Be 'OK'
            $after.Userfaultfds | Should -Be 0
            $after.Tracer | Should -Be 0
            $after.SigBlk | Should -Be '0000000000000000'
        } finally {
            $ps.Dispose()
            Remove-R34FreezeTarget $f
        }
    }

    It 'frozen before Save-MemoryImage -Freeze: ProcIOError naming the freezer; after the thaw the target runs, untraced, and a save without -Freeze reads it frozen' {
        if ($R34FreezeSkip) { Set-ItResult -Skipped -Because $R34FreezeSkip; return }
        $f = New-R34FreezeTarget
        try {
            Set-R34FreezeState $f FROZEN
            $dir = Join-Path $R34FreezeRoot ([guid]::NewGuid().ToString('n'))
            $img = Save-MemoryImage -Id $f.Target.Id -Path "$dir-plain" -Confirm:$false
            $img | Should -Not -BeNullOrEmpty -Because 'reading the memory of a frozen process needs no stop'
            $err = $null
            try { $null = Save-MemoryImage -Id $f.Target.Id -Path "$dir-frozen" -Freeze -Confirm:$false -ErrorAction Stop } catch { $err = $_ }
            $err.FullyQualifiedErrorId | Should -BeLike 'ProcIOError,*'
            $err.Exception.Message | Should -BeLike '*freezer.state: FROZEN*'
            Set-R34FreezeState $f THAWED
            $after = Get-R34FreezeAfter $f
            $after.Answer | Should -Be 'OK'
            $after.Tracer | Should -Be 0
            $after.SigBlk | Should -Be '0000000000000000'
        } finally { Remove-R34FreezeTarget $f }
    }
}
