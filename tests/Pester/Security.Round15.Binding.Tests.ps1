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
            # After round 15 (the lead): objects that came back from a session to another computer carry that computer's
            # pids; before, the pid bound and the process of that pid here was acted on.
            $c + @{ Kind = 'process of another computer (deserialized, PSComputerName)'; Remote = $true }
            $c + @{ Kind = 'PID of another computer ([pscustomobject], PSComputerName)'; Remote = $true }
        }
    ) {
        $o = switch -Wildcard ($Kind) {
            'Selected.*' { $ticket | Select-Object Id, Name }
            'process of*' {
                $p = [System.Management.Automation.PSSerializer]::Deserialize([System.Management.Automation.PSSerializer]::Serialize((Get-Process -Id $t.Id), 1))
                $p | Add-Member -NotePropertyName PSComputerName -NotePropertyValue 'softdirty-far-host.example' -PassThru
            }
            'PID of*' { [pscustomobject]@{ PID = $t.Id; PSComputerName = 'softdirty-far-host' } }
            default { $ticket }
        }
        # -WhatIf's line goes to the host: a refusal says InvalidArgument before ShouldProcess, so none is asked for.
        $ErrorActionPreference = 'Continue'
        $all = @($o | & $Run 2>&1)
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $out = @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        $out | Should -BeNullOrEmpty -Because "nothing of process $($t.Id) is read, and no object says it was acted on"
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike $(if ($Remote) { "*came from the computer softdirty-far-host*process id $($t.Id)*not touched*" } else { "*piped $Kind has an Id ($($t.Id)) that is not a process id*-Id $($t.Id)*" })
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
        @{ Kind = 'a process from a session on this computer (PSComputerName localhost)'; Make = { Get-Process -Id $t.Id | Add-Member -NotePropertyName PSComputerName -NotePropertyValue 'localhost' -PassThru } }
        @{ Kind = 'a process from a session to this computer by its host name'; Make = { Get-Process -Id $t.Id | Add-Member -NotePropertyName PSComputerName -NotePropertyValue ([System.Net.Dns]::GetHostName()) -PassThru } }
    ) {
        $o = & $Make
        $m = @($o | Get-MemoryMapping -ErrorAction Stop)
        $m.Count | Should -BeGreaterThan 0
        $m.ProcessId | Sort-Object -Unique | Should -Be $t.Id
    }

    It 'a job piped with -Id on the command line: InvalidArgument (the job binds nothing), as it was InputObjectNotBound' -Skip:([bool]$NoThreadJob) {
        $j = Start-ThreadJob { 1 } | Wait-Job
        try {
            $caught = try { $null = $j | Get-MemoryMapping -Id $t.Id -ErrorAction Stop; $null } catch { $_ }
            $caught.FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
            $caught.Exception.Message | Should -BeLike '*binds no parameter of this command: -Id*'
        } finally { $j | Remove-Job }
    }

    # Round 15 let Get-PageMap, Watch-DirtyPage and Clear-PageReference take the piped emulated process over a default -Id;
    # after it (the lead), a piped emulated process and a given -Id are refused alike everywhere: the commands cannot tell
    # a default -Id from one typed, and a typed one was dropped without a word ($e | Get-PageMap -Id 42 read $e).
    It '$PSDefaultParameterValues of -Id: <Command> of a piped emulated process is InvalidArgument, never the real process of that pid' -ForEach @(
        @{ Command = 'Save-MemoryImage'; Run = { $input | Save-MemoryImage -Path (Join-Path $root (New-Name)) } }
        @{ Command = 'Get-SoftDirtySupport'; Run = { $input | Get-SoftDirtySupport } }
        @{ Command = 'Get-PageMap'; Run = { $input | Get-PageMap -Present } }
        @{ Command = 'Watch-DirtyPage'; Run = { $input | Watch-DirtyPage -Count 1 -Interval 0.01 } }
        @{ Command = 'Clear-PageReference'; Run = { $input | Clear-PageReference -Type PeakRss -PassThru } }
    ) {
        $e = (New-FilledEmulator 4).Emulator
        $saved = $PSDefaultParameterValues.Clone()
        $ErrorActionPreference = 'Continue'
        try {
            # Before round 15's hidden PipedObject parameter, Save-MemoryImage and Get-SoftDirtySupport said InputObjectNotBound here.
            $PSDefaultParameterValues['*:Id'] = $t.Id
            $all = @($e | & $Run 2>&1)
        } finally { $PSDefaultParameterValues.Clear(); foreach ($k in $saved.Keys) { $PSDefaultParameterValues[$k] = $saved[$k] } }
        $out = @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $out | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike "*EmulatedProcess*-Id $($t.Id)*PSDefaultParameterValues*"
    }

    It '$e | <Command> -Id of a real process: InvalidArgument, and neither process is read or changed' -ForEach @(
        @{ Command = 'Get-PageMap'; Run = { param($Id) $input | Get-PageMap -Id $Id -Present } }
        @{ Command = 'Search-PageMap'; Run = { param($Id) $input | Search-PageMap -Id $Id -Category Present } }
        @{ Command = 'Get-MemoryMapping'; Run = { param($Id) $input | Get-MemoryMapping -Id $Id } }
        @{ Command = 'Clear-PageReference'; Run = { param($Id) $input | Clear-PageReference -Id $Id -Type PeakRss -PassThru } }
        @{ Command = 'Clear-SoftDirty'; Run = { param($Id) $input | Clear-SoftDirty -Id $Id -PassThru } }
        @{ Command = 'Watch-DirtyPage'; Run = { param($Id) $input | Watch-DirtyPage -Id $Id -Count 1 -Interval 0.01 -Method Hash } }
        @{ Command = 'Invoke-PreCopyMigration'; Run = { param($Id) $input | Invoke-PreCopyMigration -Id $Id -MaxIterations 1 -Bandwidth 1GB -Method Hash } }
    ) {
        # Before: the emulated process bound -PipedEmulator and -Id was dropped (Get-PageMap read $e, Get-MemoryMapping gave
        # nothing, Clear-PageReference cleared $e).
        $f = New-FilledEmulator 4
        $written = @($f.Emulator | Get-PageMap -SoftDirty).Count
        $written | Should -BeGreaterThan 0
        $hwm = Get-ProcStatusKb $t.Id VmHWM
        $ErrorActionPreference = 'Continue'
        $all = @($f.Emulator | & $Run $t.Id 2>&1)
        $out = @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $out | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike "*EmulatedProcess and -Id $($t.Id) are both given*"
        @($f.Emulator | Get-PageMap -SoftDirty).Count | Should -Be $written
        Get-ProcStatusKb $t.Id VmHWM | Should -Be $hwm
    }

    It 'an emulated process piped into Get-SoftDirtySupport gives its features (its ProcessId does not bind -Id)' {
        $e = New-EmulatedProcess -Kernel 6.18
        $features = @($e | Get-SoftDirtySupport -ErrorAction Stop)
        $features.Count | Should -Be 1
        $features[0] | Should -BeOfType ([SoftDirty.KernelFeatures])
        $features[0].SoftDirty | Should -BeTrue -Because 'the 6.18 profile has soft-dirty'
    }

    It 'an Id of <Kind>: <Expect>' -ForEach @(
        @{ Kind = 'a word'; Value = 'abc'; Expect = 'a binding error' }
        @{ Kind = '$null'; Value = $null; Expect = 'a binding error' }
        @{ Kind = 'a negative number'; Value = -7; Expect = 'ProcessNotFound' }
        @{ Kind = 'a number past Int32'; Value = 4294967296L; Expect = 'a binding error' }
        # After round 15 (the lead): PowerShell rounded a fraction to a pid (1000.5 named process 1000).
        @{ Kind = 'the target''s pid plus a half'; Value = 'half'; Expect = 'a binding error' }
        @{ Kind = 'the target''s pid plus a half, as text'; Value = 'halftext'; Expect = 'a binding error' }
        @{ Kind = 'the target''s pid plus a half, as a decimal'; Value = 'halfdecimal'; Expect = 'a binding error' }
    ) {
        $Value = switch ($Value) { 'half' { $t.Id + 0.5 } 'halftext' { "$($t.Id).5" } 'halfdecimal' { [decimal]$t.Id + 0.5d } default { $Value } }
        $caught = try { $null = [pscustomobject]@{ Id = $Value } | Get-MemoryMapping -ErrorAction Stop; $null } catch { $_ }
        $caught | Should -Not -BeNullOrEmpty
        if ($Expect -eq 'ProcessNotFound') { $caught.FullyQualifiedErrorId | Should -BeLike 'ProcessNotFound,*' }
        else { $caught.FullyQualifiedErrorId | Should -Match '^(ParameterArgument\w+|InputObject\w+|ParameterBindingFailed),' }
        if ($Kind -like '*half*') { $caught.Exception.Message | Should -BeLike '*is not a process id: a process id is a whole number*' }
    }

    It 'a fractional -Id is refused by every command that takes -Id; a whole number of any type binds' {
        foreach ($run in { Get-MemoryMapping -Id $args[0] }, { Get-PageMap -Id $args[0] -Present -AsRange }, { Search-PageMap -Id $args[0] },
            { Get-SoftDirtySupport -Id $args[0] }, { Clear-PageReference -Id $args[0] -Type PeakRss -WhatIf }, { Enable-WriteTracking -Id $args[0] -WhatIf },
            { Disable-WriteTracking -Id $args[0] -WhatIf }, { Save-MemoryImage -Id $args[0] -Path (Join-Path $root (New-Name)) -WhatIf },
            { Watch-DirtyPage -Id $args[0] -Count 1 -Interval 0.01 -Method Hash }, { Invoke-PreCopyMigration -Id $args[0] -Bandwidth 1GB -WhatIf }) {
            $caught = try { $null = & $run ($t.Id + 0.5) -ErrorAction Stop; $null } catch { $_ }
            $caught.FullyQualifiedErrorId | Should -BeLike 'ParameterArgumentTransformationError,*' -Because "$run"
        }
        foreach ($whole in [double]$t.Id, [decimal]$t.Id, [long]$t.Id, "$($t.Id)", " $($t.Id) ") {
            @(Get-MemoryMapping -Id $whole -ErrorAction Stop).ProcessId | Sort-Object -Unique | Should -Be $t.Id
        }
    }

    It 'an Id that is two pids: every command that takes one process refuses it, one that takes several reads both' {
        $two = [pscustomobject]@{ Id = @($t.Id, $PID) }
        foreach ($run in { $two | Save-MemoryImage -Path (Join-Path $root (New-Name)) -WhatIf }, { $two | Watch-DirtyPage -Count 1 -Interval 0.01 -Method Hash }, { $two | Invoke-PreCopyMigration -Bandwidth 1GB -WhatIf }) {
            $caught = try { $null = & $run -ErrorAction Stop; $null } catch { $_ }
            $caught.FullyQualifiedErrorId | Should -Match '^(ParameterArgumentTransformationError|InputObject\w+),' -Because "$run"
        }
        (@($two | Get-MemoryMapping).ProcessId | Sort-Object -Unique) | Should -Be (@($t.Id, $PID) | Sort-Object)
    }
}

