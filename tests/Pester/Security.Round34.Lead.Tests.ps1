#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 34 (Lead): what round 33 left open in the lead's own code.
# Found (portability of round 33's guard): enabling write tracking refuses a process whose memory cgroup has no room for
# the injected userfaultfd (its OOM killer would kill the process), but it looked for the memory hierarchy at
# /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2) only. Where this mount namespace mounts it elsewhere, or shows only a
# subtree of it (a container's view: a bind mount of its own cgroup), nothing was refused and the process was killed.
# The hierarchy is now found in /proc/self/mountinfo, and a mount's root is taken off the cgroup's path. Failed before:
# in both layouts the process was killed mid-injection (Enable-WriteTracking said ProcessExited).

BeforeDiscovery {
    $R34LeadSkip = if (-not $IsLinux) { 'Linux only' }
    else {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $wt = Get-WriteTrackingSkipReason
        if ($wt) { $wt }
        elseif ((id -u) -ne '0') { 'only root may make a memory cgroup, move a process into it and mount the hierarchy' }
        elseif (-not (Test-Path /sys/fs/cgroup/memory/cgroup.procs) -and -not ((Test-Path /sys/fs/cgroup/cgroup.subtree_control) -and (Get-Content /sys/fs/cgroup/cgroup.subtree_control) -match '\bmemory\b')) { 'no writable memory cgroup hierarchy here (v1 memory, or v2 with memory in the root''s subtree_control)' }
        elseif ((Get-Content /proc/meminfo | Where-Object { $_ -like 'SwapTotal:*' }) -notmatch ':\s+0 kB') { 'the machine has swap: a cgroup at its limit may swap, and enabling is not refused there' }
        elseif (-not (Get-Command unshare -ErrorAction Ignore)) { 'unshare(1) is not installed: the hierarchy is mounted elsewhere in a mount namespace of the test''s own' }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state34lead'
    $script:R34LeadRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r34lead')
}

Describe 'A memory cgroup at its limit, its hierarchy mounted where a container mounts it' -Tag 'Security', 'Round34Lead', 'WriteTracking' -Skip:([bool]$R34LeadSkip) {
    BeforeAll {
        $script:R34LeadV1 = Test-Path /sys/fs/cgroup/memory/cgroup.procs
        $script:R34LeadHierarchy = if ($R34LeadV1) { '/sys/fs/cgroup/memory' } else { '/sys/fs/cgroup' }
        $script:R34LeadName = "softdirty-r34lead-$([guid]::NewGuid().ToString('n'))"
        $script:R34LeadCgroup = "$R34LeadHierarchy/$R34LeadName"
        $script:R34LeadLimitFile = if ($R34LeadV1) { 'memory.limit_in_bytes' } else { 'memory.max' }
        $script:R34LeadUsageFile = if ($R34LeadV1) { 'memory.usage_in_bytes' } else { 'memory.current' }
        $null = New-Item -ItemType Directory $R34LeadCgroup
    }
    AfterAll { if ($R34LeadCgroup -and (Test-Path $R34LeadCgroup)) { [IO.Directory]::Delete($R34LeadCgroup) } }

    It 'mounted <Layout>: Enable-WriteTracking says ResourceLimit, the process lives on untraced, nothing injected' -ForEach @(
        @{ Layout = 'elsewhere, whole' }, @{ Layout = 'elsewhere, its own cgroup only (a bind mount)' }
    ) {
        $t = Start-ImgTarget
        $mountPoint = Join-Path $R34LeadRoot ([guid]::NewGuid().ToString('n'))
        $null = New-Item -ItemType Directory $mountPoint
        try {
            $a = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $a 16 3"
            Set-Content "$R34LeadCgroup/cgroup.procs" $t.Id
            Set-Content "$R34LeadCgroup/$R34LeadLimitFile" ([uint64](Get-Content "$R34LeadCgroup/$R34LeadUsageFile") + 4096)
            # In a mount namespace of its own, the hierarchy is mounted at $mountPoint and not at its usual place.
            $mount = if ($Layout -like '*bind*') { "mount --bind '$R34LeadCgroup' '$mountPoint'" }
            elseif ($R34LeadV1) { "mount -t cgroup -o memory r34lead '$mountPoint'" } else { "mount -t cgroup2 r34lead '$mountPoint'" }
            $pwsh = Get-PwshCommandLine
            $script = "Import-Module '$env:SOFTDIRTY_MODULE'; try { `$null = Enable-WriteTracking -Id $($t.Id) -Confirm:`$false -ErrorAction Stop; 'said=none' } catch { 'said=' + (`$_.FullyQualifiedErrorId -replace ',.*') }"
            $out = @(unshare -m --propagation private sh -c "$mount && umount -l '$R34LeadHierarchy' && exec `"`$@`"" sh @pwsh -NoProfile -NonInteractive -Command $script 2>&1 | ForEach-Object { "$_" })
            $said = ($out | Where-Object { $_ -like 'said=*' } | Select-Object -First 1) -replace '^said='
            $t.Process.HasExited | Should -BeFalse -Because "the cgroup's OOM killer killed nothing (Enable said '$said'; $($out -join ' | '))"
            $said | Should -Be 'ResourceLimit'
            $state = ((Get-Content "/proc/$($t.Id)/stat") -split ' ')[2]
            $state | Should -Not -BeIn 't', 'T'
            (Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -like 'TracerPid:*' }) -replace '\D' | Should -Be '0'
            @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }).Count | Should -Be 0 -Because 'nothing was injected'
        }
        finally {
            Stop-ImgTarget $t
            Set-Content "$R34LeadCgroup/$R34LeadLimitFile" $(if ($R34LeadV1) { '-1' } else { 'max' })
            Remove-Item -LiteralPath $mountPoint -Force -ErrorAction SilentlyContinue
        }
    }
}
