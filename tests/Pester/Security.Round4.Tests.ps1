#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fourth attack round, on what landed after round 3 (new cases only; rounds 1-3 are in
# Workflows.Security.Tests.ps1, Security.Round2.Tests.ps1 and Security.Round3.Tests.ps1): hostile streams into
# Receive-MemoryImage, a destination session whose Receive-MemoryImage is not the module's, paths through
# /proc/self/fd, '//' and '/.', and ptrace of a direct child of this PowerShell (ChildStopGuard).

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $HasMkfifo = [bool](Get-Command mkfifo -CommandType Application -ErrorAction SilentlyContinue)
    $PtraceSkip = if ((Test-Path /proc/sys/kernel/yama/ptrace_scope) -and ($scope = [int](Get-Content /proc/sys/kernel/yama/ptrace_scope)) -ge 2 -and ($scope -ge 3 -or (id -u) -ne '0')) { $true } else { $false }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r4')
    chmod 0755 $TestDrive $root
    $script:src = New-FilledEmulator
    $script:img = "$root/img"
    $null = Save-MemoryImage -Emulator $src.Emulator -Path $img -Confirm:$false
    $src.Emulator | Write-EmulatedMemory -Address $src.Mapping.Start -Length 4KB
    $script:inc = "$root/inc"
    $null = Save-MemoryImage -Emulator $src.Emulator -Path $inc -Parent $img -Confirm:$false
    # The stream -ToSession sends: each file's name, then its bytes.
    function Get-ImageStream([string] $Image) {
        foreach ($f in 'pages.bin', 'index.bin', 'manifest.json') { $f; , [IO.File]::ReadAllBytes("$Image/$f") }
    }
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Everything left in a folder, hidden partial folders included.
    function Get-Left([string] $Folder) { @(Get-ChildItem -Force -LiteralPath $Folder -ErrorAction Ignore).Name }
    $script:ReceiveId = 'SoftDirty.Commands.ReceiveMemoryImageCommand'
}

