#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, second attack round (new cases only; the first round's are in Workflows.Security.Tests.ps1):
# every cmdlet walked with hostile values, hard links planted in destinations, folders of another user above a
# destination, links swapped in while a save or restore runs, and targets that exit or exec while write
# tracking is injected. Huge counts in image files: tests/SoftDirty.Engine.Tests/Images/ImageAttackTests.cs.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $IsRoot = (id -u) -eq '0'
    $HasSetpriv = [bool](Get-Command setpriv -CommandType Application -ErrorAction SilentlyContinue)
    $HasPerl = [bool](Get-Command perl -CommandType Application -ErrorAction SilentlyContinue)
    # Injection as WriteTracking.Tests.ps1 needs it: PAGEMAP_SCAN, WP_ASYNC, x86-64, ptrace of a grandchild.
    $support = Get-SoftDirtySupport
    $WtSkip = if (-not ($support.PagemapScan -and $support.UffdWriteProtectAsync)) { "this kernel lacks PAGEMAP_SCAN or userfaultfd WP_ASYNC: $($support.UffdWriteProtectAsyncReason) $($support.PagemapScanReason)" }
        elseif ([System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -ne 'X64') { 'syscall injection is implemented for x86-64 only' }
        elseif ((Test-Path /proc/sys/kernel/yama/ptrace_scope) -and [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) -ge 2) { 'Yama forbids ptrace of a descendant here' }
        elseif (-not $HasPerl) { 'perl (the exiting and exec-ing target) is not installed' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    $script:HasSetpriv = [bool](Get-Command setpriv -CommandType Application -ErrorAction SilentlyContinue)
    # Under the test drive, a folder of the caller's own (0755): the module refuses folders others may write to.
    $script:root = Join-Path $TestDrive 'r2'
    $null = New-Item -ItemType Directory $root
    chmod 0755 $TestDrive $root
    function New-Emu([int] $Pages = 16) {
        $e = New-EmulatedProcess -Name victim
        $m = $e | Add-EmulatedMapping -Length ($Pages * 4KB)
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        @{ Emulator = $e; Mapping = $m }
    }
    function ErrorId([scriptblock] $Command) {
        $err = $null
        try { $null = & $Command -ErrorVariable err -ErrorAction SilentlyContinue } catch { return $_.FullyQualifiedErrorId }
        if ($err) { $err[0].FullyQualifiedErrorId } else { 'none' }
    }
    # A file standing for someone else's: another user's where root can make one, else the caller's own.
    function New-Victim([string] $Name) {
        $f = Join-Path $root $Name
        'precious' | Set-Content $f
        if ($IsRoot) { chown 65534 $f }
        $f
    }
    function Get-Fingerprint([string] $Path) { $i = Get-Item -Force $Path; '{0}|{1}|{2}|{3}' -f (Get-FileHash $Path).Hash, $i.UnixFileMode, $i.Length, $i.LastWriteTimeUtc.Ticks }
    $script:src = New-Emu
    $script:img = "$root/img"
    $null = Save-MemoryImage -Emulator $src.Emulator -Path $img -Confirm:$false
    $script:bin = '{0:x12}-{1:x12}.bin' -f $src.Mapping.Start, $src.Mapping.End
}

Describe 'Hard links planted where the module writes' -Tag 'Workflows', 'Security' {
    It '<Name> named like the output is refused or replaced, never written through' -ForEach @(
        @{ Name = 'Save-MemoryImage -Path, a hard link'; Id = 'ImageExists'; Run = { param($p) Save-MemoryImage -Emulator $src.Emulator -Path $p -Confirm:$false } }
        @{ Name = 'Restore-MemoryImage -Destination, a hard link'; Id = 'ImageExists'; Run = { param($p) Restore-MemoryImage $img $p } }
        @{ Name = 'Invoke-PreCopyMigration -Destination, a hard link'; Id = 'ImageExists'; Run = { param($p) Invoke-PreCopyMigration -Emulator (New-Emu).Emulator -Bandwidth 1GB -MaxIterations 2 -Destination $p -Confirm:$false } }
    ) {
        $victim = New-Victim "victim-$(New-Guid)"
        $before = Get-Fingerprint $victim
        $link = Join-Path $root "out-$(New-Guid)"
        $null = New-Item -ItemType HardLink -Path $link -Target $victim
        ErrorId { & $Run $link } | Should -BeLike "$Id,*"
        Get-Fingerprint $victim | Should -Be $before
        (Get-Item $link).Length | Should -Be (Get-Item $victim).Length
    }

    It 'hard links planted inside a destination directory (<Names>) make it ImageExists; the linked files keep their bytes' -ForEach @(
        @{ Names = 'mappings.json, START-END.bin'; Which = 'Restore' }
        @{ Names = 'manifest.json, pages.bin, index.bin'; Which = 'Save' }
        @{ Names = 'round-01'; Which = 'PreCopy' }
    ) {
        $d = New-Item -ItemType Directory (Join-Path $root "planted-$(New-Guid)")
        $names = switch ($Which) { 'Restore' { 'mappings.json', $bin } 'Save' { 'manifest.json', 'pages.bin', 'index.bin' } 'PreCopy' { 'round-01' } }
        $victims = foreach ($n in $names) { $v = New-Victim "v-$(New-Guid)"; $null = New-Item -ItemType HardLink -Path (Join-Path $d $n) -Target $v; $v }
        $before = $victims | ForEach-Object { Get-Fingerprint $_ }
        $id = switch ($Which) {
            'Restore' { ErrorId { Restore-MemoryImage $img $d } }
            'Save' { ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path $d -Confirm:$false } }
            'PreCopy' { ErrorId { Invoke-PreCopyMigration -Emulator (New-Emu).Emulator -Bandwidth 1GB -MaxIterations 2 -Destination $d -Confirm:$false } }
        }
        $id | Should -BeLike 'ImageExists,*'
        $victims | ForEach-Object { Get-Fingerprint $_ } | Should -Be $before
    }

    It 'Export-DirtyPageChart onto a hard link or a symbolic link to a file replaces the name and leaves the file alone' {
        $samples = Watch-DirtyPage -Emulator (New-Emu).Emulator -Count 2 -Interval 0.01 -Workload @{ Address = $src.Mapping.Start; Length = 4KB }
        foreach ($kind in 'HardLink', 'SymbolicLink') {
            $victim = New-Victim "chart-victim-$kind"
            $before = Get-Fingerprint $victim
            $path = Join-Path $root "chart-$kind.svg"
            $null = New-Item -ItemType $kind -Path $path -Target $victim
            $null = $samples | Export-DirtyPageChart -Path $path -WarningAction SilentlyContinue
            Get-Fingerprint $victim | Should -Be $before -Because $kind
            (Get-Item -Force $path).LinkType | Should -BeNullOrEmpty -Because "the chart is a new file, not the $kind"
            Get-Content $path -Raw | Should -BeLike '<svg*'
        }
    }
}

