#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-eighth attack round, the lead's cases: what round 27 left open of failed commands.
# Found: where a save, a restore or a receive failed half-way (a write refused) and the hidden unfinished folder could not
# be removed either (a disk gone read-only, a folder made append-only), the folder stayed without a word: the error said
# only what failed, while the folder (no command reads it) held part of a process's memory. Round 27 named it only where
# the final rename failed. And (left open by r28limits, shown here): root, acting on another user's process, read its
# out-of-descriptors failure to open that user's soft-dirty epoch folder as "the user has none": its clear left the user's
# record as it was (the user's chain then trusted the bits root took) and its epoch left out the user's clears. Likewise the
# search for processes that share the target's memory (clone CLONE_VM, round 15) took a sharer whose /proc/PID/statm it
# could not open (out of descriptors) for one without memory: -Freeze left it writing into a "frozen" image, and a clear
# recorded no epoch for it. The same reading of "out of descriptors" as "no" sat in the other /proc readers a save or a
# clear trusts: whether KSM touched the process (its merges take soft-dirty bits), the io_uring buffers the kernel writes,
# the process's start time (its epoch record's name). Every case below failed before.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $StraceSkip = Get-StraceSkipReason 'the failed removal is injected with strace'
    if (-not $StraceSkip -and -not (Get-Command prlimit -CommandType Application -ErrorAction Ignore)) { $StraceSkip = 'prlimit (util-linux) is not installed: the failed write is a file-size limit' }
}

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $ForeignSkip = if ($StraceSkip) { $StraceSkip }
    elseif (-not $IsRoot) { 'needs root: root acting on a process of another user (65534) reads and writes that user''s epoch folder' }
    elseif (-not (Get-Command setpriv -CommandType Application -ErrorAction Ignore)) { 'needs setpriv (util-linux) to start a process as another user' }
    # A process sharing the target's memory (shtarget sweeper: clone CLONE_VM), found by kcmp(KCMP_VM) (CONFIG_KCMP), frozen
    # with ptrace (Yama's ptrace_scope).
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $SharerSkip = if ($StraceSkip) { $StraceSkip }
    elseif ($yama -ge 1 -and -not $IsRoot) { "Yama's ptrace_scope $yama forbids ptrace of a process that is not a child here" }
    else {
        $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/shtarget')
        try {
            $a = $probe.Send('map 4')
            $reply = $probe.TrySend("sweeper $a 4")
            if ($reply -notmatch '^OK (\d+)') { "clone(CLONE_VM) is refused here ($reply)" }
            elseif (($kcmp = $probe.TrySend("kcmp $($Matches[1])")) -ne 'OK 0') { "kcmp(KCMP_VM) cannot tell that two processes share memory here (CONFIG_KCMP): $kcmp" }
            $null = $probe.TrySend('sweepstop')
        } finally { Stop-TestTarget $probe }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r28lead')).FullName
    # 256 KiB of memory: past the 64 KiB file-size limit the child sets.
    $f = New-FilledEmulator 64
    $script:source = "$root/source"
    $null = Save-MemoryImage -Emulator $f.Emulator -Path $source
}

Describe 'Round 28: a command that fails half-way where its unfinished folder cannot be removed' -Tag 'Security', 'Round28Lead' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        $script:out = (New-Item -ItemType Directory (Join-Path $root "left-$([guid]::NewGuid().ToString('n'))")).FullName
        # The child: writes refused past 64 KiB (its file-size limit, soft), every removal refused (strace: EROFS, as on a disk
        # remounted read-only). Each case prints its error id and message.
        $pwsh = Get-PwshCommandLine
        $command = @"