Describe 'Pipelines between the module''s own commands' -Tag 'Security', 'Round15Binding' {
    # Invoke-PreCopyMigration -Destination | Restore-MemoryImage bound each round's ImagePath: round 1 (a live round of a
    # running process, the chain's oldest memory) was restored, every later round was ImageExists, and the summary was
    # InputObjectNotBound; the destination held memory the process had long since changed. | Test-MemoryImage tested every
    # round, then took the summary for a folder named "SoftDirty.Workflows.PreCopySummary" and said $false. Now a restore
    # of images piped in restores the latest of their chain once the input ends, the summary binds its FinalImage, and an
    # object that is no path is InvalidArgument, never $false.
    BeforeAll {
        $script:f = New-FilledEmulator 64
        $script:w = @{ Address = $f.Mapping.Start; Length = $f.Mapping.Size; Pattern = 'Random'; AccessesPerSecond = 2000; WriteRatio = 1; Seed = 3 }
        function Invoke-Migration([string] $Destination) {
            $p = @{ Emulator = $f.Emulator; Workload = $w; Bandwidth = 1MB; MaxIterations = 4; StopThreshold = 0; Confirm = $false }
            if ($Destination) { $p.Destination = $Destination }
            Invoke-PreCopyMigration @p
        }
        # The bytes of each restored mapping file, keyed by its Start.
        function Get-Restored([string] $Folder) {
            $map = @{}
            foreach ($m in Get-Content -Raw (Join-Path $Folder 'mappings.json') | ConvertFrom-Json) {
                $map[[uint64]$m.start] = [IO.File]::ReadAllBytes((Join-Path $Folder ('{0:x}-{1:x}.bin' -f [uint64]$m.start, [uint64]$m.end)))
            }
            $map
        }
    }

    It 'Invoke-PreCopyMigration -Destination | Restore-MemoryImage restores the final round, the memory of the stopped process' {
        $d = Join-Path $root (New-Name); $r = Join-Path $root (New-Name)
        $ErrorActionPreference = 'Continue'
        $all = @(Invoke-Migration $d | Restore-MemoryImage -Destination $r 2>&1)
        @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }) | Should -BeNullOrEmpty
        @($all | Where-Object { $_ -is [SoftDirty.Images.RestoredMapping] }).Count | Should -BeGreaterThan 0
        $rounds = @(Get-ChildItem -Directory $d | Sort-Object Name)
        $rounds.Count | Should -BeGreaterThan 1 -Because 'the workload keeps writing, so there are live rounds and a final one'
        $final = Join-Path $root (New-Name)
        $null = Restore-MemoryImage -Path $rounds[-1].FullName -Destination $final
        $got = Get-Restored $r; $want = Get-Restored $final
        $got.Keys | Should -Be $want.Keys
        foreach ($k in $want.Keys) { [Convert]::ToBase64String($got[$k]) | Should -Be ([Convert]::ToBase64String($want[$k])) }
        $first = Join-Path $root (New-Name)
        $null = Restore-MemoryImage -Path $rounds[0].FullName -Destination $first
        $differs = foreach ($k in $want.Keys) { [Convert]::ToBase64String((Get-Restored $first)[$k]) -ne [Convert]::ToBase64String($want[$k]) }
        $differs | Should -Contain $true -Because 'round 1 holds older memory, so the test tells the two apart'
    }

    It 'Invoke-PreCopyMigration -Destination | Test-MemoryImage: $true for every round and for the summary''s FinalImage' {
        $d = Join-Path $root (New-Name)
        $out = @(Invoke-Migration $d | Test-MemoryImage)
        $out.Count | Should -BeGreaterThan 2
        $out | Should -Not -Contain $false
        $out | ForEach-Object { $_ | Should -BeOfType [bool] }
    }

    It 'Invoke-PreCopyMigration -Destination | Get-MemoryImage lists the chain of every round and of the summary, never a folder named after a type' {
        $d = Join-Path $root (New-Name)
        $ErrorActionPreference = 'Continue'
        $all = @(Invoke-Migration $d | Get-MemoryImage 2>&1)
        @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }) | Should -BeNullOrEmpty
        @($all.Path | Sort-Object -Unique) | Should -Be @(Get-ChildItem -Directory $d | Sort-Object Name | ForEach-Object FullName)
    }

    It 'a migration that wrote no image, or a <Kind>, piped into Test-MemoryImage: InvalidArgument or a binding error, never $false' -ForEach @(
        @{ Kind = 'migration without -Destination'; Make = { Invoke-Migration } }
        @{ Kind = 'sample'; Make = { $f.Emulator | Watch-DirtyPage -Count 2 -Interval 0.1 -Workload $w } }
        @{ Kind = 'number'; Make = { 5 } }
        @{ Kind = 'mapping'; Make = { $f.Emulator | Get-MemoryMapping } }
    ) {
        $objects = @(& $Make)
        $objects.Count | Should -BeGreaterThan 0
        foreach ($command in 'Test-MemoryImage', 'Get-MemoryImage') {
            $ErrorActionPreference = 'Continue'
            $all = @($objects | & $command 2>&1)
            @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] }) | Should -BeNullOrEmpty -Because "$command gives no verdict on what is no image"
            $errors = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
            $errors.Count | Should -Be $objects.Count
            $errors | ForEach-Object { $_.FullyQualifiedErrorId | Should -Match '^(InvalidArgument|ParameterArgumentValidationError\w*),' }
        }
    }

    It 'paths still bind by value and by property: a string, Get-ChildItem, Get-Item, Resolve-Path, Save-MemoryImage''s output' {
        $img = Join-Path $root (New-Name)
        $saved = Save-MemoryImage -Emulator $f.Emulator -Path $img
        foreach ($o in $img, (Get-Item $img), (Resolve-Path $img), $saved, [pscustomobject]@{ ImagePath = $img }, [pscustomobject]@{ FinalImage = $img }) {
            $o | Test-MemoryImage | Should -BeTrue -Because "$($o.pstypenames[0])"
            ($o | Get-MemoryImage).Path | Should -Be $img
        }
        @(Get-ChildItem $root -Directory | Where-Object FullName -eq $img | Test-MemoryImage) | Should -Be @($true)
        # A path piped while -Path is given binds nothing (it was InputObjectNotBound): refused, never a second verdict on -Path.
        $caught = try { $null = 'elsewhere' | Test-MemoryImage -Path $img -ErrorAction Stop; $null } catch { $_ }
        $caught.FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
    }

    It 'Save-MemoryImage | Restore-MemoryImage, and an increment''s | Restore-MemoryImage, restore that image''s memory' {
        $full = Join-Path $root (New-Name); $inc = Join-Path $root (New-Name)
        $null = Save-MemoryImage -Emulator $f.Emulator -Path $full
        $f.Emulator | Write-EmulatedMemory -Address $f.Mapping.Start -Length 4KB -Value 0x5a
        $r = @(Save-MemoryImage -Emulator $f.Emulator -Path $inc -Parent $full | Restore-MemoryImage -Destination (Join-Path $root (New-Name)))
        $r.Count | Should -Be 1
        [IO.File]::ReadAllBytes($r[0].File)[0] | Should -Be 0x5a
    }

    It 'images piped in reverse order (latest first) still restore the latest; a stopped pipeline restores nothing' {
        $d = Join-Path $root (New-Name)
        $null = Invoke-Migration $d
        $rounds = @(Get-ChildItem -Directory $d | Sort-Object Name -Descending)
        $r = Join-Path $root (New-Name)
        $ErrorActionPreference = 'Continue'
        $all = @($rounds | Restore-MemoryImage -Destination $r -Verbose 4>&1 2>&1)
        @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }) | Should -BeNullOrEmpty
        @($all | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] -and $_.Message -like '*adds nothing*' }).Count | Should -Be ($rounds.Count - 1)
        $want = Join-Path $root (New-Name)
        $null = Restore-MemoryImage -Path $rounds[0].FullName -Destination $want
        foreach ($k in (Get-Restored $want).Keys) { [Convert]::ToBase64String((Get-Restored $r)[$k]) | Should -Be ([Convert]::ToBase64String((Get-Restored $want)[$k])) }
        # A pipeline stopped (Ctrl+C) while images still come: no restore is made, and nothing is left behind.
        $r2 = Join-Path $root (New-Name)
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$env:SOFTDIRTY_MODULE'; Get-ChildItem -Directory '$d' | Sort-Object Name | ForEach-Object { `$_; Start-Sleep -Milliseconds 500 } | Restore-MemoryImage -Destination '$r2'")
            $h = $ps.BeginInvoke()
            Start-Sleep -Milliseconds 1200
            $ps.Stop()
            $h.AsyncWaitHandle.WaitOne(30000) | Should -BeTrue
        } finally { $ps.Dispose() }
        Test-Path $r2 | Should -BeFalse
        @(Get-ChildItem -Force $root | Where-Object Name -like ".$(Split-Path -Leaf $r2).partial-*") | Should -BeNullOrEmpty
    }
}

