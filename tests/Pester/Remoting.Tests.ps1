#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
<#
    PowerShell remoting over SSH against a real OpenSSH sshd (Debian's openssh-server, installed when absent
    and this runs as root) on a loopback port, with a throwaway host key and client key, and the PowerShell
    SSH subsystem pointing at this pwsh. Two sessions stand in for two hosts: what comes back is usable
    (views, ranges, one chart of both). Skips, with its reason, where sshd cannot be had or started.
#>

BeforeDiscovery {
    $sshd = '/usr/sbin/sshd'
    if (-not (Test-Path $sshd) -and (Get-Command apt-get -ErrorAction SilentlyContinue) -and (id -u) -eq '0') {
        $env:DEBIAN_FRONTEND = 'noninteractive'
        apt-get install -y -qq --no-install-recommends openssh-server *> $null
    }
    $script:skipReason = if (-not (Test-Path $sshd)) { 'no /usr/sbin/sshd (openssh-server) and it cannot be installed here' }
        elseif (-not (Get-Command ssh -CommandType Application -ErrorAction SilentlyContinue)) { 'no ssh client (openssh-client)' }
}

Describe 'Remoting over SSH' -Tag Remoting -Skip:([bool]$script:skipReason) {
    BeforeAll {
        $module = $env:SOFTDIRTY_MODULE
        Import-Module $module -Force
        $dir = Join-Path ([IO.Path]::GetTempPath()) "softdirty-ssh-$([guid]::NewGuid().ToString('n'))"
        $null = New-Item -ItemType Directory $dir
        chmod 700 $dir
        ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" | Out-Null
        ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key" | Out-Null
        Copy-Item "$dir/client_key.pub" "$dir/authorized_keys"
        # The subsystem runs this pwsh: pwsh itself, or dotnet pwsh.dll as the local tool runs it.
        $exe = [Environment]::ProcessPath
        $pwshArgs = @(if ((Split-Path -Leaf $exe) -like 'dotnet*') { [Environment]::GetCommandLineArgs()[0] })
        Set-Content "$dir/pwsh-subsystem.sh" "#!/bin/sh`nexec '$exe' $(($pwshArgs | ForEach-Object { "'$_'" }) -join ' ') -sshs -NoLogo -NoProfile"
        chmod 755 "$dir/pwsh-subsystem.sh"
        $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $listener.Start(); $port = $listener.LocalEndpoint.Port; $listener.Stop()
        @(
            "Port $port", 'ListenAddress 127.0.0.1', "HostKey $dir/host_key", "PidFile $dir/sshd.pid"
            "AuthorizedKeysFile $dir/authorized_keys", 'PasswordAuthentication no', 'KbdInteractiveAuthentication no'
            'PubkeyAuthentication yes', 'PermitRootLogin prohibit-password', 'StrictModes no', 'UsePAM no', 'LogLevel ERROR'
            "Subsystem powershell $dir/pwsh-subsystem.sh"
        ) | Set-Content "$dir/sshd_config"
        # sshd as root wants its privilege-separation directory.
        if ((id -u) -eq '0' -and -not (Test-Path /run/sshd)) { $null = New-Item -ItemType Directory /run/sshd }
        # Its output goes to files, never to this process's pipes: a daemon left behind must not hold a caller's pipe open.
        $daemon = Start-Process /usr/sbin/sshd -ArgumentList '-D', '-e', '-f', "$dir/sshd_config" -PassThru -RedirectStandardError "$dir/sshd.log" -RedirectStandardOutput "$dir/sshd.out"
        $user = (id -un)
        $options = @{ StrictHostKeyChecking = 'no'; UserKnownHostsFile = '/dev/null'; LogLevel = 'ERROR' }
        $sessions = @()
        $startError = $null
        # A probe with the plain ssh client first: a daemon that cannot log this user in (a nologin shell, a
        # refused key) must skip the tests with its reason, not reach New-PSSession, whose SSH transport can
        # take the whole process down when the subsystem dies at once.
        $shell = ((getent passwd $user) -split ':')[-1]
        if ($shell -match '(nologin|false)$') { $startError = "the login shell of $user is ${shell}: sshd cannot start the PowerShell subsystem for it" }
        else {
            $deadline = [Environment]::TickCount64 + 20000
            do {
                $probe = ssh -p $port -i "$dir/client_key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$user@127.0.0.1" true 2>&1
                $ok = $LASTEXITCODE -eq 0
                if (-not $ok) { Start-Sleep -Milliseconds 200 }
            } until ($ok -or [Environment]::TickCount64 -gt $deadline -or $daemon.HasExited)
            if (-not $ok) { $startError = "ssh to the test sshd as $user failed: $probe $(Get-Content -Raw "$dir/sshd.log" -ErrorAction SilentlyContinue)" }
        }
        if (-not $startError) { try {
            foreach ($i in 1..2) {
                $sessions += New-PSSession -HostName 127.0.0.1 -Port $port -UserName $user -KeyFilePath "$dir/client_key" -Options $options -ErrorAction Stop
            }
            Invoke-Command -Session $sessions { Import-Module $using:module } -ErrorAction Stop
        } catch { $startError = "sshd or the SSH subsystem did not start: $_ $(Get-Content -Raw "$dir/sshd.log" -ErrorAction SilentlyContinue)" } }
    }

    AfterAll {
        if ($sessions) { $sessions | Remove-PSSession }
        if ($daemon -and -not $daemon.HasExited) { Stop-Process -Id $daemon.Id }
        Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue
    }

    BeforeEach {
        if ($startError) { Set-ItResult -Skipped -Because $startError }
    }

    It 'runs the module in each session, in its own process' {
        $pids = @(Invoke-Command -Session $sessions { $PID })
        $pids | Should -HaveCount 2
        $pids[0] | Should -Not -Be $pids[1]
        @(Invoke-Command -Session $sessions { (Get-SoftDirtySupport).KernelRelease } | Select-Object -Unique) | Should -Be (Get-Content /proc/sys/kernel/osrelease).Trim()
    }

    It 'Get-PageMap -AsRange comes back as ranges that print with the range view' {
        $ranges = @(Invoke-Command -Session $sessions[0] { Get-PageMap -Id $PID -Mapping '[stack]' -AsRange })
        $ranges | Should -Not -BeNullOrEmpty
        $ranges[0].PSObject.TypeNames[0] | Should -Be 'Deserialized.SoftDirty.PageRange'
        ($ranges | Format-Table | Out-String -Width 120) | Should -Match '\s+Start\s+End\s+Mapping'
        $ranges[0].PSComputerName | Should -Be '127.0.0.1'
    }

    It 'Watch-DirtyPage samples from two sessions draw as two series in one chart' {
        $samples = @(Invoke-Command -Session $sessions {
            $e = New-EmulatedProcess -Name "host$PID"
            $m = $e | Add-EmulatedMapping -Length 1MB
            $e | Watch-DirtyPage -Count 3 -Interval 0.5 -Workload @{ Address = $m.Start; Length = 1MB; Pattern = 'HotSet'; AccessesPerSecond = 4000; WriteRatio = 1; Seed = 5 }
        })
        $samples | Should -HaveCount 6
        "$($samples[0].Ranges[0])" | Should -Match '^0x[0-9a-f]+-0x[0-9a-f]+$'
        $svg = Join-Path $TestDrive 'fleet.svg'
        $null = $samples | Export-DirtyPageChart -Path $svg
        $xml = [xml](Get-Content -Raw $svg)
        @($xml.svg.polyline | Where-Object class -eq 'rate').Count | Should -Be 2
        @($xml.svg.text | Where-Object class -eq 'fg legend series').'#text' | Should -Match 'on 127\.0\.0\.1$'
    }

    Context 'Invoke-PreCopyMigration -ToSession: a migration that crosses the session' {
        BeforeAll {
            Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
            # Another session to the same sshd: a host of its own (its own server-side pwsh).
            function New-TestSession {
                New-PSSession -HostName 127.0.0.1 -Port $port -UserName $user -KeyFilePath "$dir/client_key" -Options $options -ErrorAction Stop
            }
            # The restored flat files (START-END.bin) against the memory they came from.
            function Assert-RestoredEqual([string] $Restored, [scriptblock] $ReadMemory) {
                $files = @(Get-ChildItem -LiteralPath $Restored -File | Where-Object Name -match '^([0-9a-f]+)-([0-9a-f]+)\.bin$')
                $files | Should -Not -BeNullOrEmpty
                foreach ($f in $files) {
                    $null = $f.Name -match '^([0-9a-f]+)-([0-9a-f]+)\.bin$'
                    $start = [Convert]::ToUInt64($Matches[1], 16); $end = [Convert]::ToUInt64($Matches[2], 16)
                    $f.Length | Should -Be ($end - $start)
                    $memory = [byte[]](& $ReadMemory $start ($end - $start))
                    [System.Linq.Enumerable]::SequenceEqual($memory, [IO.File]::ReadAllBytes($f.FullName)) | Should -BeTrue -Because "$($f.Name) must hold the bytes of the process at $($Matches[1])"
                }
                $files
            }
            if (-not ('SoftDirtyTest.LinkCutter' -as [type])) {
                # Cuts the link at a known point: the first progress record of a given transfer (written after that
                # transfer's first chunk was handed to the session) kills the session's server-side process, on
                # the thread that wrote the record, before the next chunk is sent.
                Add-Type -TypeDefinition @'
namespace SoftDirtyTest {
    public static class LinkCutter {
        public static volatile bool Fired;
        public static void Arm(System.Management.Automation.PSDataCollection<System.Management.Automation.ProgressRecord> progress, int pid, string activity) {
            Fired = false;
            progress.DataAdded += (sender, e) => {
                var r = progress[e.Index];
                if (Fired || !r.Activity.StartsWith(activity) || r.RecordType != System.Management.Automation.ProgressRecordType.Processing) return;
                Fired = true;
                System.Diagnostics.Process.GetProcessById(pid).Kill();
            };
        }
    }
}
'@
            }
        }

        It 'migrates a real process: each round verified on the destination, the link measured, the restored memory equal to the process''s' {
            $t = Start-WfTarget
            try {
                $region = New-WfRegion $t 1024
                $dest = Join-Path $TestDrive "real-$([guid]::NewGuid().ToString('n'))"
                # Stopped (SIGSTOP) first, so that its memory after the migration is the memory the migration took: a
                # running target changes its libc's lock words after it is let run again. A stopped process is left stopped.
                # SIGSTOP takes effect asynchronously: wait until the process is in its group stop, or the kernel
                # may still write its rseq area (cpu id fields in the TLS) on a last return to user space.
                & kill -STOP $t.Id
                $deadline = [DateTime]::UtcNow.AddSeconds(10)
                $threadStates = { Get-ChildItem "/proc/$($t.Id)/task" | ForEach-Object { $s = Get-Content "$($_.FullName)/stat" -Raw; $s.Substring($s.LastIndexOf(')') + 2, 1) } }
                while (@(& $threadStates | Where-Object { $_ -ne 'T' }).Count -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
                & $threadStates | Should -Be 'T' -Because 'every thread is in its group stop'
                # -Method Hash: the comparison below needs a target that never ran while migrated. WriteProtect injects
                # syscalls (enable, and disable after the last round), and each return to user space lets the kernel
                # rewrite the thread's rseq area (cpu id fields in its TLS) after the last round was taken.
                $out = @(Invoke-PreCopyMigration -Id $t.Id -ToSession $sessions[1] -Destination "$dest/chain" -RestorePath "$dest/restored" -MaxIterations 2 -StopThreshold 0 -Mapping '[anon]' -Method Hash)
                $summary = $out[-1]
                $rounds = @($out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] })
                $summary | Should -BeOfType ([SoftDirty.Workflows.PreCopySummary])
                $summary.ToComputer | Should -Be '127.0.0.1'
                $summary.Bandwidth | Should -BeGreaterThan 0 -Because 'the bytes over the session per second of transfer are measured'
                $summary.EstimatedDowntime | Should -BeGreaterThan 0
                $summary.EstimatedDowntime | Should -BeGreaterOrEqual $rounds[-1].TransferSeconds -Because 'the downtime spans the final transfer'
                $summary.TotalBytesSent | Should -Be (($rounds | Measure-Object BytesSent -Sum).Sum)
                $rounds[0].BytesSent | Should -BeGreaterThan (1024 * $t.PageSize) -Because 'round 1 carries the region''s pages, its index and manifest'
                foreach ($r in $rounds) { $r.TransferSeconds | Should -BeGreaterThan 0 }
                $rounds[-1].Phase | Should -Be 'StopAndCopy'
                $summary.FinalImage | Should -Be (Join-Path "$dest/chain" ('round-{0:D2}' -f $rounds.Count))
                $summary.RestorePath | Should -Be "$dest/restored"
                # The destination is this machine's file system too: check what the other side wrote.
                Test-MemoryImage $summary.FinalImage | Should -BeTrue
                @(Get-MemoryImage $summary.FinalImage).Count | Should -Be $rounds.Count
                (Get-Item "$dest/chain/round-01").UnixMode | Should -Be 'drwx------'
                (Get-Item "$dest/chain/round-01/pages.bin").UnixMode | Should -Be '-rw-------'
                Get-ProcessState $t.Id | Should -Be 'T'
                $mem = [IO.File]::OpenRead("/proc/$($t.Id)/mem")
                try {
                    $files = Assert-RestoredEqual "$dest/restored" {
                        param($start, $length)
                        $mem.Position = [long]$start
                        $buffer = [byte[]]::new($length)
                        $mem.ReadExactly($buffer, 0, $buffer.Length)
                        , $buffer
                    }
                } finally { $mem.Dispose() }
                $files.Name | Should -Contain ('{0:x}-{1:x}.bin' -f $region.Address, ($region.Address + 1024 * $t.PageSize))
            } finally { Stop-WfTarget $t }
        }

        It 'migrates an emulated process that keeps writing; the restored memory equals the emulated memory' {
            $e = New-EmulatedProcess
            $m = $e | Add-EmulatedMapping -Length 4MB
            $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
            $work = @{ Address = $m.Start; Length = $m.Size; Pattern = 'HotSet'; AccessesPerSecond = 20000; WriteRatio = 1; Seed = 3 }
            $dest = Join-Path $TestDrive "emulated-$([guid]::NewGuid().ToString('n'))"
            $out = @($e | Invoke-PreCopyMigration -Workload $work -ToSession $sessions[1] -Destination "$dest/chain" -RestorePath "$dest/restored" -MaxIterations 3 -StopThreshold 16)
            $summary = $out[-1]
            $rounds = @($out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] })
            $rounds[0].PagesSent | Should -Be 1024
            $rounds[0].DirtyPages | Should -BeGreaterThan 0 -Because 'the workload runs for the measured seconds of round 1'
            $rounds[1].PagesSent | Should -Be $rounds[0].DirtyPages
            $summary.Bandwidth | Should -BeGreaterThan 0
            $summary.EstimatedDowntime | Should -BeGreaterThan 0
            Test-MemoryImage $summary.FinalImage | Should -BeTrue
            $files = Assert-RestoredEqual "$dest/restored" { param($start, $length) , ($e | Read-EmulatedMemory -Address $start -Length $length -AsByteArray) }
            $files.Name | Should -Be ('{0:x}-{1:x}.bin' -f $m.Start, $m.End)
        }

        It 'a link cut during a round leaves the last complete, verified image and gives LinkBroken (ConnectionError)' {
            $cut = New-TestSession
            try {
                Invoke-Command -Session $cut { Import-Module $using:module } -ErrorAction Stop
                $serverPid = Invoke-Command -Session $cut { $PID }
                $e = New-EmulatedProcess
                $m = $e | Add-EmulatedMapping -Length 8MB
                $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
                # Every page rewritten in round 1 (100,000 page writes a second over 2,048 pages): round 2 sends 8 MiB, two chunks.
                $work = @{ Address = $m.Start; Length = $m.Size; Pattern = 'Sequential'; AccessesPerSecond = 100000; WriteRatio = 1; Seed = 1 }
                $dest = Join-Path $TestDrive "cut-$([guid]::NewGuid().ToString('n'))"
                # A runspace of its own, so that the progress records reach $ps.Streams.Progress (and the cutter).
                $local = [runspacefactory]::CreateRunspace()
                $local.Open()
                $ps = [powershell]::Create()
                $ps.Runspace = $local
                try {
                    $null = $ps.AddCommand('Import-Module').AddArgument($module).AddStatement()
                    $null = $ps.AddCommand('Invoke-PreCopyMigration').AddParameter('Emulator', $e).AddParameter('Workload', $work).AddParameter('ToSession', $cut).
                        AddParameter('Destination', "$dest/chain").AddParameter('MaxIterations', 3).AddParameter('StopThreshold', 0)
                    [SoftDirtyTest.LinkCutter]::Arm($ps.Streams.Progress, $serverPid, 'Sending round 2 ')
                    $out = @($ps.Invoke())
                    $errors = @($ps.Streams.Error)
                } finally { $ps.Dispose(); $local.Dispose() }
                [SoftDirtyTest.LinkCutter]::Fired | Should -BeTrue -Because 'round 2 started sending'
                @($out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] }).Count | Should -Be 1
                $errors | Should -HaveCount 1
                $errors[0].FullyQualifiedErrorId | Should -BeLike 'LinkBroken,*'
                $errors[0].CategoryInfo.Category | Should -Be 'ConnectionError'
                $errors[0].Exception.Message | Should -Match 'last complete, verified image'
                Test-MemoryImage "$dest/chain/round-01" | Should -BeTrue
                Test-Path "$dest/chain/round-02" | Should -BeFalse -Because 'a half-sent round is never put in place'
                @(Get-ChildItem -LiteralPath "$dest/chain" -Directory).Name | Should -Be 'round-01'
            } finally { $cut | Remove-PSSession -ErrorAction SilentlyContinue }
        }

        It 'a destination session without the module gives ModuleNotOnDestination and writes nothing' {
            $bare = New-TestSession
            try {
                if (Invoke-Command -Session $bare { Get-Command Receive-MemoryImage -ErrorAction Ignore }) {
                    Set-ItResult -Skipped -Because 'SoftDirty is installed in a module path of this machine, so every session can load it'
                    return
                }
                $e = New-EmulatedProcess
                $m = $e | Add-EmulatedMapping -Length 64KB
                $dest = Join-Path $TestDrive "bare-$([guid]::NewGuid().ToString('n'))"
                $out = @($e | Invoke-PreCopyMigration -ToSession $bare -Destination $dest -ErrorAction SilentlyContinue -ErrorVariable err)
                $out | Should -BeNullOrEmpty
                $err | Should -HaveCount 1
                $err[0].FullyQualifiedErrorId | Should -BeLike 'ModuleNotOnDestination,*'
                $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
                "$($err[0])" | Should -Match 'Import-Module SoftDirty'
                Test-Path $dest | Should -BeFalse
            } finally { $bare | Remove-PSSession -ErrorAction SilentlyContinue }
        }
    }
}
