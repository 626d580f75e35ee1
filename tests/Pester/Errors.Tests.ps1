#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Every ErrorId and category of the /proc cmdlets, provoked for real.
# (PlatformNotSupported needs a non-Linux OS and is not faked here.)

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $support = Get-SoftDirtySupport
    $isRoot = (& id -u) -eq '0'
    $haveSetpriv = [bool](Get-Command setpriv -CommandType Application -ErrorAction SilentlyContinue)
    # An unprivileged run can try a process of another user for real: pid 1, where another user owns it.
    $pid1OfAnotherUser = -not $isRoot -and (Test-Path /proc/1/maps) -and (& stat -c %u /proc/1) -ne (& id -u)
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $PSDefaultParameterValues = @{ 'Get-PageMap:WarningAction' = 'SilentlyContinue' }
    $support = Get-SoftDirtySupport
    $t = Start-TestTarget
    $ps = $t.PageSize

    # Runs a scriptblock with an argument; returns its output objects and its non-terminating errors apart.
    function Invoke-Split([scriptblock] $Run, $Argument) {
        # Pester runs tests with $ErrorActionPreference = 'Stop': ask for non-terminating errors.
        $all = @(& $Run $Argument -ErrorAction Continue 2>&1)
        [pscustomobject]@{
            Output = @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
            Errors = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        }
    }
}

AfterAll {
    Stop-TestTarget -All
}

