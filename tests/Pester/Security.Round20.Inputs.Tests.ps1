#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twentieth attack round, on what the module reads from and writes for other parties: names a target or
# another computer chooses, objects that came back from sessions and files, cultures and paths (new cases only; earlier
# rounds are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r20')
    chmod 0755 $TestDrive $root
    function New-Name { [guid]::NewGuid().ToString('n') }
}

AfterAll { Stop-TestTarget -All }

Describe 'Objects from a session to another computer whose name only looks like this one''s' -Tag 'Security', 'Round20Inputs' {
    # A piped object's PSComputerName names the computer its pid belongs to; the module refuses the pid of another
    # computer (round 15). It took every name whose first label was this host's for this host, and every name starting
    # "127." for a loopback address: a process that came back from web1.prod.example, piped in on web1.staging.example
    # (fleets reuse short names across domains), was read, cleared, saved or tracked here, whatever process had its pid,
    # with no error. Now a name is this computer where it is this host's name as it is (short or full), localhost, or a
    # loopback address; a full name of another domain is another computer.
    BeforeAll {
        # The process is this PowerShell: a refused pid is never opened, and one that binds is read, nothing more. (A test
        # target of its own was once gone half-way through a run on a machine running other suites: a pid reused and killed
        # elsewhere, with pid_max 32768, is a risk this process does not run.)
        $script:self = Get-Process -Id $PID
        $script:short = ([System.Net.Dns]::GetHostName() -split '\.')[0]
    }

    It 'a process from <Label>, piped into <Command>: InvalidArgument naming that computer, and nothing done to the process here' -ForEach @(
        foreach ($c in @(
                @{ Command = 'Get-MemoryMapping'; Run = { $input | Get-MemoryMapping } }
                @{ Command = 'Get-PageMap'; Run = { $input | Get-PageMap -Present -AsRange } }
                @{ Command = 'Watch-DirtyPage'; Run = { $input | Watch-DirtyPage -Count 1 -Interval 0.01 -Method Hash } }
                @{ Command = 'Clear-PageReference'; Run = { $input | Clear-PageReference -Type PeakRss -PassThru } }
                @{ Command = 'Save-MemoryImage -WhatIf'; Run = { $input | Save-MemoryImage -Path (Join-Path $root (New-Name)) -WhatIf } }
                @{ Command = 'Enable-WriteTracking -WhatIf'; Run = { $input | Enable-WriteTracking -WhatIf } }
            )) {
            $c + @{ Label = 'this host''s short name in another domain'; Computer = '{short}.r20-elsewhere.example' }
            $c + @{ Label = 'a host name that begins with 127.'; Computer = '127.r20-elsewhere.example' }
        }
    ) {
        $name = $Computer.Replace('{short}', $short)
        $p = [System.Management.Automation.PSSerializer]::Deserialize([System.Management.Automation.PSSerializer]::Serialize($self, 1))
        $o = $p | Add-Member -NotePropertyName PSComputerName -NotePropertyValue $name -PassThru
        $ErrorActionPreference = 'Continue'
        $all = @($o | & $Run 2>&1)
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $out = @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        $out | Should -BeNullOrEmpty -Because "nothing of process $PID here is read, and no object says it was acted on"
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike "*came from the computer $name*process id $PID*not touched*"
    }

    It 'a process from this computer by <Label> still binds -Id' -ForEach @(
        @{ Label = 'its host name'; Computer = '{host}' }
        @{ Label = 'its short name'; Computer = '{short}' }
        @{ Label = 'its short name in capitals'; Computer = '{SHORT}' }
        @{ Label = 'localhost'; Computer = 'localhost' }
        @{ Label = '127.0.0.1'; Computer = '127.0.0.1' }
        @{ Label = 'another loopback address'; Computer = '127.0.0.2' }
        @{ Label = '::1'; Computer = '::1' }
    ) {
        $name = $Computer.Replace('{host}', [System.Net.Dns]::GetHostName()).Replace('{short}', $short).Replace('{SHORT}', $short.ToUpperInvariant())
        $o = Get-Process -Id $PID | Add-Member -NotePropertyName PSComputerName -NotePropertyValue $name -PassThru
        $m = @($o | Get-MemoryMapping -ErrorAction Stop)
        $m.Count | Should -BeGreaterThan 0
        $m.ProcessId | Sort-Object -Unique | Should -Be $PID
    }
}