Describe 'Folders of another user above a destination' -Tag 'Workflows', 'Security' {
    # Only root can give a folder away (chown); as another user the case cannot be built.
    It 'Save, Restore and Invoke-PreCopyMigration refuse a destination below a folder of another user (UnsafeDestination), creating nothing' -Skip:(-not $IsRoot) {
        # Before the fix only the folder's mode was checked: its owner could swap the private folder for a link
        # (see the next test) and have root write the image or the restored memory into any directory.
        $foreign = New-Item -ItemType Directory (Join-Path $root "foreign-$(New-Guid)"); chmod 0755 $foreign; chown 65534 $foreign
        $mine = New-Item -ItemType Directory (Join-Path $foreign 'mine'); chmod 0755 $mine   # root's, inside the foreign one
        foreach ($dest in "$foreign/out", "$mine/out", "$foreign/new/deeper/out") {
            ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path $dest -Confirm:$false } | Should -Be 'UnsafeDestination,SoftDirty.Commands.SaveMemoryImageCommand' -Because $dest
            ErrorId { Restore-MemoryImage $img $dest } | Should -Be 'UnsafeDestination,SoftDirty.Commands.RestoreMemoryImageCommand' -Because $dest
            ErrorId { Invoke-PreCopyMigration -Emulator (New-Emu).Emulator -Bandwidth 1GB -MaxIterations 2 -Destination $dest -Confirm:$false } | Should -Be 'UnsafeDestination,SoftDirty.Commands.InvokePreCopyMigrationCommand' -Because $dest
        }
        @(Get-ChildItem -Force -Recurse $foreign).FullName | Should -Be @($mine.FullName)
    }

    It 'the owner of the folder, swapping the private folder for a link in a loop, gets nothing written into the linked directory' -Skip:(-not ($IsRoot -and $HasSetpriv -and $HasPerl)) {
        $foreign = New-Item -ItemType Directory (Join-Path $root "swapped-$(New-Guid)"); chmod 0755 $foreign; chown 65534 $foreign
        $victim = New-Item -ItemType Directory (Join-Path $root "victim-dir-$(New-Guid)"); chmod 0755 $victim
        # As user 65534: every .NAME.partial-* folder root makes is renamed away and replaced by a link to the victim.
        $swapper = Start-PartialFolderSwapper $foreign $victim $root
        try {
            $ids = for ($i = 0; $i -lt 10; $i++) {
                ErrorId { Restore-MemoryImage $img "$foreign/out$i" }
                ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path "$foreign/img$i" -Confirm:$false }
            }
        } finally { Stop-Process -Id $swapper.Id -ErrorAction SilentlyContinue }
        @(Get-ChildItem -Force $victim).Name | Should -BeNullOrEmpty
        $ids | ForEach-Object { ($_ -split ',')[0] } | Sort-Object -Unique | Should -Be 'UnsafeDestination'
    }
}

