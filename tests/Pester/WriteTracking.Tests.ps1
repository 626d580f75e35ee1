# Enable-WriteTracking / Disable-WriteTracking: WriteProtect of other real processes, registered from
# outside by syscall injection (tests/native/wttarget.c), and memory image chains across commands.
BeforeDiscovery {
    $script:skipReason = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    # Cases whose injecting PowerShell is a child pwsh, a sibling of the target rather than its ancestor.
    $script:siblingSkipReason = if ($IsLinux) { Get-WriteTrackingSkipReason -Relation Sibling } else { 'Linux only' }
}

Describe 'Write tracking of another process' -Tag 'WriteTracking' -Skip:([bool]$script:skipReason) {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $script:exe = Join-Path $PSScriptRoot '../native/bin/wttarget'
        if (-not (Test-Path $exe)) { throw "wttarget is not built: run ./build.ps1 Native ($exe)" }
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
        # The target runs as a grandchild (through sh), or with -Direct as a child of this PowerShell, whose
        # .NET reaps its children's wait statuses (ChildStopGuard keeps their ptrace stops from it).
        function Start-WtTarget([switch] $Direct) {
            $psi = if ($Direct) { [System.Diagnostics.ProcessStartInfo]::new($exe) } else {
                $p = [System.Diagnostics.ProcessStartInfo]::new('/bin/sh')
                $p.ArgumentList.Add('-c'); $p.ArgumentList.Add('exec 3<&0; "$0" <&3 3<&- & wait $!'); $p.ArgumentList.Add($exe)
                $p
            }
            $psi.RedirectStandardInput = $true
            $psi.RedirectStandardOutput = $true
            $proc = [System.Diagnostics.Process]::Start($psi)
            $ready = $proc.StandardOutput.ReadLine()
            if ($ready -notmatch '^READY (\d+) (\d+)$') { throw "wttarget said '$ready'" }
            [pscustomobject]@{ Process = $proc; Id = [int]$Matches[1]; PageSize = [int]$Matches[2] }
        }
        function Send-WtTarget($Target, [string] $Command) {
            $Target.Process.StandardInput.WriteLine($Command)
            $line = $Target.Process.StandardOutput.ReadLine()
            if ($line -notlike 'OK*') { throw "wttarget: '$Command' -> '$line'" }
            $line.Substring(2).Trim()
        }
        function Stop-WtTarget($Target) {
            if (-not $Target) { return }
            if (Test-Path "/proc/$($Target.Id)") { kill -KILL $Target.Id 2>$null }
            $Target.Process.WaitForExit(2000) | Out-Null
        }
        function Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
        function Read-ProcMem([int] $Id, [uint64] $Address, [int] $Length) {
            $fs = [System.IO.File]::OpenRead("/proc/$Id/mem")
            try {
                $null = $fs.Seek([int64]$Address, 'Begin')
                $buffer = [byte[]]::new($Length)
                $got = 0
                while ($got -lt $Length) { $n = $fs.Read($buffer, $got, $Length - $got); if ($n -le 0) { throw 'short read' }; $got += $n }
                , $buffer
            } finally { $fs.Dispose() }
        }
    }
    AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

    It 'enables, says so in Get-SoftDirtySupport -Id, and disables leaving no descriptor or registration behind' {
        $t = Start-WtTarget
        try {
            $before = Get-UffdCount $t.Id
            (Get-SoftDirtySupport -Id $t.Id).WriteProtect | Should -BeTrue
            $state = Enable-WriteTracking -Id $t.Id
            $state.ProcessId | Should -Be $t.Id
            (Get-Item "/proc/$($t.Id)/fd/$($state.Descriptor)").LinkTarget | Should -Be 'anon_inode:[userfaultfd]'
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeTrue
            (Enable-WriteTracking -Id $t.Id).Descriptor | Should -Be $state.Descriptor -Because 'enabling twice changes nothing'
            Send-WtTarget $t 'fds' | Should -Be ([string]((Get-ChildItem "/proc/$($t.Id)/fd").Count)) -Because 'the target reads its commands and sees the descriptor too'
            Disable-WriteTracking -Id $t.Id
            Get-UffdCount $t.Id | Should -Be $before
            (Get-Content "/proc/$($t.Id)/smaps" | Select-String -Pattern '^VmFlags:.* uw\b').Count | Should -Be 0
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeFalse
            { Disable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'WriteTrackingNotEnabled,SoftDirty.Commands.DisableWriteTrackingCommand'
        } finally { Stop-WtTarget $t }
    }

    It '-WhatIf injects nothing' {
        $t = Start-WtTarget
        try {
            Enable-WriteTracking -Id $t.Id -WhatIf
            Get-UffdCount $t.Id | Should -Be 0
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeFalse
        } finally { Stop-WtTarget $t }
    }

    It 'a memory image chain saved with WriteProtect in separate commands restores byte-identical to the stopped target' {
        $t = Start-WtTarget
        $root = Join-Path $TestDrive 'chain'
        try {
            $hex = Send-WtTarget $t 'map 256'
            $address = [Convert]::ToUInt64($hex, 16)
            $null = Send-WtTarget $t "pattern $hex 256 11 200"
            $null = Enable-WriteTracking -Id $t.Id
            $c0 = Save-MemoryImage -Id $t.Id -Path "$root/c0" -Method WriteProtect
            $c0.Kind | Should -Be 'Full'
            $wrote = (Send-WtTarget $t "pattern $hex 256 12 20").Split(',').Count
            $c1 = Save-MemoryImage -Id $t.Id -Path "$root/c1" -Parent "$root/c0" -Method WriteProtect
            $c1.Kind | Should -Be 'Incremental'
            $c1.DataPages | Should -BeGreaterOrEqual $wrote
            $c1.DataPages | Should -BeLessThan 200 -Because 'only the written pages are candidates, not the whole region'
            $null = Send-WtTarget $t "pattern $hex 256 13 30"
            kill -STOP $t.Id
            try {
                $c2 = Save-MemoryImage -Id $t.Id -Path "$root/c2" -Parent "$root/c1"
                $c2.Method | Should -Be 'WriteProtect' -Because 'Auto takes WriteProtect where tracking is enabled'
                $restored = Restore-MemoryImage -Path "$root/c2" -Destination "$root/restored" | Where-Object Start -EQ $address
                $restored | Should -Not -BeNullOrEmpty
                $live = Read-ProcMem $t.Id $address (256 * $t.PageSize)
                $saved = [System.IO.File]::ReadAllBytes($restored.File)
                [System.Linq.Enumerable]::SequenceEqual($saved, $live) | Should -BeTrue
            } finally { kill -CONT $t.Id }
            Disable-WriteTracking -Id $t.Id
            Get-UffdCount $t.Id | Should -Be 0
        } finally { Stop-WtTarget $t }
    }

    It 'tracks a child of this PowerShell exactly (image chain, -Freeze), disables, and the child goes on to its own exit code' {
        $t = Start-WtTarget -Direct
        $root = Join-Path $TestDrive 'child'
        try {
            (Get-SoftDirtySupport -Id $t.Id).WriteProtect | Should -BeTrue
            $hex = Send-WtTarget $t 'map 256'
            $address = [Convert]::ToUInt64($hex, 16)
            $null = Send-WtTarget $t "pattern $hex 256 21 200"
            $null = Enable-WriteTracking -Id $t.Id
            $null = Save-MemoryImage -Id $t.Id -Path "$root/c0" -Method WriteProtect
            $wrote = (Send-WtTarget $t "pattern $hex 256 22 20").Split(',').Count
            $c1 = Save-MemoryImage -Id $t.Id -Path "$root/c1" -Parent "$root/c0" -Method WriteProtect -Freeze
            $c1.Kind | Should -Be 'Incremental'
            $c1.DataPages | Should -BeGreaterOrEqual $wrote
            $c1.DataPages | Should -BeLessThan 200 -Because 'only the written pages are candidates, not the whole region'
            $t.Process.HasExited | Should -BeFalse -Because 'the ptrace stops of the injection and the freeze are not taken for an exit'
            # The target sits in read() between commands: its region is what the chain restores, byte for byte.
            $restored = Restore-MemoryImage -Path "$root/c1" -Destination "$root/restored" | Where-Object Start -EQ $address
            $live = Read-ProcMem $t.Id $address (256 * $t.PageSize)
            [System.Linq.Enumerable]::SequenceEqual([System.IO.File]::ReadAllBytes($restored.File), $live) | Should -BeTrue
            $sum = Send-WtTarget $t 'sum'
            Disable-WriteTracking -Id $t.Id
            Get-UffdCount $t.Id | Should -Be 0
            Send-WtTarget $t 'sum' | Should -Be $sum -Because 'it goes on exactly: memory untouched, every command read whole'
            $null = Send-WtTarget $t 'exit 7'
            $t.Process.WaitForExit(10000) | Should -BeTrue
            $t.Process.ExitCode | Should -Be 7 -Because 'the real exit status still reaches .NET''s Process'
        } finally { Stop-WtTarget $t }
    }

    It 'refuses a process traced already (ProcessAlreadyTraced) and one whose seccomp filter fails userfaultfd (SeccompForbids)' {
        $t = Start-WtTarget
        try {
            $child = [int](Send-WtTarget $t 'traced')
            $deadline = [DateTime]::UtcNow.AddSeconds(10)
            while ((Get-Content "/proc/$child/status" | Select-String '^TracerPid:\s+0$') -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 5 }
            { Enable-WriteTracking -Id $child -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessAlreadyTraced,SoftDirty.Commands.EnableWriteTrackingCommand'
            kill -KILL $child
            $null = Send-WtTarget $t 'seccomp'
            $maps = Get-Content "/proc/$($t.Id)/maps" -Raw
            (Get-SoftDirtySupport -Id $t.Id).SeccompMode | Should -Be 2
            { Enable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'SeccompForbids,SoftDirty.Commands.EnableWriteTrackingCommand'
            Get-UffdCount $t.Id | Should -Be 0
            Get-Content "/proc/$($t.Id)/maps" -Raw | Should -Be $maps -Because 'injection maps nothing in the target'
            Send-WtTarget $t 'fds' | Should -Match '^\d+$'
        } finally { Stop-WtTarget $t }
    }

    It 'Watch-DirtyPage -Method WriteProtect on a process without tracking enables it for the command only' {
        $t = Start-WtTarget
        try {
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.05)
            $samples.Count | Should -Be 2
            $samples[0].Method | Should -Be 'WriteProtect'
            Get-UffdCount $t.Id | Should -Be 0
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeFalse
        } finally { Stop-WtTarget $t }
    }

    # Issue 13, second attack round: each case failed before its fix.
    It 'Disable-WriteTracking leaves alone a userfaultfd the target made itself under the tracked number' {
        $t = Start-WtTarget
        try {
            $hex = Send-WtTarget $t 'map 16'
            $state = Enable-WriteTracking -Id $t.Id
            Send-WtTarget $t "closefd $($state.Descriptor)" | Should -Be '0'
            Send-WtTarget $t "ownuffd $hex 16" | Should -Be ([string]$state.Descriptor) -Because 'the lowest free number is the one the module had'
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeFalse -Because 'the state names the inode of the module''s userfaultfd, not only its number'
            { Disable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'WriteTrackingNotEnabled,SoftDirty.Commands.DisableWriteTrackingCommand'
            Get-UffdCount $t.Id | Should -Be 1 -Because 'the target''s own userfaultfd stays open'
            (Get-Content "/proc/$($t.Id)/smaps" | Select-String -Pattern '^VmFlags:.* uw\b').Count | Should -Be 1 -Because 'its registration stays'
        } finally { Stop-WtTarget $t }
    }

    It 'refuses a state folder that is a link or writable by others (UnsafeDestination), injecting nothing' {
        $t = Start-WtTarget
        $saved = $env:SOFTDIRTY_STATE_DIR
        try {
            $open = Join-Path $TestDrive "open-$([guid]::NewGuid().ToString('N'))"
            $null = New-Item -ItemType Directory $open
            chmod 0777 $open
            $real = Join-Path $TestDrive "real-$([guid]::NewGuid().ToString('N'))"
            $null = New-Item -ItemType Directory $real
            chmod 0700 $real
            $link = "$real.link"
            $null = New-Item -ItemType SymbolicLink -Path $link -Target $real
            foreach ($folder in $open, $link) {
                $env:SOFTDIRTY_STATE_DIR = $folder
                { Enable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'UnsafeDestination,SoftDirty.Commands.EnableWriteTrackingCommand'
                Get-UffdCount $t.Id | Should -Be 0
            }
            @(Get-ChildItem $real -Force).Count | Should -Be 0 -Because 'nothing is written through the link'
        } finally { $env:SOFTDIRTY_STATE_DIR = $saved; Stop-WtTarget $t }
    }

    It 'Enable-WriteTracking removes the state files of processes that are gone' {
        # Issue 13, second round: every target that exited while tracked left its file behind.
        $t = Start-WtTarget
        try {
            $null = New-Item -ItemType Directory $env:SOFTDIRTY_STATE_DIR -Force
            $gone = Join-Path $env:SOFTDIRTY_STATE_DIR "$([int]::MaxValue).json"   # above pid_max: no such process
            Set-Content $gone '{}'
            $null = Enable-WriteTracking -Id $t.Id
            Test-Path $gone | Should -BeFalse
            Test-Path (Join-Path $env:SOFTDIRTY_STATE_DIR "$($t.Id).json") | Should -BeTrue
            Disable-WriteTracking -Id $t.Id
        } finally { Stop-WtTarget $t }
    }

    It 'a FIFO planted as a process''s state file does not hang Enable-WriteTracking; the state is written 0600' {
        $t = Start-WtTarget
        $fifo = Join-Path $env:SOFTDIRTY_STATE_DIR "$($t.Id).json"
        try {
            $null = New-Item -ItemType Directory $env:SOFTDIRTY_STATE_DIR -Force
            mkfifo $fifo
            $job = Start-ThreadJob { param($m, $dir, $id) $env:SOFTDIRTY_STATE_DIR = $dir; Import-Module $m; Enable-WriteTracking -Id $id -ErrorAction Stop } -ArgumentList $env:SOFTDIRTY_MODULE, $env:SOFTDIRTY_STATE_DIR, $t.Id
            $finished = Wait-Job $job -Timeout 120
            if (-not $finished) { & /usr/bin/timeout 5 /bin/sh -c ': > "$0"' $fifo } # releases a reader blocked on the FIFO
            $finished | Should -Not -BeNullOrEmpty -Because 'a state file that is not a regular file is discarded, not opened for reading'
            (Receive-Job $job -ErrorAction Stop).Descriptor | Should -BeGreaterThan 2
            Get-UffdCount $t.Id | Should -Be 1
            [int](Get-Item $fifo).UnixFileMode | Should -Be ([Convert]::ToInt32('600', 8))
            Disable-WriteTracking -Id $t.Id
        } finally { Stop-WtTarget $t; Remove-Item $fifo -Force -ErrorAction SilentlyContinue }
    }

    It 'kill -9 of the PowerShell that injects, at random moments of Enable- and Disable-WriteTracking, leaves the target <Phase> running as it was' -ForEach @(
        @{ Phase = 'waiting in read()'; SkipReason = $siblingSkipReason }, @{ Phase = 'computing in registers'; SkipReason = $siblingSkipReason }
    ) {
        if ($SkipReason) { Set-ItResult -Skipped -Because $SkipReason; return }
        # A child pwsh enables and disables in a loop; it is killed while it traces the target (TracerPid set),
        # after a random number of further polls, so the kills land in every part of an injection: attach, the
        # trampoline, a call, the restore. The target must go on exactly: nothing stopped or traced, the signal
        # mask as it was, its blocked read restarted, registers and flags intact, and either no userfaultfd or one
        # that Get-SoftDirtySupport says is enabled (no descriptor left behind half made or half closed).
        $t = Start-WtTarget
        $child = $null
        try {
            $region = Send-WtTarget $t 'map 32'
            $null = Send-WtTarget $t "write $region 0 32"
            $null = Send-WtTarget $t 'threads 1'
            $sum = Send-WtTarget $t 'sum'
            $statusOf = { Get-Content "/proc/$($t.Id)/task/$($t.Id)/status" }
            $sigBlk = (& $statusOf | Where-Object { $_ -like 'SigBlk:*' })
            $computing = $Phase -like 'computing*'
            if ($computing) { $t.Process.StandardInput.WriteLine('crunch 600000') } # until SIGUSR1
            $pwsh = Get-PwshCommandLine
            $module = (Get-Module SoftDirty).Path
            $loop = "`$ErrorActionPreference = 'Stop'; Import-Module '$module'; [Console]::Out.WriteLine('LOOPING'); [Console]::Out.Flush(); " +
                "while (`$true) { `$null = Enable-WriteTracking -Id $($t.Id) -Confirm:`$false; Disable-WriteTracking -Id $($t.Id) -Confirm:`$false }"
            $random = [Random]::new(20261202)
            $landed = 0
            foreach ($round in 1..8) {
                $psi = [System.Diagnostics.ProcessStartInfo]::new($pwsh[0])
                foreach ($a in @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', $loop)) { $psi.ArgumentList.Add($a) }
                $psi.RedirectStandardOutput = $true
                $psi.RedirectStandardError = $true
                $child = [System.Diagnostics.Process]::Start($psi)
                $errors = $child.StandardError.ReadToEndAsync()
                $child.StandardOutput.ReadLine() | Should -Be 'LOOPING'
                $clock = [System.Diagnostics.Stopwatch]::StartNew()
                $tracer = { [int]((& $statusOf | Where-Object { $_ -like 'TracerPid:*' }) -split '\s+')[1] }
                while ((& $tracer) -eq 0) {
                    if ($child.HasExited -or $clock.Elapsed.TotalSeconds -gt 30) {
                        if (-not $child.HasExited) { $child.Kill(); $child.WaitForExit() } # (its error stream ends only with it)
                        throw "the injecting pwsh never traced the target: $($errors.Result)"
                    }
                }
                foreach ($poll in 1..$random.Next(0, 40)) { $null = & $statusOf }
                if ((& $tracer) -ne 0) { $landed++ }
                $child.Kill()
                $child.WaitForExit()
                $child.Dispose(); $child = $null
                $clock.Restart()
                do {
                    Test-Path "/proc/$($t.Id)/task/$($t.Id)" | Should -BeTrue -Because "round ${round}: the target lives on (a single-step left armed killed it with SIGTRAP)"
                    $stat = Get-Content "/proc/$($t.Id)/task/$($t.Id)/stat" -Raw
                    $state = $stat.Substring($stat.LastIndexOf(')') + 2, 1)
                    $settled = (& $tracer) -eq 0 -and $state -notin 't', 'T'
                } until ($settled -or $clock.Elapsed.TotalSeconds -gt 10)
                $state | Should -BeIn 'S', 'R' -Because "round ${round}: the target neither stopped nor died"
                (& $tracer) | Should -Be 0 -Because "round ${round}: the kernel detached it"
                (& $statusOf | Where-Object { $_ -like 'SigBlk:*' }) | Should -Be $sigBlk -Because "round ${round}: its signal mask is as it was"
                $uffds = Get-UffdCount $t.Id
                $enabled = (Get-SoftDirtySupport -Id $t.Id).Enabled
                $uffds | Should -Be ([int]$enabled) -Because "round ${round}: a userfaultfd only with a recorded tracking, a recorded tracking only with its userfaultfd"
                if ($enabled) { Disable-WriteTracking -Id $t.Id; Get-UffdCount $t.Id | Should -Be 0 }
                (Get-Content "/proc/$($t.Id)/smaps" | Select-String -Pattern '^VmFlags:.* uw\b').Count | Should -Be 0 -Because "round ${round}: no registration outlives its descriptor"
                if (-not $computing) { Send-WtTarget $t 'sum' | Should -Be $sum -Because "round ${round}: the interrupted read was restarted and the memory is as it was" }
            }
            $landed | Should -BeGreaterThan 0 -Because 'some kills landed while the target was traced'
            if ($computing) {
                kill -USR1 $t.Id
                $rounds, $mismatches = ($t.Process.StandardOutput.ReadLine() -replace '^OK ', '') -split ' '
                [int64]$rounds | Should -BeGreaterThan 0
                [int64]$mismatches | Should -Be 0 -Because 'no register or flag of the computing thread changed under it'
                Send-WtTarget $t 'sum' | Should -Be $sum
            }
        } finally {
            if ($child) { try { $child.Kill() } catch { }; $child.Dispose() }
            Stop-WtTarget $t
        }
    }

    It 'a seccomp filter that kills the process on <Label> (as systemd''s SystemCallFilter= does): Enable-WriteTracking says SeccompForbids and the target lives on as it was' -ForEach @(
        @{ Label = 'userfaultfd'; Rule = '323' }
        @{ Label = 'the UFFDIO_REGISTER ioctl'; Rule = "16 $(0xC020AA00)" }
        @{ Label = 'rt_sigprocmask (which the restore routine would issue)'; Rule = '14' }
    ) {
        # The filter is read (root: PTRACE_SECCOMP_GET_FILTER) and run on every call before it is issued; a caller
        # that may not read it (no CAP_SYS_ADMIN) is refused before anything is changed.
        $t = Start-WtTarget
        try {
            $region = Send-WtTarget $t 'map 8'
            $null = Send-WtTarget $t "write $region 0 8"
            $sum = Send-WtTarget $t 'sum'
            $null = Send-WtTarget $t "seccompkill $Rule"
            $sigBlk = Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -like 'SigBlk:*' }
            { Enable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'SeccompForbids,SoftDirty.Commands.EnableWriteTrackingCommand'
            Test-Path "/proc/$($t.Id)" | Should -BeTrue
            Send-WtTarget $t 'sum' | Should -Be $sum -Because 'the target was neither killed nor changed'
            Get-UffdCount $t.Id | Should -Be 0
            Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -like 'SigBlk:*' } | Should -Be $sigBlk
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeFalse
        } finally { Stop-WtTarget $t }
    }

    It 'a seccomp filter that kills on a syscall injection never makes (fork): tracked as root, who can read the filter; refused (SeccompForbids) for a user who cannot' {
        $t = Start-WtTarget
        try {
            $region = Send-WtTarget $t 'map 8'
            $null = Send-WtTarget $t 'seccompkill 57'
            # Reading a filter needs CAP_SYS_ADMIN (measured, not assumed from uid 0: a container's root may lack it).
            $capEff = [Convert]::ToUInt64(((Get-Content /proc/self/status | Where-Object { $_ -like 'CapEff:*' }) -split '\s+')[1], 16)
            $canRead = ($capEff -band (1UL -shl 21)) -ne 0
            if ($canRead) {
                $null = Enable-WriteTracking -Id $t.Id
                Get-UffdCount $t.Id | Should -Be 1
                Disable-WriteTracking -Id $t.Id
            } else {
                { Enable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'SeccompForbids,SoftDirty.Commands.EnableWriteTrackingCommand'
            }
            Get-UffdCount $t.Id | Should -Be 0
            Send-WtTarget $t "write $region 0 8" | Should -Be '8'
        } finally { Stop-WtTarget $t }
    }
}
