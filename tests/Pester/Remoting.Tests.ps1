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
}