Describe 'A link swapped in while a save or restore runs' -Tag 'Workflows', 'Security' {
    # The swapper must be another user (root runs it as 65534 with setpriv): the caller's own processes may rename
    # what the caller makes, so as an unprivileged user the case cannot be built.
    It 'a loop that keeps replacing the destination with a link to another directory: each attempt succeeds into a real directory or fails cleanly, and the linked directory stays empty' -Skip:(-not ($IsRoot -and $HasSetpriv -and $HasPerl)) {
        $victim = New-Item -ItemType Directory (Join-Path $root "swap-victim-$(New-Guid)")
        $keep = New-Victim "swap-keep-$(New-Guid)"; $null = New-Item -ItemType SymbolicLink -Path "$victim/mappings.json" -Target $keep
        $keepBefore = Get-Fingerprint $keep
        $arena = New-Item -ItemType Directory (Join-Path $root "arena-$(New-Guid)")
        chmod 1777 $arena   # a /tmp-like folder where the swapper, another user, may create links
        $script = Join-Path $root "flip-$(New-Guid).pl"
        # Replaces out* (absent or empty) and every partial folder name it sees with a link to the victim, and back.
        @'
my ($d, $v) = @ARGV;
while (1) { for my $i (0..9) { for my $n ("out$i", "img$i") { my $p = "$d/$n"; if (-l $p) { unlink $p } else { rmdir $p; symlink($v, $p) } } }
  opendir(my $h, $d) or next; for my $e (readdir $h) { next unless $e =~ /\.partial-/; next if -l "$d/$e"; rename("$d/$e", "$d/x$e") and symlink($v, "$d/$e") } closedir $h; }
'@ | Set-Content $script
        chmod 0644 $script
        $swapper = Start-Process setpriv -ArgumentList '--reuid=65534', '--regid=65534', '--clear-groups', 'perl', $script, $arena, $victim -PassThru
        $outcomes = @()
        try {
            for ($i = 0; $i -lt 10; $i++) {
                $outcomes += ErrorId { Restore-MemoryImage $img "$arena/out$i" }
                $outcomes += ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path "$arena/img$i" -Confirm:$false }
            }
        } finally { Stop-Process -Id $swapper.Id -ErrorAction SilentlyContinue; $null = $swapper.WaitForExit(5000) }
        @(Get-ChildItem -Force $victim).Name | Should -Be 'mappings.json'
        Get-Fingerprint $keep | Should -Be $keepBefore
        $outcomes | ForEach-Object { ($_ -split ',')[0] } | Should -BeIn 'none', 'UnsafeDestination', 'ImageExists', 'ImageWriteError', 'PermissionDenied'
        # What succeeded is a real directory of the caller with the whole result.
        foreach ($d in Get-ChildItem -Force $arena -Directory | Where-Object { $_.LinkType -eq $null -and $_.Name -match '^(out|img)\d$' -and (Get-ChildItem $_).Count }) {
            if ($d.Name -like 'img*') { Test-MemoryImage $d.FullName | Should -BeTrue } else { Test-Path "$d/mappings.json" | Should -BeTrue }
        }
    }
}

