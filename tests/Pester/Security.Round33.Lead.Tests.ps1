#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 33 (Lead): what round 32 left open in the lead's own code.
# Found: a MAP_DROPPABLE mapping of a process under another process's write tracking was offered to the kernel for
# registration at every look (a save, a watch sample), by injection: the process stopped and was made to run
# UFFDIO_REGISTER, which the kernel refuses for VM_DROPPABLE, each time. Not a miss (the mapping's present pages count
# at every look), but a stop of the process at every look for nothing. smaps names such a mapping ("dp"), and the look
# that reads smaps no longer offers it. Failed before: 3 increments injected 3 times (one PTRACE_SEIZE each), now none.
# Found (round 32 left it open): a Hash watch of a file mapping truncated while a sample read it. The pages past the new end,
# found present by the walk and gone when read, kept an unknown hash, which no comparison counts; the next sample found
# them not present, against that unknown hash: the change (data gone, the process gets SIGBUS there) was counted by no
# sample. An increment of the same moment records them zero where its chain had data (round 32). Now the snapshot hashes
# them as the zero page: the sample counts them once. Failed before: the samples counted 0 pages, not pages 3-7.

BeforeDiscovery {
    $R33LeadWtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    # The truncation during a sample: strace holds the watch's second read, in a child PowerShell that is the target's
    # sibling (Yama's ptrace_scope 1 lets a user read only its descendants' memory).
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $R33LeadMidSkip = if (-not $IsLinux) { 'Linux only' } else { Get-StraceSkipReason 'the sample''s read is held with strace while the file is truncated' }
    if (-not $R33LeadMidSkip -and $yama -ge 1 -and (id -u) -ne '0') { $R33LeadMidSkip = "Yama's ptrace_scope ${yama}: the watching PowerShell is the target's sibling" }
    if (-not $R33LeadMidSkip -and $yama -ge 3) { $R33LeadMidSkip = "Yama's ptrace_scope $yama forbids ptrace" }
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

Describe 'Round 33: a Hash watch of a file truncated while a sample reads it' -Tag 'Security', 'Round33Lead' -Skip:([bool]$R33LeadMidSkip) {
    It 'the pages past the new end count once, in that sample (<How>)' -ForEach @(
        @{ How = 'shared' }
        @{ How = 'private' }
    ) {
        $t = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/exotarget')
        try {
            $file = Join-Path $R33LeadRoot "file-$([guid]::NewGuid().ToString('n'))"
            $hex = $t.Send("file $file 8 $How 55")
            $base = [Convert]::ToUInt64($hex, 16)
            # The watch's reads are one process_vm_readv each (8 pages), every one held 2 s at its entry: the first is the
            # baseline's, the second sample 1's. A thread of the child counts the holds (a thread of it waiting there, 100 ms
            # looks) and truncates the file to 3 pages in the second; the watch starts once it looks. (strace counts "when="
            # per thread, and the reads need not be made by one thread.)
            $module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
            $script = @"
`$sync = [hashtable]::Synchronized(@{ Ready = `$false })
`$cutter = Start-ThreadJob {
    (`$using:sync).Ready = `$true
    `$deadline = [DateTime]::UtcNow.AddSeconds(120)
    `$holds = 0
    `$in = `$false
    while ([DateTime]::UtcNow -lt `$deadline) {
        `$waiting = `$false
        foreach (`$task in [IO.Directory]::GetDirectories('/proc/self/task')) {
            `$call = try { [IO.File]::ReadAllText("`$task/syscall") } catch { '' }
            if (`$call -match '^310 ') { `$waiting = `$true }
        }
        if (`$waiting -and -not `$in -and ++`$holds -eq 2) { `$f = [IO.File]::Open('$file', 'Open', 'ReadWrite'); `$f.SetLength($(3 * $t.PageSize)); `$f.Dispose(); 'cut=held'; return }
        `$in = `$waiting
        [Threading.Thread]::Sleep(100)
    }
    "cut=never (holds: `$holds)"
}
while (-not `$sync.Ready) { [Threading.Thread]::Sleep(20) }
foreach (`$s in Watch-DirtyPage -Id $($t.Id) -Method Hash -Mapping '$file' -Interval 0.2 -Count 3 -WarningAction SilentlyContinue) {
    "sample=`$(`$s.Index):`$((`$s.Ranges | ForEach-Object { '{0:x}-{1:x}' -f `$_.Start, `$_.End }) -join ',')"
}
`$cutter | Wait-Job | Receive-Job
"@
            $r = Invoke-StraceChild -Module $module -Script $script -Strace @('-e', 'trace=process_vm_readv', '-e', 'inject=process_vm_readv:delay_enter=2000000')
            $r.Out | Should -Contain 'cut=held' -Because "the file was truncated while sample 1's read was held ($($r.All))"
            $want = '{0:x}-{1:x}' -f ($base + 3 * $t.PageSize), ($base + 8 * $t.PageSize)
            @($r.Out | Where-Object { $_ -like 'sample=*' }) | Should -Be @("sample=1:$want", 'sample=2:', 'sample=3:') -Because "pages 3-7 went with the truncation, and only then ($($r.All))"
        } finally { Stop-TestTarget $t }
    }
}