`$ErrorActionPreference = 'Stop'; `$PSStyle.OutputRendering = 'PlainText'; Import-Module '$module'
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 256KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
& prlimit --pid `$PID --fsize=65536:
function Case([string] `$Name, [scriptblock] `$C) { try { `$null = & `$C; "`$Name=none" } catch { "`$Name=`$(`$_.FullyQualifiedErrorId -replace ',.*')|`$(`$_.Exception.Message -replace '\r?\n', ' ')" } }
Case save { Save-MemoryImage -Emulator `$e -Path '$out/s/img' }
Case restore { Restore-MemoryImage -Path '$source' -Destination '$out/r/rest' }
Case receive { Get-ChildItem -LiteralPath '$source' | Receive-MemoryImage -Path '$out/v/recv' -Confirm:`$false }
& prlimit --pid `$PID --fsize=unlimited
"@
        $script:said = @(strace -f -qq -o /dev/null --seccomp-bpf -e trace=unlinkat -e inject=unlinkat:error=EROFS @pwsh -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" })
    }
    AfterAll { Remove-Item -LiteralPath $out -Recurse -Force -ErrorAction Ignore }

    It '<Command> says ImageWriteError, names the unfinished folder it left, and that folder is the only thing there' -ForEach @(
        @{ Command = 'Save-MemoryImage'; Case = 'save'; Folder = 's'; Name = 'img' }
        @{ Command = 'Restore-MemoryImage'; Case = 'restore'; Folder = 'r'; Name = 'rest' }
        @{ Command = 'Receive-MemoryImage'; Case = 'receive'; Folder = 'v'; Name = 'recv' }
    ) {
        $line = $said | Where-Object { $_ -like "$Case=*" } | Select-Object -First 1
        $line | Should -Not -BeNullOrEmpty -Because ($said -join "`n")
        $id, $message = ($line -replace '^[^=]*=') -split '\|', 2
        $id | Should -Be 'ImageWriteError' -Because $line
        # Before: the message said only that the write failed; the hidden folder stayed unnamed.
        $left = @(Get-ChildItem -Force -Name -LiteralPath "$out/$Folder")
        $left.Count | Should -Be 1 -Because "only the unfinished folder stays ($($left -join ', '))"
        $left[0] | Should -BeLike ".$Name.partial-*"
        $message | Should -BeLike "*$out/$Folder/$($left[0])*could not be removed*" -Because $line
        Test-Path -LiteralPath "$out/$Folder/$Name" | Should -BeFalse -Because 'nothing was put in place'
    }
}

Describe 'Round 28: root out of descriptors where it opens the epoch folder of the user whose process it clears' -Tag 'Security', 'Round28Lead' -Skip:([bool]$ForeignSkip) {
    BeforeAll {
        # The epoch folders (TrackingEpoch.SharedTempFolder and RuntimeRoot, internal) point at folders of this test in the
        # child: the machine's own, which other commands use, are left alone. The user's folder exists (theirs, 0700), as
        # after any command of theirs.
        $script:folders = (New-Item -ItemType Directory (Join-Path $root "epochs-$([guid]::NewGuid().ToString('n'))")).FullName
        foreach ($d in 'tmp', 'run') { $null = New-Item -ItemType Directory (Join-Path $folders $d) }
        chmod -R 0755 $folders
        $script:owners = Join-Path $folders 'tmp/softdirty-epochs-65534'
        $null = New-Item -ItemType Directory $owners
        chown 65534 $owners; chmod 0700 $owners
        $script:sleeper = Start-Process setpriv -ArgumentList '--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '600' -PassThru
        $deadline = [DateTime]::UtcNow.AddMinutes(1) # hang guard only
        while ((Get-Content "/proc/$($sleeper.Id)/comm" -ErrorAction Ignore) -ne 'sleep' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
        $script:child = Join-Path $root 'epoch-child.ps1'
        @'
param([string] $Module, [string] $Folders, [int] $Target)
Import-Module $Module
$I = [Reflection.BindingFlags] 'Static, Public, NonPublic'
$engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
$epoch = $engine.GetType('SoftDirty.Tracking.TrackingEpoch', $true)
$epoch.GetProperty('SharedTempFolder', $I).SetValue($null, "$Folders/tmp")
$epoch.GetProperty('RuntimeRoot', $I).SetValue($null, "$Folders/run")
$source = $engine.GetType('SoftDirty.ProcPageSource', $true).GetMethod('Open', [type[]]@([int])).Invoke($null, [object[]]@($Target))
function Said([scriptblock] $Call) {
    try { "ok|$(& $Call)" }
    catch { $x = $_.Exception; while ($x -isnot [SoftDirty.EngineException] -and $x.InnerException) { $x = $x.InnerException }; "$(if ($x -is [SoftDirty.EngineException]) { $x.Error } else { $x.GetType().FullName })|$($x.Message)" }
}
'lock=' + (Said { $epoch.GetMethod('Lock', $I).Invoke($null, [object[]]@($source, [Threading.CancellationToken]::None)).Dispose() })
'record=' + (Said { $epoch.GetMethod('Record', $I).Invoke($null, [object[]]@($source)) })
'current=' + (Said { $epoch.GetMethod('Current', $I).Invoke($null, [object[]]@($source)) })
'@ | Set-Content -LiteralPath $child
        function script:Invoke-Child([string[]] $Strace) {
            $pwsh = Get-PwshCommandLine # one path, or dotnet and pwsh.dll (an array either way)
            $run = @(if ($Strace) { @('strace', '-f', '-qq', '-o', '/dev/null', '--seccomp-bpf') + $Strace + $pwsh } else { $pwsh })
            $out = & $run[0] @($run | Select-Object -Skip 1) -NoProfile -NonInteractive -File $child -Module $module -Folders $folders -Target $sleeper.Id 2>&1
            $lines = @($out | ForEach-Object { "$_" })
            $said = @{}
            foreach ($n in 'lock', 'record', 'current') { $said[$n] = ($lines | Where-Object { $_ -like "$n=*" } | Select-Object -First 1) -replace '^[^=]*=' }
            $said['all'] = $lines -join "`n"
            $said
        }
    }
    AfterAll {
        if ($sleeper -and -not $sleeper.HasExited) { $sleeper.Kill(); $sleeper.WaitForExit() }
        Remove-Item -LiteralPath $folders -Recurse -Force -ErrorAction Ignore
    }

    It 'with descriptors to spare, root records into the user''s folder and its epoch reads it (the setting is what the case needs)' {
        $said = Invoke-Child
        $said.lock | Should -Be 'ok|' -Because $said.all
        $said.record | Should -BeLike "ok|*$owners=*" -Because $said.all
        $said.current | Should -BeLike "ok|*$owners=*" -Because $said.all
    }

    It 'out of descriptors at that folder, the lock, the record and the epoch say ResourceLimit: nothing is cleared on an epoch that leaves the user out' {
        # Before: all three succeeded without the user's folder (record=ok, current=ok with no $owners in it): a clear after
        # them left the user's record as it was, and the user's chain trusted the soft-dirty bits root's clear had taken.
        # strace matches the name as the module opens it (openat of 'softdirty-epochs-65534' relative to the folder above): only
        # that open fails, not those of the files in it (its lock, its record), which say ResourceLimit already.
        Push-Location $root
        try { $said = Invoke-Child -Strace '-P', 'softdirty-epochs-65534', '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE' }
        finally { Pop-Location }
        foreach ($n in 'lock', 'record', 'current') {
            $said[$n] | Should -BeLike 'ResourceLimit|*' -Because "$n ($($said.all))"
            $said[$n] | Should -BeLike "*$owners*" -Because 'the error names the folder'
        }
    }
}

Describe 'Round 28: out of descriptors while looking for the processes that share the target''s memory' -Tag 'Security', 'Round28Lead' -Skip:([bool]$SharerSkip) {
    BeforeAll {
        $script:t = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/shtarget')
        $a = $t.Send('map 4')
        $null = $t.Send("fill $a 4 7")
        $reply = $t.Send("sweeper $a 4")
        $script:sharer = [int]($reply -replace '^OK ')
        $script:sharerChild = Join-Path $root 'sharer-child.ps1'
        @'
param([string] $Module, [int] $Target, [string] $Out)
Import-Module $Module
$ErrorActionPreference = 'Stop'
$I = [Reflection.BindingFlags] 'Static, Public, NonPublic'
$engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
$sharers = $engine.GetType('SoftDirty.Tracking.MemorySharers', $true)
function Said([scriptblock] $Call) {
    try { "ok|$(& $Call)" }
    catch { $x = $_.Exception; while ($x -isnot [SoftDirty.EngineException] -and $x.InnerException) { $x = $x.InnerException }; "$(if ($x -is [SoftDirty.EngineException]) { $x.Error } else { $x.GetType().FullName })|$($x.Message)" }
}
'find=' + (Said { $sharers.GetMethod('Find', $I).Invoke($null, [object[]]@($Target)) -join ',' })
'freeze=' + (Said { $null = Save-MemoryImage -Id $Target -Freeze -Method Hash -Path $Out -Confirm:$false })
'@ | Set-Content -LiteralPath $sharerChild
        function script:Invoke-SharerChild([string[]] $Strace) {
            $pwsh = Get-PwshCommandLine
            $run = @(if ($Strace) { @('strace', '-f', '-qq', '-o', '/dev/null', '--seccomp-bpf') + $Strace + $pwsh } else { $pwsh })
            $out = Join-Path $root "frozen-$([guid]::NewGuid().ToString('n'))"
            $lines = @(& $run[0] @($run | Select-Object -Skip 1) -NoProfile -NonInteractive -File $sharerChild -Module $module -Target $t.Id -Out $out 2>&1 | ForEach-Object { "$_" })
            @{
                find = ($lines | Where-Object { $_ -like 'find=*' } | Select-Object -First 1) -replace '^[^=]*='
                freeze = ($lines | Where-Object { $_ -like 'freeze=*' } | Select-Object -First 1) -replace '^[^=]*='
                saved = Test-Path -LiteralPath $out
                all = $lines -join "`n"
            }
        }
    }
    AfterAll {
        if ($t) { $null = $t.TrySend('sweepstop'); Stop-TestTarget $t }
    }

    It 'with descriptors to spare, the sharer is found and -Freeze saves (the setting is what the case needs)' {
        $said = Invoke-SharerChild
        $said.find | Should -Be "ok|$sharer" -Because $said.all
        $said.freeze | Should -Be 'ok|' -Because $said.all
    }

    It 'out of descriptors at the sharer''s statm, the search and -Freeze say ResourceLimit, and nothing is saved' {
        # Before: find=ok| (no sharer) and freeze=ok|: an image said to be frozen while the sharer went on writing.
        $said = Invoke-SharerChild -Strace '-P', "/proc/$sharer/statm", '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE'
        $said.find | Should -BeLike 'ResourceLimit|*' -Because $said.all
        $said.freeze | Should -BeLike 'ResourceLimit|*' -Because $said.all
        $said.saved | Should -BeFalse
    }
}

Describe 'Round 28: the /proc readers a save or a clear trusts, out of descriptors' -Tag 'Security', 'Round28Lead' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        $script:sleeper = Start-Process sleep -ArgumentList '600' -PassThru
        $script:readerChild = Join-Path $root 'reader-child.ps1'
        @'
param([string] $Module, [int] $Target, [string] $Reader)
Import-Module $Module
$I = [Reflection.BindingFlags] 'Static, Public, NonPublic'
$engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
$call = switch ($Reader) {
    'KsmMergeable' { { $engine.GetType('SoftDirty.KsmMergeable', $true).GetMethod('Touched', $I).Invoke($null, [object[]]@($Target)) } }
    'PinnedBuffers' { { @($engine.GetType('SoftDirty.PinnedBuffers', $true).GetMethod('Read', $I).Invoke($null, [object[]]@($Target, 4096))).Count } }
    'ProcessStart' { { $engine.GetType('SoftDirty.ProcessStart', $true).GetMethod('Ticks', $I).Invoke($null, [object[]]@($Target)) } }
}
try { "said=ok|$(& $call)" }
catch { $x = $_.Exception; while ($x -isnot [SoftDirty.EngineException] -and $x.InnerException) { $x = $x.InnerException }; "said=$(if ($x -is [SoftDirty.EngineException]) { $x.Error } else { $x.GetType().FullName })|$($x.Message)" }
'@ | Set-Content -LiteralPath $readerChild
    }
    AfterAll { if ($sleeper -and -not $sleeper.HasExited) { $sleeper.Kill(); $sleeper.WaitForExit() } }

    It '<Reader> says ResourceLimit where it cannot open <Files>, not "no"' -ForEach @(
        # Before: False (KSM never touched it: the merged pages' lost soft-dirty bits trusted), 0 buffers (the kernel's
        # writes into them not compared), no start time (no epoch record made for a clear that went on).
        @{ Reader = 'KsmMergeable'; Files = 'ksm_stat, ksm_merging_pages' }
        @{ Reader = 'PinnedBuffers'; Files = 'status' }
        @{ Reader = 'ProcessStart'; Files = 'stat' }
    ) {
        $pwsh = Get-PwshCommandLine
        $strace = @('strace', '-f', '-qq', '-o', '/dev/null', '--seccomp-bpf', '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE')
        foreach ($f in $Files -split ', ') { $strace += '-P', "/proc/$($sleeper.Id)/$f" }
        $run = @($strace + $pwsh)
        $lines = @(& $run[0] @($run | Select-Object -Skip 1) -NoProfile -NonInteractive -File $readerChild -Module $module -Target $sleeper.Id -Reader $Reader 2>&1 | ForEach-Object { "$_" })
        $said = ($lines | Where-Object { $_ -like 'said=*' } | Select-Object -First 1) -replace '^said='
        $said | Should -BeLike 'ResourceLimit|*' -Because ($lines -join "`n")
        $said | Should -BeLike "*/proc/$($sleeper.Id)/*" -Because 'the error names what could not be read'
    }
}