Describe 'Saves and migrations of an emulated process stopped (Ctrl+C) at many points' -Tag 'Security', 'Round15Binding' {
    # PowerShell.Stop from another thread, as Ctrl+C: the command is stopped wherever it is (reading, writing, hashing,
    # renaming, between rounds). What it leaves must be whole or absent, and the chain must go on exact: a stopped
    # increment may have started a tracking epoch (cleared soft-dirty, reset write-protect) without writing its image.
    BeforeAll {
        $script:sroot = Join-Path $root 'stop'
        $null = New-Item -ItemType Directory $sroot
        # Runs $Script with its arguments in a runspace of its own and stops it $Delay ms after it starts.
        function Invoke-Stopped([scriptblock] $Script, [object[]] $Arguments, [int] $Delay) {
            $ps = [powershell]::Create()
            try {
                # The module is imported first, so that the delay counts from the command's start.
                $null = $ps.AddScript("Import-Module '$env:SOFTDIRTY_MODULE'").Invoke()
                $ps.Commands.Clear()
                $null = $ps.AddScript($Script)
                foreach ($a in $Arguments) { $null = $ps.AddArgument($a) }
                $h = $ps.BeginInvoke()
                Start-Sleep -Milliseconds $Delay
                $ps.Stop()
                $h.AsyncWaitHandle.WaitOne(60000) | Should -BeTrue -Because 'a stopped command ends'
            } finally { $ps.Dispose() }
        }
        function Get-Partial { @(Get-ChildItem -Force -LiteralPath $sroot -Recurse -Directory | Where-Object Name -like '.*.partial-*') }
    }

    It 'a <Method> increment stopped at <Delay> ms: absent or valid, no partial folder, and the next increment is exact' -ForEach @(
        foreach ($m in 'SoftDirty', 'WriteProtect', 'Hash') { foreach ($d in 0, 20, 60, 150, 300, 600) { @{ Method = $m; Delay = $d } } }
    ) {
        $e = New-EmulatedProcess -Kernel 6.18
        $map = $e | Add-EmulatedMapping -Length 16MB
        $e | Write-EmulatedMemory -Address $map.Start -Length 16MB -Value 1
        $chain = Join-Path $sroot (New-Name)
        $null = New-Item -ItemType Directory $chain
        $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method $Method
        $e | Write-EmulatedMemory -Address ($map.Start + 4MB) -Length 4MB -Value 2
        Invoke-Stopped { param($E, $Path, $Parent, $Method) Save-MemoryImage -Emulator $E -Path $Path -Parent $Parent -Method $Method -WarningAction SilentlyContinue } `
            @($e, "$chain/1", "$chain/0", $Method) $Delay
        Get-Partial | Should -BeNullOrEmpty
        if (Test-Path "$chain/1") { Test-MemoryImage "$chain/1" | Should -BeTrue }
        $e | Write-EmulatedMemory -Address ($map.Start + 12MB) -Length 4KB -Value 3
        $parent = if (Test-Path "$chain/1") { "$chain/1" } else { "$chain/0" }
        $null = Save-MemoryImage -Emulator $e -Path "$chain/2" -Parent $parent -Method $Method -WarningAction SilentlyContinue
        $null = Save-MemoryImage -Emulator $e -Path "$chain/full" -Method Hash
        Compare-RestoredImage "$chain/2" "$chain/full" $sroot | Should -BeNullOrEmpty
    }

    It 'a migration with -Destination stopped at <Delay> ms: every round folder is a valid image, no partial folder, the process saves after' -ForEach @(
        foreach ($d in 0, 50, 150, 300, 500) { @{ Delay = $d } }
    ) {
        $e = New-EmulatedProcess -Kernel 6.18
        $map = $e | Add-EmulatedMapping -Length 16MB
        $e | Write-EmulatedMemory -Address $map.Start -Length 16MB -Value 1
        $dest = Join-Path $sroot (New-Name)
        $work = @{ Address = $map.Start; Length = 16MB; Pattern = 'Random'; AccessesPerSecond = 20000; WriteRatio = 1; Seed = 5 }
        Invoke-Stopped { param($E, $Dest, $Work) Invoke-PreCopyMigration -Emulator $E -Workload $Work -Destination $Dest -Bandwidth 4MB -MaxIterations 8 -StopThreshold 0 -Confirm:$false } `
            @($e, $dest, $work) $Delay
        Get-Partial | Should -BeNullOrEmpty
        if (Test-Path $dest) {
            foreach ($r in Get-ChildItem -Directory $dest) { Test-MemoryImage $r.FullName | Should -BeTrue -Because $r.Name }
        }
        $img = Join-Path $sroot (New-Name)
        (Save-MemoryImage -Emulator $e -Path $img).DataPages | Should -Be 4096
    }
}