Describe 'Every cmdlet, every parameter, hostile values' -Tag 'Workflows', 'Security' {
    It 'answers with SoftDirty or parameter-binding error ids only, and every call ends or stops when asked' {
        $module = Get-Module SoftDirty
        $engineErrors = [Enum]::GetNames([SoftDirty.EngineError])
        $binding = '^(ParameterArgumentValidationError\w*|ParameterArgumentTransformationError\w*|CannotConvertArgument\w*|ParameterBindingFailed|NamedParameterNotFound|AmbiguousParameterSet|MissingArgument|MissingMandatoryParameter\w*|PositionalParameterNotFound|ParameterAlreadyBound|InputObjectNotBound|InputObjectMissingMandatory)$'
        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters + 'PipedEmulator', 'PipedObject'
        $work = Join-Path $root 'walk'; $null = New-Item -ItemType Directory $work
        $huge = [string[]]::new(10000); for ($i = 0; $i -lt $huge.Length; $i++) { $huge[$i] = "m$i" }
        $long = 'x' * 100000
        # Hostile values by parameter type (Nullable<T> as T); $null for every parameter.
        $values = @{
            'Int32' = -1, 0, [int]::MaxValue, [int]::MinValue
            'Int64' = -1L, 0L, [long]::MaxValue, [long]::MinValue
            'UInt64' = [uint64]0, [uint64]::MaxValue, ([uint64]::MaxValue - 4095), [uint64]4095
            'Double' = [double]::NaN, [double]::PositiveInfinity, [double]::NegativeInfinity, -1.0, 0.0, 1e308, 5e-324
            'String' = '', ' ', "`t", $long, "a`0b", '../../../../etc/passwd', '*', '[', '/dev/null', '/proc/self/mem'
            'String[]' = @([string[]]@($null), [string[]]@(), [string[]]@('*'), [string[]]@('', '['), $huge)
            'Int32[]' = @([int[]]@(-1), [int[]]@(0), [int[]]@([int]::MaxValue), [int[]]@(), [object[]]@($null))
            'TimeSpan' = [TimeSpan]::Zero, [TimeSpan]::FromSeconds(-1), [TimeSpan]::MaxValue, [TimeSpan]::MinValue
            'Object' = @{}, 'x', 42
            'EmulatedWorkloadSpec' = @{}, @{ Address = [uint64]::MaxValue; Length = [uint64]::MaxValue }, @{ AccessesPerSecond = [double]::NaN }, @{ Nope = 1 }, 'x'
            'EmulatedProcess' = 'x', 42
        }
        $enumValues = 999, -1, 'NoSuchValue'
        $setup = {
            param($ModulePath, $Work, $Image)
            Import-Module $ModulePath
            Set-Location $Work   # relative hostile paths (' ', '*') land in the walk's folder
            $script:n = 0
            $script:image = $Image
            $script:work = $Work
            $e0 = New-EmulatedProcess -Name samples; $m0 = $e0 | Add-EmulatedMapping -Length 64KB
            $script:samples = Watch-DirtyPage -Emulator $e0 -Count 2 -Interval 0.01 -Workload @{ Address = $m0.Start; Length = 8KB }
            $script:pid0 = [int](Get-Content /proc/sys/kernel/pid_max) - 1
            while (Test-Path "/proc/$pid0") { $script:pid0-- }
            function Get-FirstEnumValue([string] $Cmdlet, [string] $Name) { [Enum]::GetValues((Get-Command $Cmdlet).Parameters[$Name].ParameterType)[0] }
            function New-Base([string] $Cmdlet) {
                $script:n++
                $e = New-EmulatedProcess -Name walk; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 8KB
                $fresh = Join-Path $work "p$n"
                $a = @{ Address = $m.Start; Length = [uint64]8KB; Emulator = $e }
                switch ($Cmdlet) {
                    'Add-EmulatedMapping' { @{ Emulator = $e; Length = [uint64]4KB } }
                    'Clear-PageReference' { @{ Emulator = $e; Type = Get-FirstEnumValue $Cmdlet 'Type' } }
                    { $_ -in 'Clear-SoftDirty', 'Copy-EmulatedProcess', 'Get-MemoryMapping', 'Get-PageMap', 'Get-SoftDirtySupport', 'Search-PageMap' } { @{ Emulator = $e } }
                    { $_ -in 'Disable-WriteTracking', 'Enable-WriteTracking' } { @{ Id = $pid0 } }
                    'Export-DirtyPageChart' { @{ InputObject = $samples; Path = "$fresh.svg" } }
                    { $_ -in 'Get-MemoryImage', 'Test-MemoryImage' } { @{ Path = $image } }
                    'Invoke-EmulatedMadvise' { $a + @{ Advice = Get-FirstEnumValue $Cmdlet 'Advice' } }
                    'Invoke-EmulatedWorkload' { $a + @{ Count = 10L } }
                    'Invoke-PreCopyMigration' { @{ Emulator = $e; Bandwidth = 1e9; MaxIterations = 2; Destination = $fresh } }
                    'Move-EmulatedMapping' { $a + @{ NewAddress = $m.End + 1MB } }
                    'New-EmulatedProcess' { @{} }
                    { $_ -in 'Read-EmulatedMemory', 'Register-EmulatedWriteProtect', 'Remove-EmulatedMapping', 'Write-EmulatedMemory' } { $a }
                    'Restore-MemoryImage' { @{ Path = $image; Destination = $fresh } }
                    'Save-MemoryImage' { @{ Emulator = $e; Path = $fresh } }
                    'Set-EmulatedProtection' { $a + @{ Protection = Get-FirstEnumValue $Cmdlet 'Protection' } }
                    'Watch-DirtyPage' { @{ Emulator = $e; Count = 1; Interval = 0.01 } }
                    default { @{ Emulator = $e } }
                }
            }
        }
        $call = {
            param($Cmdlet, $Name, $Value, $Confirm)
            $b = New-Base $Cmdlet
            if ($Name -eq 'Id') { $b.Remove('Emulator') }
            $b[$Name] = $Value
            if ($Confirm) { $b['Confirm'] = $false }
            $err = $null
            try { $null = & $Cmdlet @b -ErrorAction SilentlyContinue -ErrorVariable err -WarningAction SilentlyContinue } catch { $err = @($_) }
            @($err | ForEach-Object { if ($_ -is [System.Management.Automation.ErrorRecord]) { $_.FullyQualifiedErrorId } else { "$($_.GetType().FullName): $_" } })
        }
        function New-WalkRunspace {
            $rs = [runspacefactory]::CreateRunspace(); $rs.Open()
            $ps = [powershell]::Create($rs)
            $null = $ps.AddScript($setup).AddArgument($module.Path).AddArgument($work).AddArgument($img).Invoke()
            if ($ps.HadErrors) { throw "walk set-up failed: $($ps.Streams.Error | Out-String)" }
            $ps.Dispose()
            $rs
        }
        $rs = New-WalkRunspace
        $bad = [Collections.Generic.List[string]]::new()
        $calls = 0; $stopped = 0
        try {
            foreach ($cmd in Get-Command -Module SoftDirty -CommandType Cmdlet) {
                $confirm = $cmd.Parameters.ContainsKey('Confirm')
                foreach ($p in $cmd.Parameters.Values) {
                    if ($p.Name -in $common -or $p.SwitchParameter) { continue }
                    $t = [Nullable]::GetUnderlyingType($p.ParameterType) ?? $p.ParameterType
                    $key = if ($t.IsArray) { "$($t.GetElementType().Name)[]" } else { $t.Name }
                    $list = @($null) + @(if ($t.IsEnum) { $enumValues } elseif ($values.ContainsKey($key)) { $values[$key] } else { 'x', 42 })
                    foreach ($v in $list) {
                        $calls++
                        $ps = [powershell]::Create($rs)
                        $null = $ps.AddScript($call).AddArgument($cmd.Name).AddArgument($p.Name).AddArgument($v).AddArgument($confirm)
                        $what = ("$($cmd.Name) -$($p.Name) $(if ($null -eq $v) { '$null' } elseif ($v -is [string] -and $v.Length -gt 20) { "'$($v.Substring(0, 20))'... ($($v.Length) chars)" } elseif ($v -is [array]) { "@($($v.Count) items)" } else { "'$v'" })") -replace "`0", '\0'   # a NUL would break the XML report
                        $h = $ps.BeginInvoke()
                        if (-not $h.AsyncWaitHandle.WaitOne(3000)) {
                            # Still running after 3 s: legitimate for a long -Count or -Duration, if it stops when asked (Ctrl+C).
                            $stop = $ps.BeginStop($null, $null)
                            if (-not $stop.AsyncWaitHandle.WaitOne(15000)) { $bad.Add("$what -> does not stop when asked (a hang)"); $rs = New-WalkRunspace; continue }
                            $stopped++
                            $ps.Dispose(); continue
                        }
                        try { $ids = $ps.EndInvoke($h) } catch { $ids = @("$($_.Exception.GetType().FullName): $($_.Exception.Message)") }
                        foreach ($id in @($ids) + @($ps.Streams.Error | ForEach-Object FullyQualifiedErrorId)) {
                            $first = ("$id" -split ',')[0]
                            if ($first -notin $engineErrors -and $first -notmatch $binding) { $bad.Add("$what -> $id") }
                        }
                        $ps.Dispose()
                    }
                }
            }
        } finally { $rs.Dispose() }
        Write-Host "    parameter walk: $calls calls over $(@(Get-Command -Module SoftDirty -CommandType Cmdlet).Count) cmdlets, $stopped stopped when asked after 3 s"
        $calls | Should -BeGreaterThan 500
        $bad | Should -BeNullOrEmpty
    }
}