Describe 'An emulated file mapping whose path is one of the kernel''s pseudo-names' -Tag 'Security', 'Round20Inputs' {
    # The kind of a mapping came from its path alone: an emulated file named '[vvar]' or '[vsyscall]' (Add-EmulatedMapping
    # -Path takes any name) was taken for the kernel's vvar or vsyscall page, which images leave out. Its written pages
    # were in no image: the full image said 0 data pages (or had no such mapping), Test-MemoryImage said valid, and the
    # restore had none of the bytes. The kernel's pseudo-names belong to mappings without a file (inode 0); a mapping
    # of a file is a file mapping whatever its name.
    It 'a file named <_>: its written pages are in the image, which is valid and restores them' -ForEach '[vvar]', '[vsyscall]', '[vvar_vclock]', '[vdso]', '[heap]', '[stack]', '[stack:1]' {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 16KB -Path $_
        $m.Kind | Should -Be 'File'
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB -Value 0x5a
        $p = Join-Path $root (New-Name)
        $i = $e | Save-MemoryImage -Path $p
        $i.DataPages | Should -Be (16KB / $i.PageSize)
        Test-MemoryImage -Path $p | Should -BeTrue
        $out = Join-Path $root (New-Name)
        $r = @(Restore-MemoryImage -Path $p -Destination $out | Where-Object Start -EQ $m.Start)
        $r.Count | Should -Be 1
        $bytes = [System.IO.File]::ReadAllBytes($r[0].File)
        $bytes.Length | Should -Be 16KB
        @($bytes | Select-Object -Unique) | Should -Be @(0x5a)
    }
}

Describe 'Text another party chose in the round and image views that earlier rounds left out' -Tag 'Security', 'Round20Inputs' {
    # The views escape the control characters of names (round 11), but a migration round's default table printed its
    # ImagePath as it is: a -Destination relative to the current folder, or -ToSession's destination resolved in the
    # destination session (its location, its answer), holds folder names that another user or the far end chose, and
    # Invoke-PreCopyMigration's table sent their terminal sequences to the caller's terminal. And a manifest's permission
    # column is the image author's text: nothing checked it, and Restore-MemoryImage's table printed it as it is. Now every
    # view escapes the round's path, and a manifest whose permissions are not the four letters of maps is ImageCorrupt.
    BeforeAll {
        $script:Evil = "x`e]0;owned`a`e[2J`e[31my"
        $script:Hidden = "[`e`a]"
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        function Edit-Manifest([string] $Image, [scriptblock] $Edit) {
            $m = [SoftDirty.TestKit.Images.ManifestFile]::Read($Image)
            & $Edit $m
            [SoftDirty.TestKit.Images.ManifestFile]::Write($Image, $m)
        }
        $script:made = [System.Collections.Generic.List[string]]::new()
    }
    # Brackets in the names: Pester's TestDrive clean-up (Remove-Item with wildcards) cannot remove them.
    AfterAll { foreach ($d in $made) { [System.IO.Directory]::Delete($d, $true) } }

    It 'Invoke-PreCopyMigration -Destination under a folder named with terminal sequences: <_> shows the rounds'' paths escaped' -ForEach 'Format-Table', 'Format-List', 'Format-Wide', 'Format-Custom', 'Out-String' {
        $folder = [System.IO.Directory]::CreateDirectory((Join-Path $root "$(New-Name)$Evil"))
        $made.Add($folder.FullName)
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB
        Push-Location -LiteralPath $folder.FullName
        try { $r = @($e | Invoke-PreCopyMigration -Destination chain -MaxIterations 2 -Bandwidth 1GB -Confirm:$false) }
        finally { Pop-Location }
        $rounds = @($r | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] })
        $rounds.Count | Should -BeGreaterThan 0
        $rounds[0].ImagePath.Contains($Evil) | Should -BeTrue -Because 'the object keeps the path as it is'
        $text = if ($_ -eq 'Out-String') { $r | Out-String -Width 400 } else { $r | & $_ | Out-String -Width 400 }
        $text | Should -Not -Match $Hidden -Because "$_ prints no control character as it is"
    }

    It 'a manifest whose permissions someone rewrote to <Label> (checksum recomputed): ImageCorrupt from Test, Get and Restore, nothing restored' -ForEach @(
        @{ Label = 'terminal sequences'; Permissions = "`e[2J`e]0;owned`a" }
        @{ Label = 'three letters'; Permissions = 'rw-' }
        @{ Label = 'letters out of place'; Permissions = 'wr-p' }
        @{ Label = 'an empty text'; Permissions = '' }
    ) {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB
        $img = Join-Path $root (New-Name)
        $null = $e | Save-MemoryImage -Path $img
        $perm = $Permissions
        Edit-Manifest $img { param($x) foreach ($map in $x.Mappings) { $map.Permissions = $perm } }
        $r = Test-MemoryImage -Path $img -Detailed
        $r.Valid | Should -BeFalse
        "$(@($r.Problems)[0].Error)" | Should -Be 'ImageCorrupt'
        ($r | Format-Table | Out-String -Width 400) | Should -Not -Match $Hidden
        Get-ErrorId { Get-MemoryImage -Path $img } | Should -BeLike 'ImageCorrupt,*'
        $out = Join-Path $root (New-Name)
        Get-ErrorId { Restore-MemoryImage -Path $img -Destination $out } | Should -BeLike 'ImageCorrupt,*'
        Test-Path -LiteralPath $out | Should -BeFalse
    }
}

