#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fifteenth attack round, on how PowerShell hands objects and control to the module's cmdlets: pipeline
# binding of objects of other kinds, pipelines between the module's own cmdlets, stopping, and runspaces running module
# commands at once (new cases only; earlier rounds are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and
# WriteTracking.Tests.ps1).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:NoTracking = Get-WriteTrackingSkipReason
    $script:NoThreadJob = if (-not (Get-Command Start-ThreadJob -ErrorAction SilentlyContinue)) { 'the ThreadJob module is not available' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r15')
    chmod 0755 $TestDrive $root
    function New-Name { [guid]::NewGuid().ToString('n') }
    # An object of a .NET type that is neither a process nor the module's, whose Id the test chooses (a job's or a
    # runspace's Id is a small number that the test cannot point at its own target).
    if (-not ('Round15.Ticket' -as [type])) {
        Add-Type -TypeDefinition 'namespace Round15 { public sealed class Ticket { public int Id { get; set; } public string Name { get; set; } } }'
    }
}

AfterAll { Stop-TestTarget -All }

Describe 'Objects whose Id is not a process id, piped into the commands that bind -Id by property name' -Tag 'Security', 'Round15Binding' {
    # PowerShell binds a piped object's Id (then PID, ProcessId) to -Id by property name, whatever the object is: Get-Job |
    # Enable-WriteTracking injected into the process whose pid was the job's number (1: init, or whatever runs as pid 1 in
    # a container), Get-Runspace | Clear-SoftDirty cleared pid 1's soft-dirty bits, Get-History | Save-MemoryImage -Freeze
    # stopped whatever process had the history entry's number. Stop-Process does the same (a known trap); these commands
    # act on memory and tracking the user never named, with no prompt at the default $ConfirmPreference. Now an Id that
    # comes from an object that is not a process, a thread, one of the module's objects or an object made in PowerShell is
    # InvalidArgument naming the object's type, before the process is opened: nothing is read, stopped or written.
    BeforeAll {
        $script:t = Start-TestTarget
        $null = $t.Map(4)
        $script:ticket = [Round15.Ticket]@{ Id = $t.Id; Name = 'sdtarget' }
    }
    AfterAll { Stop-TestTarget $t }

    It 'a <Kind> whose Id is a live pid, piped into <Command>: InvalidArgument naming the type, and nothing done to that process' -ForEach @(
        foreach ($c in @(
                @{ Command = 'Get-MemoryMapping'; Run = { $input | Get-MemoryMapping } }
                @{ Command = 'Get-PageMap'; Run = { $input | Get-PageMap -Present -AsRange } }
                @{ Command = 'Search-PageMap'; Run = { $input | Search-PageMap -Category Present } }
                @{ Command = 'Get-SoftDirtySupport'; Run = { $input | Get-SoftDirtySupport } }
                @{ Command = 'Watch-DirtyPage'; Run = { $input | Watch-DirtyPage -Count 1 -Interval 0.01 -Method Hash } }
                @{ Command = 'Clear-SoftDirty -WhatIf'; Run = { $input | Clear-SoftDirty -WhatIf } }
                @{ Command = 'Clear-PageReference'; Run = { $input | Clear-PageReference -Type PeakRss -PassThru } }
                @{ Command = 'Enable-WriteTracking -WhatIf'; Run = { $input | Enable-WriteTracking -WhatIf } }
                @{ Command = 'Disable-WriteTracking'; Run = { $input | Disable-WriteTracking -PassThru } }
                @{ Command = 'Save-MemoryImage -Freeze -WhatIf'; Run = { $input | Save-MemoryImage -Path (Join-Path $root (New-Name)) -Freeze -WhatIf } }
                @{ Command = 'Invoke-PreCopyMigration -WhatIf'; Run = { $input | Invoke-PreCopyMigration -Bandwidth 1GB -MaxIterations 1 -WhatIf } }
            )) {
            $c + @{ Kind = 'Round15.Ticket' }
            $c + @{ Kind = 'Selected.Round15.Ticket' }
        }
    ) {
        $o = if ($Kind -like 'Selected.*') { $ticket | Select-Object Id, Name } else { $ticket }
        # -WhatIf's line goes to the host: a refusal says InvalidArgument before ShouldProcess, so none is asked for.
        $ErrorActionPreference = 'Continue'
        $all = @($o | & $Run 2>&1)
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $out = @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        $out | Should -BeNullOrEmpty -Because "nothing of process $($t.Id) is read, and no object says it was acted on"
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike "*piped $Kind has an Id ($($t.Id)) that is not a process id*-Id $($t.Id)*"
        $t.Process.HasExited | Should -BeFalse
        Get-ProcessState $t.Id | Should -Not -Be 't' -Because 'it is not stopped'
    }

    It '<Source> | <Command> -WhatIf: InvalidArgument, and no What if line names a process' -ForEach @(
        foreach ($s in 'Get-Job', 'Get-Runspace', 'Get-History', 'Get-PSBreakpoint') {
            @{ Source = $s; Command = 'Enable-WriteTracking' }
            @{ Source = $s; Command = 'Clear-SoftDirty' }
            @{ Source = $s; Command = 'Save-MemoryImage' }
        }
    ) {
        # In a child pwsh: What if lines go to its host, which is its standard output here.
        $make = switch ($Source) {
            'Get-Job' { '$null = Start-ThreadJob { 1 } | Wait-Job; $o = @(Get-Job)' }
            'Get-Runspace' { '$o = @(Get-Runspace)' }
            'Get-History' { 'Add-History -InputObject ([pscustomobject]@{ CommandLine = ''x''; ExecutionStatus = ''Completed''; StartExecutionTime = (Get-Date); EndExecutionTime = (Get-Date) }); $o = @(Get-History)' }
            'Get-PSBreakpoint' { '$null = Set-PSBreakpoint -Variable r15NeverUsed; $o = @(Get-PSBreakpoint)' }
        }
        $extra = if ($Command -eq 'Save-MemoryImage') { "-Path '$(Join-Path $root (New-Name))'" } else { '' }
        $out = Invoke-ChildPwsh -ImportModule "$make; `$o.Count; `$o | $Command $extra -WhatIf -ErrorAction SilentlyContinue -ErrorVariable err; 'ERR ' + (`$err.FullyQualifiedErrorId -join ' ')" | ForEach-Object { "$_" }
        [int]$out[0] | Should -BeGreaterThan 0 -Because "$Source gave objects to pipe"
        $out | Should -Not -Match 'What if' -Because ($out -join "`n")
        $errors = ($out | Where-Object { $_ -like 'ERR *' }) -split ' ' | Select-Object -Skip 1
        $errors | Should -Not -BeNullOrEmpty
        $errors | ForEach-Object { $_ | Should -BeLike 'InvalidArgument,*' }
    }

    It 'what names a process still binds -Id: <Kind>' -ForEach @(
        @{ Kind = 'Get-Process'; Make = { Get-Process -Id $t.Id } }
        @{ Kind = 'a process through Select-Object'; Make = { Get-Process -Id $t.Id | Select-Object Id, Name } }
        @{ Kind = 'a process through Export-Clixml and Import-Clixml'; Make = { $f = Join-Path $root "$(New-Name).xml"; Get-Process -Id $t.Id | Export-Clixml $f -Depth 1; Import-Clixml $f } }
        @{ Kind = '[pscustomobject]@{ Id }'; Make = { [pscustomobject]@{ Id = $t.Id } } }
        @{ Kind = 'Import-Csv'; Make = { "Id,Name`n$($t.Id),x" | ConvertFrom-Csv } }
        @{ Kind = 'ConvertFrom-Json'; Make = { "{ ""Id"": $($t.Id) }" | ConvertFrom-Json } }
        @{ Kind = 'a mapping (ProcessId)'; Make = { Get-MemoryMapping -Id $t.Id | Select-Object -First 1 } }
        @{ Kind = 'an object of another type with a PID property'; Make = { [pscustomobject]@{ PID = $t.Id } } }
        @{ Kind = 'the test target object (a pscustomobject with a PSTypeName)'; Make = { $t } }
    ) {
        $o = & $Make
        $m = @($o | Get-MemoryMapping -ErrorAction Stop)
        $m.Count | Should -BeGreaterThan 0
        $m.ProcessId | Sort-Object -Unique | Should -Be $t.Id
    }

    It 'a job piped with -Id on the command line works on that -Id (the pipeline gave no pid)' -Skip:([bool]$NoThreadJob) {
        $j = Start-ThreadJob { 1 } | Wait-Job
        try {
            $m = @($j | Get-MemoryMapping -Id $t.Id -ErrorAction Stop)
            $m.Count | Should -BeGreaterThan 0
            $m.ProcessId | Sort-Object -Unique | Should -Be $t.Id
        } finally { $j | Remove-Job }
    }

    It 'an Id of <Kind>: <Expect>' -ForEach @(
        @{ Kind = 'a word'; Value = 'abc'; Expect = 'a binding error' }
        @{ Kind = '$null'; Value = $null; Expect = 'a binding error' }
        @{ Kind = 'a negative number'; Value = -7; Expect = 'ProcessNotFound' }
        @{ Kind = 'a number past Int32'; Value = 4294967296L; Expect = 'a binding error' }
    ) {
        $caught = try { $null = [pscustomobject]@{ Id = $Value } | Get-MemoryMapping -ErrorAction Stop; $null } catch { $_ }
        $caught | Should -Not -BeNullOrEmpty
        if ($Expect -eq 'ProcessNotFound') { $caught.FullyQualifiedErrorId | Should -BeLike 'ProcessNotFound,*' }
        else { $caught.FullyQualifiedErrorId | Should -Match '^(ParameterArgument\w+|InputObjectMissingMandatory|ParameterBindingFailed),' }
    }

    It 'an Id that is two pids: every command that takes one process refuses it, one that takes several reads both' {
        $two = [pscustomobject]@{ Id = @($t.Id, $PID) }
        foreach ($run in { $two | Save-MemoryImage -Path (Join-Path $root (New-Name)) -WhatIf }, { $two | Watch-DirtyPage -Count 1 -Interval 0.01 -Method Hash }, { $two | Invoke-PreCopyMigration -Bandwidth 1GB -WhatIf }) {
            $caught = try { $null = & $run -ErrorAction Stop; $null } catch { $_ }
            $caught.FullyQualifiedErrorId | Should -Match '^(ParameterArgumentTransformationError|InputObjectMissingMandatory),' -Because "$run"
        }
        (@($two | Get-MemoryMapping).ProcessId | Sort-Object -Unique) | Should -Be (@($t.Id, $PID) | Sort-Object)
    }
}