Describe 'ProcessNotFound' {
    It '<Name> reports a pid that does not exist (ObjectNotFound, the pid as target)' -ForEach @(
        @{ Name = 'Get-PageMap'; Class = 'GetPageMapCommand'; Run = { [CmdletBinding()] param($id) Get-PageMap -Id $id } }
        @{ Name = 'Get-MemoryMapping'; Class = 'GetMemoryMappingCommand'; Run = { [CmdletBinding()] param($id) Get-MemoryMapping -Id $id } }
        @{ Name = 'Clear-SoftDirty'; Class = 'ClearSoftDirtyCommand'; Run = { [CmdletBinding()] param($id) Clear-SoftDirty -Id $id } }
        @{ Name = 'Clear-PageReference'; Class = 'ClearPageReferenceCommand'; Run = { [CmdletBinding()] param($id) Clear-PageReference -Id $id -Type All } }
    ) {
        $bad = Get-UnusedProcessId
        { & $Run $bad -ErrorAction Stop } | Should -Throw -ErrorId "ProcessNotFound,SoftDirty.Commands.$Class"
        $r = Invoke-Split $Run $bad
        $r.Output | Should -BeNullOrEmpty
        $ev = $r.Errors
        $ev | Should -HaveCount 1
        $ev[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $ev[0].TargetObject | Should -Be $bad
    }

    It 'reports a process that exited between Get-Process and the cmdlet' {
        $gone = Start-TestTarget
        $proc = Get-Process -Id $gone.Id
        Stop-TestTarget $gone
        $out = $proc | Get-PageMap -ErrorVariable ev -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $ev | Should -HaveCount 1
        $ev[0].FullyQualifiedErrorId | Should -Be 'ProcessNotFound,SoftDirty.Commands.GetPageMapCommand'
        $ev[0].TargetObject | Should -Be $proc.Id
    }
}

Describe 'ProcessExited' {
    BeforeAll {
        # A child of the target that exited and was not reaped: /proc/PID exists but the mm is gone.
        $zombie = [int]$t.Send('forkexit')
        $state = ((Get-Content -Raw "/proc/$zombie/stat") -split '\) ')[1][0]
    }

    It 'the zombie is a zombie (state Z)' {
        $state | Should -Be 'Z'
    }

    It '<Name> on a zombie reports ProcessExited (ResourceUnavailable) and passes off no empty result as complete' -ForEach @(
        @{ Name = 'Get-PageMap'; Class = 'GetPageMapCommand'; Run = { [CmdletBinding()] param($id) Get-PageMap -Id $id } }
        @{ Name = 'Get-PageMap -AsRange -Present'; Class = 'GetPageMapCommand'; Run = { [CmdletBinding()] param($id) Get-PageMap -Id $id -AsRange -Present } }
        @{ Name = 'Get-MemoryMapping'; Class = 'GetMemoryMappingCommand'; Run = { [CmdletBinding()] param($id) Get-MemoryMapping -Id $id } }
        @{ Name = 'Clear-PageReference'; Class = 'ClearPageReferenceCommand'; Run = { [CmdletBinding()] param($id) Clear-PageReference -Id $id -Type All } }
    ) {
        $r = Invoke-Split $Run $zombie
        $r.Output | Should -BeNullOrEmpty
        $ev = $r.Errors
        $ev | Should -HaveCount 1
        $ev[0].FullyQualifiedErrorId | Should -Be "ProcessExited,SoftDirty.Commands.$Class"
        $ev[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        $ev[0].TargetObject | Should -Be $zombie
    }

    It 'Clear-SoftDirty on a zombie reports ProcessExited (needs a soft-dirty kernel)' -Tag Kernel -Skip:(-not $support.SoftDirty) {
        { Clear-SoftDirty -Id $zombie -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessExited,SoftDirty.Commands.ClearSoftDirtyCommand'
    }

    It 'still reads the live process after the zombie' {
        $m = $t.Map(1)
        $out = Get-PageMap -Id $zombie, $t.Id -Address $m -ErrorVariable ev -ErrorAction SilentlyContinue
        $ev | Should -HaveCount 1
        @($out) | Should -HaveCount 1
        $out.ProcessId | Should -Be $t.Id
    }

    AfterAll { $null = $t.TrySend("reap $zombie") }
}

Describe 'InvalidArgument' {
    BeforeAll {
        $m = $t.Map(4)
        # A page-aligned address below the lowest mapping, so inside no mapping.
        $low = (Get-MemoryMapping -Id $t.Id | Select-Object -First 1).Start - 16 * $ps
    }

    It 'reports <Name> as a non-terminating InvalidArgument' -ForEach @(
        @{ Name = 'an unaligned -Address'; Params = { @{ Address = $m + 1 } } }
        @{ Name = 'a -Length that is not a page multiple'; Params = { @{ Address = $m; Length = $ps + 100 } } }
        @{ Name = 'a -Length of 0'; Params = { @{ Address = $m; Length = 0 } } }
        @{ Name = 'a range outside any mapping'; Params = { @{ Address = $low; Length = 4 * $ps } } }
    ) {
        $p = & $Params
        { Get-PageMap -Id $t.Id @p -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.GetPageMapCommand'
        $out = Get-PageMap -Id $t.Id @p -ErrorVariable ev -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $ev | Should -HaveCount 1
        $ev[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'reports a range outside any mapping for each pid and goes on to the next' {
        $t2 = Start-TestTarget
        try {
            # An address mapped in $t and not in $t2 (both randomize their layout: try until one differs).
            $x = $m
            for ($i = 0; $i -lt 10 -and (Get-MemoryMapping -Id $t2.Id -Address $x); $i++) { $x = $t.Map(1) }
            Get-MemoryMapping -Id $t2.Id -Address $x | Should -BeNullOrEmpty
            $out = Get-PageMap -Id $t2.Id, $t.Id -Address $x -Length $ps -ErrorVariable ev -ErrorAction SilentlyContinue
            @($out) | Should -HaveCount 1
            $out.ProcessId | Should -Be $t.Id
            $ev | Should -HaveCount 1
            $ev[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,SoftDirty.Commands.GetPageMapCommand'
        } finally { Stop-TestTarget $t2 }
    }

    It 'stops at once with InvalidArgument for <Name>' -ForEach @(
        @{ Name = '-Length without -Address'; Run = { Get-PageMap -Id $t.Id -Length 4096 } }
        @{ Name = '-Address with -Mapping'; Run = { Get-PageMap -Id $t.Id -Address $m -Mapping '[heap]' } }
    ) {
        # Terminating: no -ErrorAction Stop needed.
        $err = $null
        try { & $Run -ErrorAction SilentlyContinue } catch { $err = $_ }
        $err | Should -Not -BeNullOrEmpty
        $err.FullyQualifiedErrorId | Should -Be 'InvalidArgument,SoftDirty.Commands.GetPageMapCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}

Describe 'MappingNotFound' {
    It 'reports a -Mapping that matches nothing (ObjectNotFound) for Get-PageMap' {
        { Get-PageMap -Id $t.Id -Mapping 'no-such-mapping*' -ErrorAction Stop } |
            Should -Throw -ErrorId 'MappingNotFound,SoftDirty.Commands.GetPageMapCommand'
        $out = Get-PageMap -Id $t.Id -Mapping 'no-such-mapping*' -ErrorVariable ev -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $ev | Should -HaveCount 1
        $ev[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $ev[0].TargetObject | Should -Be $t.Id
    }

    It 'goes on to the next pid after a MappingNotFound' {
        $file = Join-Path ([IO.Path]::GetTempPath()) "softdirty only-here $PID.bin"
        $t2 = Start-TestTarget
        try {
            $null = $t2.Map(2, "file `"$file`"")
            $out = Get-PageMap -Id $t.Id, $t2.Id -Mapping '*only-here*' -ErrorVariable ev -ErrorAction SilentlyContinue
            $ev | Should -HaveCount 1
            $ev[0].FullyQualifiedErrorId | Should -Be 'MappingNotFound,SoftDirty.Commands.GetPageMapCommand'
            $out | Should -HaveCount 2
            $out.ProcessId | Select-Object -Unique | Should -Be $t2.Id
        } finally {
            Stop-TestTarget $t2
            Remove-Item -LiteralPath $file -ErrorAction SilentlyContinue
        }
    }
}

Describe 'PermissionDenied' -Tag Privilege {
    BeforeAll {
        $isRoot = (& id -u) -eq '0'
        $haveSetpriv = [bool](Get-Command setpriv -CommandType Application -ErrorAction SilentlyContinue)
        if (-not ($isRoot -and $haveSetpriv)) { return }
        # A target owned by nobody, and a child pwsh that is uid 0 but holds no capability at all: it may
        # neither ptrace-read the target (no CAP_SYS_PTRACE) nor write its clear_refs (no CAP_DAC_OVERRIDE).
        $nobody = Start-TestTarget -Launcher setpriv, '--reuid=65534', '--regid=65534', '--clear-groups'
        $script = Join-Path ([IO.Path]::GetTempPath()) "softdirty-denied-$PID.ps1"
        Set-Content -LiteralPath $script -Value @'
param([string] $ModulePath, [int] $TargetId)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath
$capEff = ((Get-Content /proc/$PID/status | Where-Object { $_ -like 'CapEff:*' }) -split '\s+')[1]
$results = [ordered]@{ Uid = (& id -u); CapEff = $capEff }
$runs = [ordered]@{
    'Get-PageMap' = { Get-PageMap -Id $TargetId -WarningAction SilentlyContinue }
    'Get-MemoryMapping' = { Get-MemoryMapping -Id $TargetId }
    'Clear-PageReference' = { Clear-PageReference -Id $TargetId -Type All }
    'Clear-SoftDirty' = { Clear-SoftDirty -Id $TargetId }
}
foreach ($name in $runs.Keys) {
    try { $null = & $runs[$name]; $results[$name] = @{ ErrorId = $null } }
    catch { $results[$name] = @{ ErrorId = $_.FullyQualifiedErrorId; Category = "$($_.CategoryInfo.Category)"; Message = "$_"; Target = $_.TargetObject } }
}
# Its own pages: readable (same uid, no capabilities to exceed), but the PFNs are hidden.
$own = Get-PageMap -Id $PID -Present -WarningAction SilentlyContinue | Select-Object -First 50
$results.OwnPresent = @($own).Count
$results.OwnPfns = @($own | Where-Object { $null -ne $_.Pfn }).Count
$results.PfnVisible = (Get-SoftDirtySupport).PfnVisible
$results | ConvertTo-Json -Compress -Depth 4
'@
        $pwsh = Get-PwshCommandLine
        $json = & setpriv --bounding-set=-all --inh-caps=-all @pwsh -NoProfile -NonInteractive -File $script -ModulePath $env:SOFTDIRTY_MODULE -TargetId $nobody.Id 2>&1
        $exit = $LASTEXITCODE
        $r = try { ($json | Select-Object -Last 1) | ConvertFrom-Json } catch { $null }
    }
    AfterAll {
        if ($nobody) { Stop-TestTarget $nobody }
        if ($script) { Remove-Item -LiteralPath $script -ErrorAction SilentlyContinue }
    }

    It 'the child pwsh ran as uid 0 without any capability, against a target owned by nobody (needs root and setpriv)' -Skip:(-not ($isRoot -and $haveSetpriv)) {
        $exit | Should -Be 0 -Because ($json -join "`n")
        $r.Uid | Should -Be '0'
        $r.CapEff | Should -Match '^0+$'
        (Get-Content "/proc/$($nobody.Id)/status" | Where-Object { $_ -like 'Uid:*' }) | Should -Match '\b65534\b'
    }

    It '<Name> reports PermissionDenied and says what privilege is needed (needs root and setpriv)' -Skip:(-not ($isRoot -and $haveSetpriv)) -ForEach @(
        @{ Name = 'Get-PageMap'; Class = 'GetPageMapCommand' }
        @{ Name = 'Get-MemoryMapping'; Class = 'GetMemoryMappingCommand' }
        @{ Name = 'Clear-PageReference'; Class = 'ClearPageReferenceCommand' }
    ) {
        $e = $r.$Name
        $e.ErrorId | Should -Be "PermissionDenied,SoftDirty.Commands.$Class"
        $e.Category | Should -Be 'PermissionDenied'
        $e.Target | Should -Be $nobody.Id
        $e.Message | Should -Match 'CAP_SYS_PTRACE|root'
    }

    It 'Clear-SoftDirty reports SoftDirtyNotSupported before permissions on a kernel without soft-dirty, PermissionDenied with it (needs root and setpriv)' -Skip:(-not ($isRoot -and $haveSetpriv)) {
        $expect = if ($support.SoftDirty) { 'PermissionDenied' } else { 'SoftDirtyNotSupported' }
        $r.'Clear-SoftDirty'.ErrorId | Should -Be "$expect,SoftDirty.Commands.ClearSoftDirtyCommand"
    }

    It '<Name> on another user''s process (pid 1) reports PermissionDenied (needs an unprivileged run, pid 1 of another user)' -Skip:(-not $pid1OfAnotherUser) -ForEach @(
        @{ Name = 'Get-PageMap'; Class = 'GetPageMapCommand'; Run = { [CmdletBinding()] param($id) Get-PageMap -Id $id -WarningAction SilentlyContinue } }
        @{ Name = 'Get-MemoryMapping'; Class = 'GetMemoryMappingCommand'; Run = { [CmdletBinding()] param($id) Get-MemoryMapping -Id $id } }
        @{ Name = 'Clear-PageReference'; Class = 'ClearPageReferenceCommand'; Run = { [CmdletBinding()] param($id) Clear-PageReference -Id $id -Type All } }
    ) {
        $r = Invoke-Split $Run 1
        $r.Output | Should -BeNullOrEmpty
        $r.Errors | Should -HaveCount 1
        $r.Errors[0].FullyQualifiedErrorId | Should -Be "PermissionDenied,SoftDirty.Commands.$Class"
        $r.Errors[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
        $r.Errors[0].TargetObject | Should -Be 1
    }

    It 'hides PFNs from a caller without CAP_SYS_ADMIN (Pfn is null, PfnVisible false) (needs root and setpriv)' -Skip:(-not ($isRoot -and $haveSetpriv)) {
        $r.OwnPresent | Should -BeGreaterThan 0
        $r.OwnPfns | Should -Be 0
        $r.PfnVisible | Should -BeFalse
    }
}