Describe 'Images that lie on another computer, piped into the image commands here' -Tag 'Security', 'Round20Inputs' {
    # Invoke-PreCopyMigration -ToSession emits rounds and a summary whose ImagePath and FinalImage are paths on the
    # destination computer, and Invoke-Command brings back Get-MemoryImage's objects of that computer (PSComputerName).
    # Piped into Test-, Get- or Restore-MemoryImage here they bound those paths, and the command read the image this
    # computer had under the same path: another chain (an earlier migration to the same folder) was said valid and
    # restored, with no error. Now such an object is InvalidArgument naming the computer; the same objects of this
    # computer (a session to localhost, a local migration) bind as before.
    BeforeAll {
        # An image here under the path the far computer's objects name.
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 64KB -Value 7
        $script:chain = Join-Path $root (New-Name)
        $script:local = @($e | Invoke-PreCopyMigration -Destination $chain -MaxIterations 2 -Bandwidth 1GB -Confirm:$false)
        $script:clix = Join-Path $root "$(New-Name).xml"
        $local | Export-Clixml -LiteralPath $clix
        $script:short = ([System.Net.Dns]::GetHostName() -split '\.')[0]
        # The objects as a -ToSession migration to <Computer> gives them: the same paths, on that computer.
        function Get-FarObject([string] $Kind, [string] $Computer) {
            $back = Import-Clixml -LiteralPath $clix
            switch ($Kind) {
                'summary' { $back | Where-Object { $_.PSObject.TypeNames[0] -like '*PreCopySummary' } | Add-Member -NotePropertyName ToComputer -NotePropertyValue $Computer -Force -PassThru }
                'rounds' { $back | Where-Object { $_.PSObject.TypeNames[0] -like '*PreCopyRound' } | Add-Member -NotePropertyName ToComputer -NotePropertyValue $Computer -Force -PassThru }
                'image' { Get-MemoryImage -Path $local[-1].FinalImage | Add-Member -NotePropertyName PSComputerName -NotePropertyValue $Computer -PassThru }
            }
        }
    }

    It 'the <Kind> of <Computer>, piped into <Command>: InvalidArgument naming that computer, nothing read or restored' -ForEach @(
        foreach ($c in 'Test-MemoryImage', 'Get-MemoryImage', 'Restore-MemoryImage') {
            foreach ($k in 'summary', 'rounds', 'image') {
                @{ Command = $c; Kind = $k; Computer = 'r20-far-host.example' }
                @{ Command = $c; Kind = $k; Computer = '{short}.r20-elsewhere.example' }
            }
        }
    ) {
        $name = $Computer.Replace('{short}', $short)
        $objects = @(Get-FarObject $Kind $name)
        $objects.Count | Should -BeGreaterThan 0
        $out = Join-Path $root (New-Name)
        $ErrorActionPreference = 'Continue'
        $all = @(switch ($Command) {
                'Test-MemoryImage' { $objects | Test-MemoryImage 2>&1 }
                'Get-MemoryImage' { $objects | Get-MemoryImage 2>&1 }
                'Restore-MemoryImage' { $objects | Restore-MemoryImage -Destination $out 2>&1 }
            })
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] }) | Should -BeNullOrEmpty -Because 'the image here under that path is not read'
        $err.Count | Should -Be $objects.Count
        foreach ($x in $err) {
            $x.FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
            $x.Exception.Message | Should -BeLike "*on the computer $name*"
        }
        Test-Path -LiteralPath $out | Should -BeFalse
    }

    It 'the <Kind> of <Computer> (this computer), piped into Test- and Restore-MemoryImage, still read the image' -ForEach @(
        foreach ($k in 'summary', 'rounds', 'image') {
            @{ Kind = $k; Computer = 'localhost' }
            @{ Kind = $k; Computer = '{host}' }
        }
    ) {
        $name = $Computer.Replace('{host}', [System.Net.Dns]::GetHostName())
        $objects = @(Get-FarObject $Kind $name)
        @($objects | Test-MemoryImage -ErrorAction Stop) | Should -Not -Contain $false
        $out = Join-Path $root (New-Name)
        $r = @($objects | Restore-MemoryImage -Destination $out -ErrorAction Stop)
        $r.Count | Should -BeGreaterThan 0
    }

    It 'a live -ToSession migration to this computer: its rounds and summary carry ToComputer and restore here' {
        $rs = [runspacefactory]::CreateOutOfProcessRunspace($null); $rs.Open()
        $s = [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'Local', $null)
        try {
            $null = Invoke-Command -Session $s { Import-Module $using:env:SOFTDIRTY_MODULE }
            $e = New-EmulatedProcess
            $m = $e | Add-EmulatedMapping -Length 64KB
            $e | Write-EmulatedMemory -Address $m.Start -Length 64KB -Value 3
            $dest = Join-Path $root (New-Name)
            $r = @($e | Invoke-PreCopyMigration -ToSession $s -Destination $dest -MaxIterations 2 -Confirm:$false)
            $rounds = @($r | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] })
            $rounds.Count | Should -BeGreaterThan 0
            $rounds.ToComputer | Sort-Object -Unique | Should -Be $s.ComputerName
            $r[-1].ToComputer | Should -Be $s.ComputerName
            $out = Join-Path $root (New-Name)
            @($r | Restore-MemoryImage -Destination $out -ErrorAction Stop).Count | Should -BeGreaterThan 0
        } finally { Remove-PSSession $s }
    }
}