Describe 'Write tracking of one real process while the module is removed and imported, and while another runspace watches it' -Tag 'Security', 'Round15Binding', 'WriteTracking' -Skip:([bool]($NoTracking -or $NoThreadJob)) {
    # Remove-Module and Import-Module -Force unload nothing (.NET keeps the assemblies) but drop the session's module: a
    # watch running in another runspace must go on, count what the target writes and, when it ends, take its tracking
    # away as if nothing had happened. A save chain must stay exact while a watch in another runspace resets the same
    # tracking between its increments (each reset starts a new epoch: the next increment compares contents).
    BeforeAll {
        $script:savedStateDir = $env:SOFTDIRTY_STATE_DIR
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'wtstate15'
        $script:croot = Join-Path $root 'conc'
        $null = New-Item -ItemType Directory $croot
        function Assert-Untracked([int] $Id, [string] $After) {
            $tracer = ((Get-Content "/proc/$Id/status" | Where-Object { $_ -like 'TracerPid:*' }) -split '\s+')[1]
            [int]$tracer | Should -Be 0 -Because "nothing traces the target after $After"
            @(Get-ChildItem "/proc/$Id/fd" | Where-Object { $_.LinkTarget -like '*userfaultfd*' }).Count | Should -Be 0 -Because "no userfaultfd is left after $After"
            @(Get-Content "/proc/$Id/smaps" | Where-Object { $_ -match '^VmFlags:.* uw( |$)' }).Count | Should -Be 0 -Because "nothing stays registered after $After"
            Test-Path (Join-Path $env:SOFTDIRTY_STATE_DIR "$Id.json") | Should -BeFalse -Because "no tracking state is left after $After"
        }
        function Start-Watch([int] $Id, [int] $Count, [double] $Interval, [uint64] $Address = 0, [uint64] $Length = 0) {
            Start-ThreadJob -ArgumentList $env:SOFTDIRTY_MODULE, $Id, $env:SOFTDIRTY_STATE_DIR, $Count, $Interval, $Address, $Length -ScriptBlock {
                param($Module, $Id, $State, $Count, $Interval, $Address, $Length)
                $env:SOFTDIRTY_STATE_DIR = $State
                Import-Module $Module
                $range = if ($Length) { @{ Address = $Address; Length = $Length } } else { @{} }
                Watch-DirtyPage -Id $Id -Method WriteProtect -Count $Count -Interval $Interval @range -WarningAction SilentlyContinue
            }
        }
    }
    AfterAll { $env:SOFTDIRTY_STATE_DIR = $savedStateDir }

    It 'Remove-Module and Import-Module -Force while a watch runs: it counts every burst of writes, ends, and leaves the target untracked' {
        $t = Start-TestTarget
        try {
            $base = $t.Map(32)
            $null = $t.Send("write $(Hex $base) 0 32")
            $job = Start-Watch $t.Id 12 0.25 $base (32 * $t.PageSize)
            try {
                $deadline = [DateTime]::UtcNow.AddSeconds(60)
                # Armed once it has emitted a sample: a write before the watch's first reset is no write during it.
                while ($job.Output.Count -lt 1 -and $job.State -in 'NotStarted', 'Running' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
                $job.Output.Count | Should -BeGreaterThan 0 -Because 'the watch sampled (hang guard: a minute)'
                Remove-Module SoftDirty -Force
                Import-Module $env:SOFTDIRTY_MODULE -Force -Global
                $null = $t.Send("write $(Hex $base) 5 1")
                Start-Sleep -Milliseconds 600
                $null = $t.Send("write $(Hex $base) 9 1")
                $samples = @($job | Wait-Job -Timeout 120 | Receive-Job -ErrorAction Stop)
            } finally { $job | Remove-Job -Force }
            $samples.Count | Should -Be 12
            foreach ($p in 5, 9) {
                $a = $t.Page($base, $p)
                @($samples | Where-Object { $_.Ranges | Where-Object { $_.Start -le $a -and $a -lt $_.End } }).Count | Should -BeGreaterThan 0 -Because "page $p was written during the watch"
            }
            Assert-Untracked $t.Id 'the watch ended'
            @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.05 -WarningAction SilentlyContinue).Count | Should -Be 2 -Because 'the imported module watches it'
            Assert-Untracked $t.Id 'the second watch ended'
        } finally { Stop-TestTarget $t }
    }

    It 'a WriteProtect chain saved while a watch in another runspace resets the tracking ends exact' {
        $t = Start-TestTarget
        try {
            $base = $t.Map(64)
            $null = $t.Send("write $(Hex $base) 0 64")
            $chain = Join-Path $croot (New-Name); $null = New-Item -ItemType Directory $chain
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method WriteProtect -WarningAction SilentlyContinue
            $job = Start-Watch $t.Id 20 0.1
            try {
                $null = $t.Send("write $(Hex $base) 3 1")
                Start-Sleep -Milliseconds 300
                $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect -WarningAction SilentlyContinue
                $null = $t.Send("write $(Hex $base) 7 1")
                Start-Sleep -Milliseconds 300
                $null = Save-MemoryImage -Id $t.Id -Path "$chain/2" -Parent "$chain/1" -Method WriteProtect -WarningAction SilentlyContinue
                $null = $job | Wait-Job -Timeout 120
                $job.State | Should -Be 'Completed' -Because "the watch ends without an error ($($job.JobStateInfo.Reason))"
            } finally { $job | Remove-Job -Force }
            $null = $t.Send("write $(Hex $base) 11 1")
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/3" -Parent "$chain/2" -Method WriteProtect -WarningAction SilentlyContinue
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/full" -Method Hash
            Compare-RestoredImage "$chain/3" "$chain/full" $croot | Should -BeNullOrEmpty
            Test-MemoryImage "$chain/3" | Should -BeTrue
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }
}

Describe 'Set-StrictMode -Version Latest in the caller''s session' -Tag 'Security', 'Round15Binding' {
    # The views run script blocks (hex addresses, escaped names): under the strictest mode a property missing from an
    # object (a deserialized copy lacks script members) or an uninitialised variable would fail them.
    It 'every view of every object the module emits, and of its deserialized copy, renders without an error' {
        $d = Join-Path $root (New-Name); $null = New-Item -ItemType Directory $d
        $f = New-FilledEmulator 16
        $e = $f.Emulator
        $w = @{ Address = $f.Mapping.Start; Length = $f.Mapping.Size; Pattern = 'Random'; AccessesPerSecond = 2000; WriteRatio = 1; Seed = 3 }
        $objects = @(
            @($e | Get-PageMap | Select-Object -First 2), @($e | Get-PageMap -AsRange), @($e | Search-PageMap -Category Present),
            @($e | Get-MemoryMapping), @(Get-SoftDirtySupport), @($e | Get-SoftDirtySupport), @(Get-SoftDirtySupport -Id $PID),
            @($e | Watch-DirtyPage -Count 2 -Interval 0.5 -Workload $w),
            @(Invoke-PreCopyMigration -Emulator $e -Workload $w -Bandwidth 1MB -MaxIterations 2 -Destination "$d/m" -Confirm:$false),
            @(Get-MemoryImage "$d/m/round-01"), @(Test-MemoryImage "$d/m/round-01" -Detailed),
            @(Restore-MemoryImage "$d/m/round-01" -Destination "$d/r"), @($e), @($e | Invoke-EmulatedWorkload -Address $f.Mapping.Start -Length 16KB -Count 100)
        )
        $failed = & {
            Set-StrictMode -Version Latest
            $i = 0
            foreach ($set in $objects) {
                $i++
                $xml = Join-Path $d "$i.xml"; $set | Export-Clixml $xml -Depth 3
                foreach ($copy in $set, (Import-Clixml $xml)) {
                    foreach ($format in 'Format-Table', 'Format-List', 'Format-Wide', 'Format-Custom') {
                        try { $null = $copy | & $format | Out-String -Width 200 } catch { "$($set[0].GetType().Name) $format : $_" }
                    }
                }
            }
        }
        $failed | Should -BeNullOrEmpty
    }
}