Describe 'Receive-MemoryImage: hostile streams' -Tag 'Workflows', 'Security' {
    It 'a file name <Label> is InvalidArgument; nothing is put in place and no partial folder is left' -ForEach @(
        @{ Label = 'with a slash'; Name = 'x/pages.bin' }
        @{ Label = 'absolute'; Name = '/etc/pages.bin' }
        @{ Label = '..'; Name = '..' }
        @{ Label = '.'; Name = '.' }
        @{ Label = 'with a NUL'; Name = "pages.bin`0" }
        @{ Label = 'in capitals'; Name = 'PAGES.BIN' }
        @{ Label = 'with a space'; Name = ' pages.bin' }
        @{ Label = 'of unicode'; Name = "pag$([char]0x00e9)s.bin" }
        @{ Label = 'of 5000 characters'; Name = 'p' * 5000 }
        @{ Label = 'of another image file'; Name = 'mappings.json' }
    ) {
        $parent = New-Item -ItemType Directory (New-Dest)
        $stream = @(Get-ImageStream $img)
        $stream[2] = $Name
        Get-ErrorId { $stream | Receive-MemoryImage -Path "$parent/0" } | Should -Be "InvalidArgument,$ReceiveId"
        Get-Left $parent | Should -BeNullOrEmpty
    }

    It 'a name given twice (even after another file), and chunks before any name, are InvalidArgument, leaving nothing' {
        $parent = New-Item -ItemType Directory (New-Dest)
        $s = @(Get-ImageStream $img)
        # pages.bin again after index.bin: a second pages.bin would have replaced or extended the first.
        $twice = @($s[0], $s[1], $s[2], $s[3], $s[0], $s[1], $s[4], $s[5])
        Get-ErrorId { $twice | Receive-MemoryImage -Path "$parent/0" } | Should -Be "InvalidArgument,$ReceiveId"
        $orphan = @(, $s[1]) + $s
        Get-ErrorId { $orphan | Receive-MemoryImage -Path "$parent/0" } | Should -Be "InvalidArgument,$ReceiveId"
        Get-Left $parent | Should -BeNullOrEmpty
    }

    It '<Label> in the stream is InvalidArgument (the module''s error, not a crash), leaving nothing' -ForEach @(
        @{ Label = 'an int'; Item = 42 }
        @{ Label = 'a hashtable'; Item = @{ Name = 'pages.bin' } }
        @{ Label = 'a PSCustomObject'; Item = [pscustomobject]@{ Name = 'pages.bin'; Bytes = [byte[]](1, 2) } }
        @{ Label = 'a char array'; Item = [char[]]'abc' }
        @{ Label = 'an int array'; Item = [int[]](1, 2, 3) }
        @{ Label = 'a directory'; Item = 'DIR' }
    ) {
        $parent = New-Item -ItemType Directory (New-Dest)
        $thing = if ($Item -eq 'DIR') { Get-Item $root } else { $Item }
        $s = @(Get-ImageStream $img)
        $stream = @($s[0], $s[1]) + @(, $thing) + @($s[2], $s[3], $s[4], $s[5])
        Get-ErrorId { $stream | Receive-MemoryImage -Path "$parent/0" } | Should -Be "InvalidArgument,$ReceiveId"
        Get-Left $parent | Should -BeNullOrEmpty
    }

    It 'a valid stream with $null or an empty string inserted never puts an image in place with the error swallowed' {
        # PowerShell's own binding refuses $null and '' for the mandatory input (a non-terminating error): whatever
        # follows, the caller sees an error, and an image that is put in place is byte for byte the one sent.
        foreach ($bad in @($null, '')) {
            $parent = New-Item -ItemType Directory (New-Dest)
            $s = @(Get-ImageStream $img)
            $stream = @($s[0], $bad, $s[1], $s[2], $bad, $s[3], $s[4], $s[5])
            $errors = @()
            try { $null = $stream | Receive-MemoryImage -Path "$parent/0" -ErrorAction SilentlyContinue -ErrorVariable +errors } catch { $errors += $_ }
            $errors | Should -Not -BeNullOrEmpty -Because "'$bad' is not part of an image"
            if (Test-Path "$parent/0") {
                foreach ($f in 'pages.bin', 'index.bin', 'manifest.json') {
                    [IO.File]::ReadAllBytes("$parent/0/$f") | Should -Be ([IO.File]::ReadAllBytes("$img/$f"))
                }
            }
            @(Get-Left $parent | Where-Object { $_ -like '.*partial*' }) | Should -BeNullOrEmpty
        }
    }

    It 'a file piped in (FileInfo) that is a FIFO named pages.bin is refused at once (no hang), leaving nothing' -Skip:(-not $HasMkfifo) {
        $fake = New-Item -ItemType Directory (New-Dest)
        mkfifo "$fake/pages.bin"
        $parent = New-Item -ItemType Directory (New-Dest)
        $id = Get-ErrorId { Get-Item "$fake/pages.bin" | Receive-MemoryImage -Path "$parent/0" }
        $id | Should -BeLike "*,$ReceiveId"
        ($id -split ',')[0] | Should -BeIn 'ImageCorrupt', 'InvalidArgument'
        Get-Left $parent | Should -BeNullOrEmpty
    }

    It 'a pages.bin larger than its manifest says (64 MiB of padding) is written as it streams, never buffered, then refused as ImageCorrupt' {
        $parent = New-Item -ItemType Directory (New-Dest)
        $s = @(Get-ImageStream $img)
        $chunk = [byte[]]::new(4MB)
        $seen = [Collections.Generic.List[long]]::new()
        $gen = {
            $s[0]; , $s[1]
            for ($i = 1; $i -le 16; $i++) {
                , $chunk
                # The pipeline is synchronous: the receiver has handled the chunk before the next one is made.
                $part = @(Get-ChildItem -Force -LiteralPath $parent -Filter '.*partial*')
                if ($part) { $seen.Add((Get-Item -Force (Join-Path $part[0].FullName 'pages.bin')).Length) }
            }
            $s[2]; , $s[3]; $s[4]; , $s[5]
        }
        Get-ErrorId { & $gen | Receive-MemoryImage -Path "$parent/0" } | Should -Be "ImageCorrupt,$ReceiveId"
        $seen.Count | Should -Be 16
        $seen[-2] | Should -BeGreaterOrEqual (15 * 4MB) -Because 'each chunk reaches the file before the next is sent'
        Get-Left $parent | Should -BeNullOrEmpty
    }

    It 'an increment whose parent (its sibling, as the manifest names it) is an image of another process is ImageParentMismatch, leaving the parent as it was' {
        $parent = New-Item -ItemType Directory (New-Dest)
        $other = New-FilledEmulator
        $null = Save-MemoryImage -Emulator $other.Emulator -Path "$parent/img" -Confirm:$false
        $before = [IO.File]::ReadAllBytes("$parent/img/manifest.json")
        Get-ErrorId { Get-ImageStream $inc | Receive-MemoryImage -Path "$parent/inc" } | Should -Be "ImageParentMismatch,$ReceiveId"
        Get-Left $parent | Should -Be 'img'
        [IO.File]::ReadAllBytes("$parent/img/manifest.json") | Should -Be $before
    }

    It 'an increment received under its own parent''s name (a self-link) is ImageExists and the parent is untouched' {
        $parent = New-Item -ItemType Directory (New-Dest)
        $null = Get-ImageStream $img | Receive-MemoryImage -Path "$parent/img"
        Get-ErrorId { Get-ImageStream $inc | Receive-MemoryImage -Path "$parent/img" } | Should -Be "ImageExists,$ReceiveId"
        (Get-MemoryImage "$parent/img").Kind | Should -Be 'Full'
        Test-MemoryImage "$parent/img" | Should -BeTrue
    }

    It '-Path <Label> is refused with <Id>, and the victim is untouched' -ForEach @(
        @{ Label = 'a link to an empty folder of the caller'; Id = 'UnsafeDestination' }
        @{ Label = 'in a group-writable folder'; Id = 'UnsafeDestination' }
        @{ Label = 'an existing file'; Id = 'ImageExists' }
    ) {
        $parent = New-Item -ItemType Directory (New-Dest)
        $victim = New-Item -ItemType Directory (New-Dest)
        $path = switch ($Label) {
            { $_ -like 'a link*' } { $null = New-Item -ItemType SymbolicLink -Path "$parent/0" -Target $victim; "$parent/0" }
            { $_ -like 'in a group*' } { $g = New-Item -ItemType Directory "$parent/g"; chmod 0770 $g; "$g/0" }
            default { Set-Content "$parent/0" 'precious'; "$parent/0" }
        }
        Get-ErrorId { Get-ImageStream $img | Receive-MemoryImage -Path $path } | Should -Be "$Id,$ReceiveId"
        Get-Left $victim | Should -BeNullOrEmpty
        if ($Label -eq 'an existing file') { Get-Content "$parent/0" | Should -Be 'precious' }
    }

    It '-Path in a folder of another user (uid 65534) is UnsafeDestination' -Skip:(-not $IsRoot) {
        $foreign = New-Item -ItemType Directory (New-Dest); chown 65534:65534 $foreign; chmod 0755 $foreign
        Get-ErrorId { Get-ImageStream $img | Receive-MemoryImage -Path "$foreign/0" } | Should -Be "UnsafeDestination,$ReceiveId"
        Get-Left $foreign | Should -BeNullOrEmpty
    }

    It 'two receives into one path at once (two runspaces): exactly one puts its image in place, whole; the other says ImageExists' {
        $parent = New-Item -ItemType Directory (New-Dest)
        $module = (Get-Module SoftDirty).Path
        $stream = @(Get-ImageStream $img)
        $jobs = foreach ($n in 1, 2) {
            $ps = [powershell]::Create()
            $null = $ps.AddScript({
                param($Module, $Stream, $Path)
                Import-Module $Module
                try { $null = $Stream | Receive-MemoryImage -Path $Path -ErrorAction Stop; 'ok' } catch { $_.FullyQualifiedErrorId }
            }).AddArgument($module).AddArgument($stream).AddArgument("$parent/0")
            [pscustomobject]@{ Ps = $ps; Handle = $ps.BeginInvoke() }
        }
        $results = foreach ($j in $jobs) { $j.Ps.EndInvoke($j.Handle); $j.Ps.Dispose() }
        @($results | Where-Object { $_ -eq 'ok' }).Count | Should -Be 1 -Because ($results -join '; ')
        @($results | Where-Object { $_ -like 'ImageExists,*' }).Count | Should -Be 1 -Because ($results -join '; ')
        Test-MemoryImage "$parent/0" | Should -BeTrue
        Get-Left $parent | Should -Be '0'
    }

    It 'stopped mid-stream (Ctrl+C: StopProcessing) leaves no image and no partial folder' {
        $parent = New-Item -ItemType Directory (New-Dest)
        $feed = [System.Management.Automation.PSDataCollection[object]]::new()
        $iss = [System.Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
        $iss.ImportPSModule((Get-Module SoftDirty).Path)
        $ps = [powershell]::Create($iss)
        $null = $ps.AddCommand('Receive-MemoryImage').AddParameter('Path', "$parent/0")
        $handle = $ps.BeginInvoke($feed, [System.Management.Automation.PSDataCollection[psobject]]::new())
        try {
            $s = @(Get-ImageStream $img)
            $feed.Add($s[0]); $feed.Add($s[1])
            # Wait until the first chunk is on disk in the private folder.
            $deadline = [Environment]::TickCount64 + 60000
            do { Start-Sleep -Milliseconds 50; $part = @(Get-ChildItem -Force -LiteralPath $parent -Filter '.*partial*') }
            until (($part -and (Test-Path (Join-Path $part[0].FullName 'pages.bin')) -and (Get-Item -Force (Join-Path $part[0].FullName 'pages.bin')).Length -eq $s[1].Length) -or [Environment]::TickCount64 -gt $deadline)
            $part | Should -Not -BeNullOrEmpty
            $ps.Stop()
            { $ps.EndInvoke($handle) } | Should -Throw
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        } finally { $feed.Complete(); $ps.Runspace.Dispose(); $ps.Dispose() }
        Get-Left $parent | Should -BeNullOrEmpty
    }
}

Describe 'Safe destinations: unusual spellings of a path' -Tag 'Workflows', 'Security' {
    It 'a destination spelt <Label> lands in the folder it names, whole, with modes 0700/0600' -ForEach @(
        @{ Label = 'with //'; Spell = { param($p) $p.Replace('/r4/', '//r4//') } }
        @{ Label = 'with a trailing /.'; Spell = { param($p) "$p/." } }
        @{ Label = 'with a trailing /'; Spell = { param($p) "$p/" } }
        @{ Label = 'through /proc/self/cwd (a magic link of the caller)'; Spell = 'CWD' }
    ) {
        $parent = New-Item -ItemType Directory (New-Dest)
        $dest = "$parent/0"
        $cwd = [Environment]::CurrentDirectory
        try {
            $spelt = if ($Spell -eq 'CWD') { [Environment]::CurrentDirectory = $parent; '/proc/self/cwd/0' } else { & $Spell $dest }
            $null = Get-ImageStream $img | Receive-MemoryImage -Path $spelt
        } finally { [Environment]::CurrentDirectory = $cwd }
        Test-MemoryImage $dest | Should -BeTrue
        (Get-Item $dest).UnixMode | Should -Be 'drwx------'
        (Get-Item "$dest/manifest.json").UnixMode | Should -Be '-rw-------'
        Get-Left $parent | Should -Be '0'
    }

    It 'a destination under /proc is a clear error (no stack trace), creating nothing' {
        $id = Get-ErrorId { Get-ImageStream $img | Receive-MemoryImage -Path "/proc/self/softdirty-$([guid]::NewGuid().ToString('n'))" }
        $id | Should -BeLike "*,$ReceiveId"
        ($id -split ',')[0] | Should -BeIn 'UnsafeDestination', 'PermissionDenied', 'ImageWriteError', 'InvalidArgument'
    }

    It 'a root-owned link on the way that points into a folder every user may write to (no sticky bit) is still refused: the target is checked' -Skip:(-not $IsRoot) {
        $open = New-Item -ItemType Directory (New-Dest); chmod 0777 $open
        $link = New-Dest
        $null = New-Item -ItemType SymbolicLink -Path $link -Target $open
        Get-ErrorId { Get-ImageStream $img | Receive-MemoryImage -Path "$link/0" } | Should -Be "UnsafeDestination,$ReceiveId"
        Get-Left $open | Should -BeNullOrEmpty
    }

    It 'a link of the caller that points into a folder of another user is refused: the target is checked' -Skip:(-not $IsRoot) {
        $foreign = New-Item -ItemType Directory (New-Dest); chown 65534:65534 $foreign; chmod 0755 $foreign
        $link = New-Dest
        $null = New-Item -ItemType SymbolicLink -Path $link -Target $foreign
        Get-ErrorId { Get-ImageStream $img | Receive-MemoryImage -Path "$link/sub/0" } | Should -Be "UnsafeDestination,$ReceiveId"
        Get-Left $foreign | Should -BeNullOrEmpty
    }
}

Describe 'Invoke-PreCopyMigration -ToSession: what the source trusts of the destination' -Tag 'Workflows', 'Security' {
    BeforeAll {
        # A local out-of-process runspace stands in for the destination machine (no sshd needed).
        function New-LocalSession {
            $rs = [runspacefactory]::CreateOutOfProcessRunspace($null); $rs.Open()
            [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'Local', $null)
        }
        $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
        $script:session = New-LocalSession
        Invoke-Command -Session $session { Import-Module $using:module }
        function New-Source {
            $e = New-EmulatedProcess
            $m = $e | Add-EmulatedMapping -Length 256KB
            $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
            $e
        }
        $script:MigrateId = 'SoftDirty.Commands.InvokePreCopyMigrationCommand'
    }
    AfterAll { if ($session) { Remove-PSSession $session } }

    It 'a function and an alias named Receive-MemoryImage / Restore-MemoryImage in the session (that drop what they get) are not run: the module''s commands write, verify and restore' {
        # Before the fix the source ran whatever answered to the name, and reported Converged with a FinalImage
        # and a RestorePath that did not exist (a migration that silently lost the memory).
        $s = New-LocalSession
        try {
            Invoke-Command -Session $s {
                Import-Module $using:module
                function global:Receive-MemoryImage { param($Path, [Parameter(ValueFromPipeline)] $InputObject, $ProgressAction) process { } }
                function global:Restore-MemoryImage { param($Path, $Destination) }
                Set-Alias -Scope Global Restore-MemoryImage Receive-MemoryImage
            }
            $dest = New-Dest
            $r = New-Source | Invoke-PreCopyMigration -ToSession $s -Destination "$dest/chain" -RestorePath "$dest/restored" -MaxIterations 2 -Confirm:$false
            $r[-1].Converged | Should -BeTrue
            Test-MemoryImage $r[-1].FinalImage | Should -BeTrue
            @(Get-ChildItem "$dest/restored" -Filter '*.bin').Count | Should -BeGreaterThan 0
        } finally { Remove-PSSession $s }
    }

    It 'a receiver that answers without putting the image in place (a module named SoftDirty that is not this one) is LinkBroken, never Converged' {
        $s = New-LocalSession
        try {
            Invoke-Command -Session $s {
                $null = New-Module -Name SoftDirty -ScriptBlock {
                    function Receive-MemoryImage { param($Path, [Parameter(ValueFromPipeline)] $InputObject, $ProgressAction) process { } }
                    function Restore-MemoryImage { param($Path, $Destination) }
                } | Import-Module -PassThru
            }
            $dest = New-Dest
            $errors = @()
            $r = @(New-Source | Invoke-PreCopyMigration -ToSession $s -Destination "$dest/chain" -MaxIterations 2 -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable +errors)
            $errors | Should -Not -BeNullOrEmpty
            $errors[0].FullyQualifiedErrorId | Should -Be "LinkBroken,$MigrateId"
            @($r | Where-Object { $_ -is [SoftDirty.Workflows.PreCopySummary] -and $_.Converged }) | Should -BeNullOrEmpty
        } finally { Remove-PSSession $s }
    }

    It 'a closed session is LinkBroken before anything is sent' {
        $s = New-LocalSession
        Invoke-Command -Session $s { Import-Module $using:module }
        $s.Runspace.Close()
        $dest = New-Dest
        Get-ErrorId { New-Source | Invoke-PreCopyMigration -ToSession $s -Destination "$dest/chain" -MaxIterations 2 -Confirm:$false } | Should -Be "LinkBroken,$MigrateId"
        Test-Path $dest | Should -BeFalse
        Remove-PSSession $s
    }

    It 'relative -Destination and -RestorePath resolve against the destination session''s location, not the source''s' {
        $there = New-Item -ItemType Directory (New-Dest)
        $here = New-Item -ItemType Directory (New-Dest)
        Invoke-Command -Session $session { Set-Location -LiteralPath $using:there }
        Push-Location $here
        try {
            $r = New-Source | Invoke-PreCopyMigration -ToSession $session -Destination 'chain' -RestorePath 'restored' -MaxIterations 2 -Confirm:$false
        } finally { Pop-Location }
        $r[-1].FinalImage | Should -BeLike "$there/chain/*"
        Test-MemoryImage $r[-1].FinalImage | Should -BeTrue
        Test-Path "$there/restored" -PathType Container | Should -BeTrue
        Get-Left $here | Should -BeNullOrEmpty
    }
}

Describe 'ptrace of a direct child of this PowerShell (ChildStopGuard)' -Tag 'Workflows', 'Security' -Skip:$PtraceSkip {
    BeforeAll {
        $script:support = Get-SoftDirtySupport
        $script:wpSkip = if (-not ($support.PagemapScan -and $support.UffdWriteProtectAsync)) { 'this kernel lacks PAGEMAP_SCAN or userfaultfd WP_ASYNC' }
            elseif ([System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -ne 'X64') { 'syscall injection is implemented for x86-64 only' }
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state4'
        # This process's SIGCHLD flags (sa_flags of sigaction; SA_NOCLDSTOP is 1), as the guard sets and restores them.
        if (-not ('SoftDirtyRound4.SigChld' -as [type])) {
            Add-Type -Namespace SoftDirtyRound4 -Name SigChld -CompilerOptions '-unsafe' -MemberDefinition @'
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
private unsafe struct SigAction { public System.IntPtr Handler; public fixed ulong Mask[16]; public int Flags; public System.IntPtr Restorer; }
[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
private static extern unsafe int sigaction(int signal, SigAction* action, SigAction* old);
public static unsafe int Flags() { SigAction a; if (sigaction(17, null, &a) != 0) throw new System.InvalidOperationException("sigaction"); return a.Flags; }
'@
        }
        # Another child of this pwsh, started and reaped by .NET while the traced one is around.
        function Test-OtherChild([int] $Code) {
            $p = Start-Process /bin/sh -ArgumentList "-c `"exit $Code`"" -PassThru -Wait
            $p.ExitCode
        }
    }
    AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

    It 'after Save-MemoryImage -Freeze of a direct child, the child runs on, and its exit code and WaitForExit still work (and those of another child)' {
        $flags = [SoftDirtyRound4.SigChld]::Flags()
        $t = Start-WfTarget
        try {
            $null = New-WfRegion $t 16
            $null = Save-MemoryImage -Id $t.Id -Path (New-Dest) -Freeze -Method Hash
            [SoftDirtyRound4.SigChld]::Flags() | Should -Be $flags -Because 'the SIGCHLD flags (SA_NOCLDSTOP) are restored after the save'
            Get-ProcessState $t.Id | Should -Not -Be 'T' -Because 'the save resumes the child'
            Test-OtherChild 7 | Should -Be 7
            Send-WfTarget $t 'map 1' | Should -Not -BeNullOrEmpty -Because 'the child still answers'
            $t.Process.StandardInput.WriteLine('exit')
            $t.Process.WaitForExit(60000) | Should -BeTrue
            $t.Process.ExitCode | Should -Be 0
            Test-OtherChild 9 | Should -Be 9
        } finally { Stop-WfTarget $t }
    }

    It 'Enable-WriteTracking and Disable-WriteTracking of a direct child leave its exit code (killed by SIGTERM: 143) and WaitForExit intact' {
        if ($wpSkip) { Set-ItResult -Skipped -Because $wpSkip; return }
        $flags = [SoftDirtyRound4.SigChld]::Flags()
        $t = Start-WfTarget
        try {
            $null = New-WfRegion $t 16
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
            Test-OtherChild 3 | Should -Be 3
            $null = Disable-WriteTracking -Id $t.Id -Confirm:$false
            [SoftDirtyRound4.SigChld]::Flags() | Should -Be $flags -Because 'the SIGCHLD flags (SA_NOCLDSTOP) are restored'
            Send-WfTarget $t 'map 1' | Should -Not -BeNullOrEmpty
            kill -TERM $t.Id
            $t.Process.WaitForExit(60000) | Should -BeTrue
            $t.Process.ExitCode | Should -Be 143
            Test-OtherChild 4 | Should -Be 4
        } finally { Stop-WfTarget $t }
    }

    It 'a direct child killed (SIGKILL) during <Command>: it succeeds or fails with one of the module''s errors (never System.*), the exit status (137) is not lost and SIGCHLD''s flags are restored' -ForEach @(
        @{ Command = 'Save-MemoryImage -Freeze'; Run = { param($Id) $null = Save-MemoryImage -Id $Id -Path (New-Dest) -Freeze -Method Hash } }
        # Before the fix a death during the parallel PAGEMAP_SCAN that protects the pages reached the user as
        # System.AggregateException. (Which of the module's errors a death at each step gives is not asserted:
        # mostly ProcessExited or ProcessNotFound, rarely still ProcIOError or PermissionDenied.)
        @{ Command = 'Enable-WriteTracking'; Run = { param($Id) $null = Enable-WriteTracking -Id $Id -Confirm:$false; $null = Disable-WriteTracking -Id $Id -Confirm:$false } }
    ) {
        if ($Command -eq 'Enable-WriteTracking' -and $wpSkip) { Set-ItResult -Skipped -Because $wpSkip; return }
        $flags = [SoftDirtyRound4.SigChld]::Flags()
        $ids = foreach ($delay in '0', '0.002', '0.005', '0.01', '0.02', '0.05', '0.2') {
            $t = Start-WfTarget
            try {
                $null = New-WfRegion $t 256
                $killer = Start-Process /bin/sh -ArgumentList "-c `"sleep $delay; kill -KILL $($t.Id)`"" -PassThru
                Get-ErrorId { & $Run $t.Id }
                $killer.WaitForExit()
                $t.Process.WaitForExit(60000) | Should -BeTrue
                $t.Process.ExitCode | Should -Be 137
            } finally { Stop-WfTarget $t }
        }
        $ok = @('none') + [Enum]::GetNames([SoftDirty.EngineError])
        foreach ($id in $ids) { ($id -split ',')[0] | Should -BeIn $ok -Because $id }
        [SoftDirtyRound4.SigChld]::Flags() | Should -Be $flags
        Test-OtherChild 5 | Should -Be 5
    }
}