Describe 'A target that exits or execs while write tracking is injected' -Tag 'WriteTracking', 'Security' -Skip:([bool]$WtSkip) {
    BeforeAll {
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'wtstate'
        $script:target = Join-Path $root 'target.pl'
        # Sleeps the delay given, then exits or becomes /bin/sleep (exec: same pid and start time, a new memory).
        'select(undef, undef, undef, $ARGV[0]); if ($ARGV[1] eq "exec") { exec "/bin/sleep", "3" } exit 0;' | Set-Content $target
    }
    AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

    It 'a target that <Mode>s at a moment in the middle: Enable, Save -Method WriteProtect and Disable each answer with a SoftDirty error id or succeed, never hang, and leave what lives on running' -ForEach @(
        @{ Mode = 'exit' }
        @{ Mode = 'exec' }
    ) {
        $engineErrors = @([Enum]::GetNames([SoftDirty.EngineError])) + 'none'
        $outcomes = for ($i = 0; $i -lt 10; $i++) {
            $delay = 0.01 * $i
            # A grandchild (through sh): the usual case, a process that is not this one's child (direct children are
            # covered by Security.Round4 and Workflows.Watch).
            $id = [int](sh -c 'perl "$0" "$1" "$2" >/dev/null 2>&1 & echo $!' $target $delay $Mode)
            $job = Start-ThreadJob {
                param($ModulePath, $Id, $Dir)
                Import-Module $ModulePath
                $ErrorActionPreference = 'Stop'   # every error reaches the catch below
                foreach ($c in { Enable-WriteTracking -Id $Id }, { Save-MemoryImage -Id $Id -Path "$Dir/img-$Id" -Method WriteProtect }, { Disable-WriteTracking -Id $Id }) {
                    $err = $null
                    try { $null = & $c -ErrorVariable err -ErrorAction SilentlyContinue } catch { $err = @($_) }
                    if ($err) { ($err[0].FullyQualifiedErrorId -split ',')[0] } else { 'none' }
                }
            } -ArgumentList (Get-Module SoftDirty).Path, $id, $root
            $done = Wait-Job $job -Timeout 60
            $done | Should -Not -BeNullOrEmpty -Because "the commands on a target that ${Mode}s after $delay s must return"
            Receive-Job $job -ErrorAction SilentlyContinue   # the ids it returns; the job's own error stream repeats them
            Remove-Job $job -Force
            if (Test-Path "/proc/$id") {
                Get-ProcessState $id | Should -Not -BeIn 't', 'T' -Because "what runs after the $Mode is not left stopped by the injector"
                kill -KILL $id 2>$null
            }
        }
        Write-Host "    target that ${Mode}s: $(($outcomes | Group-Object | ForEach-Object { "$($_.Name) x$($_.Count)" }) -join ', ')"
        @($outcomes).Count | Should -Be 30
        $outcomes | Sort-Object -Unique | Should -BeIn $engineErrors
    }
    It 'Enable-WriteTracking and Disable-WriteTracking leave the target''s signal mask as it was' {
        # Before the fix every signal but SIGKILL, SIGSTOP and SIGTRAP stayed blocked after Enable-WriteTracking:
        # the target no longer answered SIGTERM, SIGINT or SIGCHLD (each single-step unblocks SIGTRAP, and that
        # mask was taken for the one to restore).
        $id = [int](sh -c 'perl -e "sleep 1 while 1" >/dev/null 2>&1 & echo $!')
        try {
            Start-Sleep -Milliseconds 300
            $mask = { (Get-Content "/proc/$id/status" | Where-Object { $_ -like 'SigBlk:*' }) -replace '\s+', ' ' }
            $before = & $mask
            $null = Enable-WriteTracking -Id $id
            & $mask | Should -Be $before
            Disable-WriteTracking -Id $id
            & $mask | Should -Be $before
        } finally { kill -KILL $id 2>$null }
    }

    It 'an increment saved with WriteProtect after the target exec''d restores what a full save of that moment restores, or is refused' {
        $exec = Join-Path $root 'exec.pl'
        # 4 MiB of 'a'; on SIGUSR1 it becomes a new perl with 4 MiB of 'b' and touches the marker file.
        @'
my $m = $ARGV[0]; my $buf = "a" x (4 << 20);
$SIG{USR1} = sub { exec "perl", "-e", 'my $b = "b" x (4 << 20); open(my $f, ">", $ARGV[0]); close $f; sleep 1 while 1', $m };
sleep 1 while 1;
'@ | Set-Content $exec
        $marker = Join-Path $root "exec-$(New-Guid).done"
        $id = [int](sh -c 'perl "$0" "$1" >/dev/null 2>&1 & echo $!' $exec $marker)
        try {
            Start-Sleep -Milliseconds 300
            Enable-WriteTracking -Id $id
            $chain = Join-Path $root "exec-chain-$(New-Guid)"
            $null = Save-MemoryImage -Id $id -Path "$chain/0" -Method WriteProtect -WarningAction SilentlyContinue
            kill -USR1 $id
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            while (-not (Test-Path $marker) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            Test-Path $marker | Should -BeTrue -Because 'the target exec''d'
            $id1 = ErrorId { Save-MemoryImage -Id $id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect -WarningAction SilentlyContinue }
            $null = Save-MemoryImage -Id $id -Path "$chain/full" -Method Hash -WarningAction SilentlyContinue
            Write-Host "    increment after exec: $id1"
            if ($id1 -eq 'none') {
                $null = Restore-MemoryImage "$chain/1" "$chain/r1"
                $null = Restore-MemoryImage "$chain/full" "$chain/rf"
                $sums = { param($d) Get-ChildItem $d -Filter *.bin | Sort-Object Name | ForEach-Object { "$($_.Name)=$((Get-FileHash $_).Hash)" } }
                & $sums "$chain/r1" | Should -Be (& $sums "$chain/rf")
            } else { ($id1 -split ',')[0] | Should -BeIn ([Enum]::GetNames([SoftDirty.EngineError])) }
        } finally { kill -KILL $id 2>$null }
    }
}
