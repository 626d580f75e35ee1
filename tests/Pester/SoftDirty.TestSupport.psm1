<#
.SYNOPSIS
    The set-up the Pester files share, in one module: every *.Tests.ps1 starts with
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    which also imports the module under test ($env:SOFTDIRTY_MODULE, set by tests/Invoke-PesterSuite.ps1)
    into the session. It drives the native targets, tests/native/bin/sdtarget (the /proc tests; see
    sdtarget.c for the line protocol) and wftarget (the workflow tests, wftarget.c), and holds the small
    helpers several files use. tests/Demo.ps1 and the benches import it too (with their own -ModulePath).
#>
Set-StrictMode -Version 3.0

if ($env:SOFTDIRTY_MODULE) { Import-Module $env:SOFTDIRTY_MODULE -Global -Force }

$script:Started = [System.Collections.Generic.List[System.Diagnostics.Process]]::new()
$script:ReplyTimeoutMs = 30000

function Get-TestTargetPath {
    $path = if ($env:SOFTDIRTY_TARGET) { $env:SOFTDIRTY_TARGET } else { Join-Path $PSScriptRoot '../native/bin/sdtarget' }
    if (-not (Test-Path -LiteralPath $path)) { throw "The native test target $path is missing: run ./build.ps1 Native." }
    (Resolve-Path -LiteralPath $path).Path
}

function Read-TargetLine([System.Diagnostics.Process] $Process, [string] $Waiting) {
    $task = $Process.StandardOutput.ReadLineAsync()
    if (-not $task.Wait($script:ReplyTimeoutMs)) { throw "sdtarget $($Process.Id) did not answer within $($script:ReplyTimeoutMs) ms ($Waiting)." }
    $line = $task.Result
    if ($null -eq $line) { throw "sdtarget $($Process.Id) closed its output ($Waiting); it has exited." }
    $line
}

<#
.SYNOPSIS
    Starts sdtarget (optionally under a launcher such as setpriv) and waits for its READY line.
.OUTPUTS
    An object with Id, PageSize, Process and the methods Send(command) (the reply after "OK", throws on
    ERR), TrySend(command) (the raw reply), Map(pages[, kind]) (the address as [uint64]) and Page(base, i).
#>
function Start-TestTarget {
    [CmdletBinding()]
    param(
        # A program and its arguments that exec the target, e.g. setpriv --reuid=65534 ...
        [string[]] $Launcher,
        # The sdtarget executable; default $env:SOFTDIRTY_TARGET, else tests/native/bin/sdtarget.
        [string] $Path
    )
    $target = if ($Path) { (Resolve-Path -LiteralPath $Path).Path } else { Get-TestTargetPath }
    $file = $target
    $arguments = @()
    if ($Launcher) { $file = $Launcher[0]; $arguments = @($Launcher | Select-Object -Skip 1) + $target }
    $psi = [System.Diagnostics.ProcessStartInfo]::new($file)
    foreach ($a in $arguments) { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.UseShellExecute = $false
    $process = [System.Diagnostics.Process]::Start($psi)
    $script:Started.Add($process)
    try {
        $ready = (Read-TargetLine $process 'waiting for READY') -split ' '
        if ($ready[0] -ne 'READY' -or [int]$ready[1] -ne $process.Id) { throw "sdtarget said '$($ready -join ' ')' instead of READY $($process.Id)" }
    } catch {
        Stop-TestTarget -Process $process
        throw
    }
    $t = [pscustomobject]@{
        PSTypeName = 'SoftDirty.Tests.TestTarget'
        Id         = $process.Id
        PageSize   = [uint64]$ready[2]
        Process    = $process
    }
    $t | Add-Member -MemberType ScriptMethod -Name TrySend -Value {
        param([string] $Command)
        $this.Process.StandardInput.WriteLine($Command)
        $this.Process.StandardInput.Flush()
        Read-TargetLine $this.Process "after '$Command'"
    }
    $t | Add-Member -MemberType ScriptMethod -Name Send -Value {
        param([string] $Command)
        $reply = $this.TrySend($Command)
        if ($reply -notmatch '^OK( |$)') { throw "sdtarget $($this.Id): '$Command' -> $reply" }
        $reply.Substring(2).Trim()
    }
    $t | Add-Member -MemberType ScriptMethod -Name Map -Value {
        param([int] $Pages, [string] $How = 'anon')
        [Convert]::ToUInt64($this.Send("map $Pages $How"), 16)
    }
    $t | Add-Member -MemberType ScriptMethod -Name Page -Value {
        param([uint64] $Base, [uint64] $Index)
        $Base + $Index * $this.PageSize
    }
    $t
}

<#
.SYNOPSIS
    Sends one command to a test target; returns the reply after "OK" and throws on "ERR ...".
#>
function Send-TestTarget {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)] $Target,
        [Parameter(Mandatory, Position = 1)] [string] $Command
    )
    $Target.Send($Command)
}

<#
.SYNOPSIS
    Stops test targets: asks them to exit, kills what does not, and always kills every process this
    module started when -All is given (their forked children die with them: PR_SET_PDEATHSIG).
#>
function Stop-TestTarget {
    [CmdletBinding()]
    param(
        [Parameter(ValueFromPipeline)] $Target,
        [System.Diagnostics.Process] $Process,
        [switch] $All
    )
    process {
        $list = if ($All) { @($script:Started) } elseif ($Process) { @($Process) } elseif ($Target) { @($Target.Process) } else { @() }
        foreach ($p in $list) {
            if ($null -eq $p) { continue }
            try {
                if (-not $p.HasExited) {
                    try { $p.StandardInput.WriteLine('exit'); $p.StandardInput.Flush() } catch { }
                    if (-not $p.WaitForExit(2000)) { $p.Kill($true); $null = $p.WaitForExit(5000) }
                }
            } catch {
                try { $p.Kill($true) } catch { }
            } finally {
                $null = $script:Started.Remove($p)
                $p.Dispose()
            }
        }
    }
}

<#
.SYNOPSIS
    The command line that starts a pwsh like the one running (pwsh itself, or dotnet + pwsh.dll when
    PowerShell runs as a dotnet tool).
#>
function Get-PwshCommandLine {
    $exe = [Environment]::ProcessPath
    if ([IO.Path]::GetFileNameWithoutExtension($exe) -eq 'pwsh') { return , @($exe) }
    $dll = [Environment]::GetCommandLineArgs()[0]
    if ($dll -notlike '*.dll') { $dll = Join-Path $PSHOME 'pwsh.dll' }
    , @($exe, $dll)
}

<# A pid that no process has now. #>
function Get-UnusedProcessId {
    $max = [int](Get-Content /proc/sys/kernel/pid_max)
    for ($id = $max - 1; $id -gt 300; $id--) { if (-not (Test-Path "/proc/$id")) { return $id } }
    throw 'no free pid found'
}

<# The value in kB of a line of /proc/PID/status, e.g. VmHWM. #>
function Get-ProcStatusKb([int] $Id, [string] $Field) {
    $line = Get-Content "/proc/$Id/status" | Where-Object { $_ -like "${Field}:*" }
    if (-not $line) { throw "/proc/$Id/status has no $Field" }
    [uint64](($line -split '\s+')[1])
}

<#
.SYNOPSIS
    Runs a command in a child pwsh started like this one; returns its output and errors together.
    -ImportModule imports the module under test there first.
#>
function Invoke-ChildPwsh {
    param([Parameter(Mandatory, Position = 0)] [string] $Command, [switch] $ImportModule)
    $pwsh = Get-PwshCommandLine
    if ($ImportModule) { $Command = "Import-Module '$env:SOFTDIRTY_MODULE'; $Command" }
    & $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $Command 2>&1
}

<# A number in hex, as the format views and the targets print addresses. #>
function Hex([uint64] $Value) { '{0:x}' -f $Value }

<# The page indexes (relative to $Base) of pagemap entries. #>
function Get-Index([uint64] $Base, $Entries) {
    $page = [uint64][Environment]::SystemPageSize
    @($Entries | ForEach-Object { [int](($_.Start - $Base) / $page) })
}

# ---------------------------------------------------------------------------------------------------
# The workflow tests' target, wftarget (tests/native/wftarget.c), and a PNG reader.
$script:WfExe = Join-Path $PSScriptRoot '../native/bin/wftarget'

function Start-WfTarget {
    if (-not (Test-Path $script:WfExe)) { throw "wftarget is not built: run ./build.ps1 Native ($script:WfExe)" }
    $psi = [System.Diagnostics.ProcessStartInfo]::new($script:WfExe)
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $p = [System.Diagnostics.Process]::Start($psi)
    $ready = $p.StandardOutput.ReadLine()
    if ($ready -notmatch '^READY (\d+) (\d+)$') { throw "wftarget said '$ready'" }
    [pscustomobject]@{ Process = $p; Id = [int]$Matches[1]; PageSize = [int]$Matches[2] }
}

function Send-WfTarget($Target, [string] $Command) {
    $Target.Process.StandardInput.WriteLine($Command)
    $line = $Target.Process.StandardOutput.ReadLine()
    if ($line -notlike 'OK*') { throw "wftarget: '$Command' -> '$line'" }
    $line.Substring(2).Trim()
}

# Maps and fills a region; returns its address as a number and as hex for the target's commands.
function New-WfRegion($Target, [int] $Pages, [int] $Seed = 1) {
    $hex = Send-WfTarget $Target "map $Pages"
    $null = Send-WfTarget $Target "fill $hex $Pages $Seed"
    [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = $Pages }
}

function Stop-WfTarget($Target) {
    if (-not $Target) { return }
    try { kill -CONT $Target.Id 2>$null } catch { }
    if (-not $Target.Process.HasExited) { $Target.Process.Kill() }
    $Target.Process.WaitForExit(2000) | Out-Null
}

function Get-ProcessState([int] $Id) {
    $stat = Get-Content "/proc/$Id/stat" -Raw
    $stat.Substring($stat.LastIndexOf(')') + 2, 1)
}

# Decodes an 8-bit RGB or RGBA PNG into @{ Width; Height; Pixel(x, y) -> @(r, g, b) }.
function Read-Png([string] $Path) {
    if (-not ('SdPngUnfilter' -as [type])) {
    Add-Type -TypeDefinition @'
public static class SdPngUnfilter {
    public static int BE32(byte[] b, int i) { return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]; }
    public static void Run(byte[] data, byte[] img, int w, int h, int bpp) {
        int stride = w * bpp;
        for (int y = 0; y < h; y++) {
            int f = data[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride;
            for (int i = 0; i < stride; i++) {
                int a = i >= bpp ? img[dst + i - bpp] : 0, b = y > 0 ? img[dst + i - stride] : 0, c = (i >= bpp && y > 0) ? img[dst + i - stride - bpp] : 0;
                int x = data[src + i], v;
                switch (f) {
                    case 0: v = x; break; case 1: v = x + a; break; case 2: v = x + b; break; case 3: v = x + ((a + b) >> 1); break;
                    default: { int p = a + b - c, pa = System.Math.Abs(p - a), pb = System.Math.Abs(p - b), pc = System.Math.Abs(p - c); v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c); break; }
                }
                img[dst + i] = (byte)v;
            }
        }
    }
}
'@ -ErrorAction SilentlyContinue
    }
    $bytes = [IO.File]::ReadAllBytes($Path)
    $pos = 8; $idat = [IO.MemoryStream]::new(); $w = 0; $h = 0; $ct = 0
    while ($pos -lt $bytes.Length) {
        $len = [SdPngUnfilter]::BE32($bytes, $pos)
        $type = [Text.Encoding]::ASCII.GetString($bytes, $pos + 4, 4)
        if ($type -eq 'IHDR') {
            $w = [SdPngUnfilter]::BE32($bytes, $pos + 8)
            $h = [SdPngUnfilter]::BE32($bytes, $pos + 12)
            if ($bytes[$pos + 16] -ne 8) { throw 'only 8-bit PNGs' }
            $ct = $bytes[$pos + 17]
        } elseif ($type -eq 'IDAT') { $idat.Write($bytes, $pos + 8, $len) }
        $pos += 12 + $len
    }
    $bpp = switch ($ct) { 2 { 3 } 6 { 4 } default { throw "PNG colour type $ct" } }
    $idat.Position = 0
    $z = [IO.Compression.ZLibStream]::new($idat, [IO.Compression.CompressionMode]::Decompress)
    $raw = [IO.MemoryStream]::new(); $z.CopyTo($raw); $data = $raw.ToArray()
    $stride = $w * $bpp
    $img = [byte[]]::new($stride * $h)
    [SdPngUnfilter]::Run($data, $img, $w, $h, $bpp)
    $o = [pscustomobject]@{ Width = $w; Height = $h; Bpp = $bpp; Data = $img }
    $o | Add-Member ScriptMethod Pixel { param($x, $y) $i = ($y * $this.Width + $x) * $this.Bpp; @($this.Data[$i], $this.Data[$i + 1], $this.Data[$i + 2]) }
    $o
}

Export-ModuleMember -Function Start-TestTarget, Send-TestTarget, Stop-TestTarget, Get-PwshCommandLine, Get-UnusedProcessId, Get-ProcStatusKb,
    Invoke-ChildPwsh, Hex, Get-Index, Start-WfTarget, Send-WfTarget, New-WfRegion, Stop-WfTarget, Get-ProcessState, Read-Png

# ---------------------------------------------------------------------------------------------------
# Security tests (issue 13): another user who renames every private folder the module makes in $Folder
# (.NAME.partial-*) away and puts a link to $Victim in its place, in a loop. Root only (setpriv, perl).
function Start-PartialFolderSwapper([string] $Folder, [string] $Victim, [string] $ScriptFolder, [int] $Uid = 65534, [int] $Gid = 65534) {
    $script = Join-Path $ScriptFolder "swap-$(New-Guid).pl"
    @'
my ($d, $v) = @ARGV; my $n = 0;
while (1) { opendir(my $h, $d) or next; for my $e (readdir $h) { next unless $e =~ /^\..*\.partial-/; next if -l "$d/$e";
  rename("$d/$e", "$d/moved-" . $n++) and symlink($v, "$d/$e"); } closedir $h; }
'@ | Set-Content $script
    chmod 0644 $script
    Start-Process setpriv -ArgumentList "--reuid=$Uid", "--regid=$Gid", '--clear-groups', 'perl', $script, $Folder, $Victim -PassThru
}

# An emulated process "victim" with one mapping of $Pages written pages: @{ Emulator; Mapping }.
function New-FilledEmulator([int] $Pages = 16) {
    $e = New-EmulatedProcess -Name victim
    $m = $e | Add-EmulatedMapping -Length ($Pages * 4KB)
    $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
    @{ Emulator = $e; Mapping = $m }
}

# The FullyQualifiedErrorId of the first error $Command raises (terminating or not, whatever the caller's
# $ErrorActionPreference), or 'none'.
function Get-ErrorId([scriptblock] $Command) {
    try {
        & $Command 2>&1 | ForEach-Object { if ($_ -is [System.Management.Automation.ErrorRecord]) { throw $_ } }
    } catch { return $_.FullyQualifiedErrorId }
    'none'
}
Export-ModuleMember -Function Start-PartialFolderSwapper, New-FilledEmulator, Get-ErrorId

# ---------------------------------------------------------------------------------------------------
# The memory-image attack tests' target, imgtarget (tests/native/imgtarget.c; issue 13, rounds 5 and 6).
$script:ImgExe = Join-Path $PSScriptRoot '../native/bin/imgtarget'
# The read(2) syscall's number, which the target sleeps in while it waits for a command.
$script:ReadSyscall = if ([Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -eq 'Arm64') { '63' } else { '0' }

# -Through: a command that runs imgtarget without a fork of its own and keeps its pid namespace (unshare -n: a network
# namespace of its own, so the packets a test sends are the only ones there).
function Start-ImgTarget([string[]] $Through = @()) {
    if (-not (Test-Path $script:ImgExe)) { throw "imgtarget is not built: run ./build.ps1 Native ($script:ImgExe)" }
    $psi = [System.Diagnostics.ProcessStartInfo]::new($(if ($Through.Count) { $Through[0] } else { $script:ImgExe }))
    if ($Through.Count) { foreach ($a in @($Through | Select-Object -Skip 1) + $script:ImgExe) { $psi.ArgumentList.Add($a) } }
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $p = [System.Diagnostics.Process]::Start($psi)
    if ($p.StandardOutput.ReadLine() -notmatch '^READY (\d+) (\d+)$') { throw 'imgtarget did not start' }
    [pscustomobject]@{ Process = $p; Id = [int]$Matches[1] }
}

# Sends a command and returns what follows OK; waits until the target sleeps in read(2) for its next command:
# after its answer it still runs its stdio code, and returns from write(2) (where the kernel may update its rseq
# area), so a save taken at once could see memory that a save a moment later does not.
function Send-ImgTarget($Target, [string] $Command) {
    $Target.Process.StandardInput.WriteLine($Command)
    $line = $Target.Process.StandardOutput.ReadLine()
    if ($line -notlike 'OK*') { throw "imgtarget: '$Command' -> '$line'" }
    Wait-ImgTargetIdle $Target
    $line.Substring(2).Trim()
}

function Wait-ImgTargetIdle($Target) {
    $deadline = [DateTime]::UtcNow.AddSeconds(10)
    while ([DateTime]::UtcNow -lt $deadline) {
        $call = try { [IO.File]::ReadAllText("/proc/$($Target.Id)/syscall") } catch { return }
        if (($call -split ' ')[0] -eq $script:ReadSyscall) { return }
        Start-Sleep -Milliseconds 1
    }
}

function Stop-ImgTarget($Target) { if ($Target -and -not $Target.Process.HasExited) { $Target.Process.Kill(); $Target.Process.WaitForExit(5000) | Out-Null } }

# Sends a command the target may refuse (a kernel feature that may be missing): its answer line, OK ... or ERR ....
function Send-ImgTargetProbe($Target, [string] $Command) {
    $Target.Process.StandardInput.WriteLine($Command)
    $line = $Target.Process.StandardOutput.ReadLine()
    Wait-ImgTargetIdle $Target
    $line
}
Export-ModuleMember -Function Start-ImgTarget, Send-ImgTarget, Wait-ImgTargetIdle, Stop-ImgTarget, Send-ImgTargetProbe

<#
.SYNOPSIS
    Why write tracking of another process (syscall injection) cannot be tried here, or $null where it can.
    -Relation says how the tracing PowerShell is related to the target: Descendant (the target is its child or
    grandchild) or Sibling (another process of the test starts the commands, e.g. a child pwsh): under Yama's
    ptrace_scope 1 an unprivileged user may trace descendants only.
#>
# Why ptrace of a child of this PowerShell (-Freeze, injection) cannot run here (Yama's ptrace_scope), or $null.
function Get-PtraceSkipReason {
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    if ($yama -ge 3 -or ($yama -eq 2 -and (id -u) -ne '0')) { "Yama's ptrace_scope $yama forbids ptrace of a child here" }
}

function Get-WriteTrackingSkipReason {
    param([ValidateSet('Descendant', 'Sibling')] [string] $Relation = 'Descendant')
    if (-not $IsLinux) { return 'Linux only' }
    $k = Get-SoftDirtySupport
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $root = (id -u) -eq '0'
    @(
        if (-not $k.PagemapScan) { "no PAGEMAP_SCAN: $($k.PagemapScanReason)" }
        if (-not $k.UffdWriteProtectAsync) { "no userfaultfd WP_ASYNC: $($k.UffdWriteProtectAsyncReason)" }
        if ([System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -ne 'X64') { 'syscall injection is implemented for x86-64 only' }
        if ($yama -ge 3 -or ($yama -eq 2 -and -not $root)) { "Yama's ptrace_scope $yama forbids ptrace of a child here" }
        if ($Relation -eq 'Sibling' -and $yama -eq 1 -and -not $root) { "Yama's ptrace_scope 1 lets a user trace only descendants, and these commands run in a sibling of the target" }
    ) | Select-Object -First 1
}

<#
.SYNOPSIS
    Starts a pwsh like this one running -Command with the module under test imported, its standard output and
    error redirected; returns the Process. Read its error stream with ReadToEndAsync() at once (it ends only
    with the process); kill it with .Kill() and .WaitForExit().
#>
function Start-ChildPwsh {
    param([Parameter(Mandatory, Position = 0)] [string] $Command, [switch] $NoModule)
    $pwsh = Get-PwshCommandLine
    if (-not $NoModule) { $Command = "Import-Module '$env:SOFTDIRTY_MODULE'; $Command" }
    $psi = [System.Diagnostics.ProcessStartInfo]::new($pwsh[0])
    foreach ($a in @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', $Command)) { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $psi.RedirectStandardInput = $true
    [System.Diagnostics.Process]::Start($psi)
}
Export-ModuleMember -Function Get-PtraceSkipReason, Get-WriteTrackingSkipReason, Start-ChildPwsh

# ---------------------------------------------------------------------------------------------------
# Image restores compared (issue 13's image rounds): each restore goes to a new folder under -Root.

# The restored files of an image (chain) as "file=hash" lines.
function Get-RestoredHash([string] $Image, [string] $Root) {
    $out = Join-Path $Root "d-$([guid]::NewGuid().ToString('n'))"
    $null = Restore-MemoryImage -Path $Image -Destination $out
    foreach ($f in Get-ChildItem -LiteralPath $out -Filter *.bin | Sort-Object Name) { '{0}={1}' -f $f.Name, (Get-FileHash -LiteralPath $f.FullName).Hash }
}

# What differs between the restores of two images (chains), named by side: empty when they restore the same bytes.
function Compare-RestoredImage([string] $Chain, [string] $Full, [string] $Root) {
    $a = @(Get-RestoredHash $Chain $Root); $b = @(Get-RestoredHash $Full $Root)
    if ($a.Count -eq 0 -or $b.Count -eq 0) { throw "a restore of $Chain or $Full made no files" }
    @(Compare-Object $a $b | ForEach-Object { "$(if ($_.SideIndicator -eq '<=') { 'chain' } else { 'full' }): $($_.InputObject)" })
    if ($a.Count -ne $b.Count) { "chain $($a.Count) files, full $($b.Count)" }
}
Export-ModuleMember -Function Get-RestoredHash, Compare-RestoredImage

# ---------------------------------------------------------------------------------------------------
# Round 18 (posix_spawn and thread churn under -Freeze and migrations).

# The threads of process $Id (none once it is gone; threads that exit while they are listed are left out).
function Get-TaskDirectory([int] $Id) {
    try { [IO.Directory]::GetDirectories("/proc/$Id/task") } catch [IO.IOException] { } catch [UnauthorizedAccessException] { }
}

# The child processes of every thread of process $Id (a child of a thread that exits goes to another thread of it).
function Get-ChildProcessId([int] $Id) {
    foreach ($task in Get-TaskDirectory $Id) {
        $text = try { [IO.File]::ReadAllText("$task/children") } catch [IO.IOException] { '' } catch [UnauthorizedAccessException] { '' }
        $text -split ' ' | Where-Object { $_ -match '^\d+$' } | ForEach-Object { [int]$_ }
    }
}

# The non-zero TracerPid of each thread of process $Id and of each of its child processes (none once all are untraced).
function Get-ThreadTracer([int] $Id) {
    foreach ($p in @($Id) + @(Get-ChildProcessId $Id)) {
        foreach ($task in Get-TaskDirectory $p) {
            $status = try { [IO.File]::ReadAllLines("$task/status") } catch [IO.IOException] { @() } catch [UnauthorizedAccessException] { @() }
            $line = $status | Where-Object { $_ -like 'TracerPid:*' }
            if ($line -and [int]($line -replace '\D', '') -ne 0) { "thread $(Split-Path -Leaf $task) of $p is traced by $($line -replace '\D', '')" }
        }
    }
}

# The first 8 bytes of each page of $Region (New-WfRegion) as the restore of $Image into a new folder under $Root holds
# them (the region may have merged with a neighbouring mapping: the restored file holding it is read at its offset).
function Get-RestoredRegionWords([string] $Image, $Region, [int] $PageSize, [string] $Root) {
    $out = Join-Path $Root "w-$([guid]::NewGuid().ToString('n'))"
    $null = Restore-MemoryImage -Path $Image -Destination $out
    foreach ($f in Get-ChildItem -LiteralPath $out -Filter *.bin) {
        $start, $end = $f.BaseName -split '-' | ForEach-Object { [Convert]::ToUInt64($_, 16) }
        if ($start -le $Region.Address -and $end -ge $Region.Address + [uint64]$Region.Pages * $PageSize) {
            $bytes = [IO.File]::ReadAllBytes($f.FullName)
            $offset = [int]($Region.Address - $start)
            return @(for ($p = 0; $p -lt $Region.Pages; $p++) { [BitConverter]::ToUInt64($bytes, $offset + $p * $PageSize) })
        }
    }
    throw "the restore of $Image has no mapping holding 0x$($Region.Hex)"
}
# The first 8 bytes of each page of $Region as process $Id holds them now, read through /proc/PID/mem (an independent
# reading to compare Get-RestoredRegionWords with: needs the right to ptrace the process, as a save does).
function Get-LiveRegionWords([int] $Id, $Region, [int] $PageSize) {
    $word = [byte[]]::new(8)
    $mem = [IO.File]::Open("/proc/$Id/mem", 'Open', 'Read', 'ReadWrite')
    try {
        foreach ($p in 0..($Region.Pages - 1)) {
            $mem.Position = [int64]($Region.Address + [uint64]$p * $PageSize)
            if ($mem.Read($word, 0, 8) -ne 8) { throw "short read of /proc/$Id/mem at page $p of 0x$($Region.Hex)" }
            [BitConverter]::ToUInt64($word, 0)
        }
    } finally { $mem.Dispose() }
}
Export-ModuleMember -Function Get-TaskDirectory, Get-ChildProcessId, Get-ThreadTracer, Get-RestoredRegionWords, Get-LiveRegionWords

# ---------------------------------------------------------------------------------------------------
# Round 19 (kernel writes a tracker misses).

<#
.SYNOPSIS
    Why an io_uring with a registered buffer cannot be made here, or $null where it can: measured in a real target
    (tests/native/bin/wttarget uringreg), since kernel.io_uring_disabled, RLIMIT_MEMLOCK and a container's seccomp all refuse it.
#>
function Get-UringBufferSkipReason {
    $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/wttarget')
    try {
        $a = $probe.Send('map 4')
        $reply = $probe.TrySend("uringreg $a 0 4")
        if ($reply -notmatch '^OK') { "io_uring with a registered buffer is not available here ($reply)" }
    } finally { Stop-TestTarget $probe }
}
Export-ModuleMember -Function Get-UringBufferSkipReason

<#
.SYNOPSIS
    Starts tests/native/bin/fusehold mounting its FUSE file system (one file, f, read with direct I/O) on $MountPoint.
.OUTPUTS
    An object with Ready ($true once it mounted), Reply (its first line), Process, and the methods Send(command) (its answer
    line) and Read() (the next line it prints: "READ <offset> <size>" for each read it holds). Stop it with Stop-FuseHold.
#>
function Start-FuseHold([Parameter(Mandatory)] [string] $MountPoint) {
    $psi = [System.Diagnostics.ProcessStartInfo]::new((Join-Path $PSScriptRoot '../native/bin/fusehold'))
    $psi.ArgumentList.Add($MountPoint)
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.UseShellExecute = $false
    $process = [System.Diagnostics.Process]::Start($psi)
    $fuse = [pscustomobject]@{ Process = $process; MountPoint = $MountPoint; Reply = $null; Ready = $false }
    $fuse | Add-Member -MemberType ScriptMethod -Name Read -Value { Read-TargetLine $this.Process 'fusehold' }
    $fuse | Add-Member -MemberType ScriptMethod -Name Send -Value { param([string] $Command) $this.Process.StandardInput.WriteLine($Command); $this.Read() }
    $fuse.Reply = try { $fuse.Read() } catch { $_.Exception.Message }
    $fuse.Ready = $fuse.Reply -eq 'READY'
    $fuse
}

# Ends fusehold: end of input unmounts (lazily) and exits; answers its held reads first, so no reader waits for good.
function Stop-FuseHold($Fuse) {
    if (-not $Fuse -or $Fuse.Process.HasExited) { return }
    try { $null = $Fuse.Send('go') } catch { }
    $Fuse.Process.StandardInput.Close()
    if (-not $Fuse.Process.WaitForExit(5000)) { $Fuse.Process.Kill(); $Fuse.Process.WaitForExit(5000) | Out-Null }
    if ($Fuse.Ready) { umount -l $Fuse.MountPoint 2>$null }
}
<#
.SYNOPSIS
    Why fusehold cannot hold reads here (Start-FuseHold); nothing where it can. Measured: it mounts once and says READY.
    Mounting needs root here (it speaks to /dev/fuse itself, without fusermount).
#>
function Get-FuseHoldSkipReason {
    if (-not $IsLinux) { return 'Linux only' }
    if ((id -u) -ne '0') { return 'mounting the FUSE file system whose reads the test holds needs root here' }
    if (-not (Test-Path /dev/fuse)) { return 'no /dev/fuse (CONFIG_FUSE_FS)' }
    $mnt = Join-Path ([IO.Path]::GetTempPath()) "sdfuse-$([guid]::NewGuid().ToString('n'))"
    $null = New-Item -ItemType Directory $mnt
    $fuse = Start-FuseHold $mnt
    try { if (-not $fuse.Ready) { "fusehold cannot mount a FUSE file system here ($($fuse.Reply))" } }
    finally { Stop-FuseHold $fuse; Remove-Item -LiteralPath $mnt -ErrorAction SilentlyContinue }
}
Export-ModuleMember -Function Start-FuseHold, Stop-FuseHold, Get-FuseHoldSkipReason

# ---------------------------------------------------------------------------------------------------
# Rounds 24 and 25 (the kernel VM's scenarios of tests/scenarios/vm against their recorded prints in tests/vm/recorded).

# The emulator on kernel $Id's profile (soft-dirty and THP settings from $FactLines: "# " lines of a recorded file, or
# matrix.sh's facts) against the prints $Prints of $ScenarioPath's scenarios; a ScenarioDifferentialResult. Needs the TestKit.
function Compare-KernelScenarioPrints([string] $Id, [string] $ScenarioPath, [string] $Name, [string] $Prints, [string[]] $FactLines) {
    $scenarios = [SoftDirty.TestKit.Scenarios.Scenario]::Parse([IO.File]::ReadAllText($ScenarioPath))
    $kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Load((Join-Path $PSScriptRoot '../vm/kernels.list')) | Where-Object Id -EQ $Id
    $kp = $kernel.GetProfile(($FactLines -contains 'soft_dirty 1' -or $FactLines -contains 'config_soft_dirty 1'), $FactLines)
    [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Compare([SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::FromOutput($Name, $Prints), $kp, $scenarios)
}

# The recorded prints file $Path (folded, "# " fact lines) of $ScenarioPath compared with the emulator: the result.
function Compare-RecordedKernelPrints([string] $Id, [string] $ScenarioPath, [string] $Path) {
    $lines = Get-Content $Path
    Compare-KernelScenarioPrints $Id $ScenarioPath (Split-Path -Leaf $Path) ([SoftDirty.TestKit.Scenarios.ScenarioPrintRuns]::Expand([IO.File]::ReadAllText($Path))) @($lines -match '^# ' -replace '^# ', '')
}

# Boots kernel $Id (tests/vm/matrix.sh) on $ScenarioPath with the SOFTDIRTY_MATRIX_* settings of $Settings (name without the
# prefix = value), into tests/results/kernel-matrix/$Id.<scenario>.prints; returns that path (its facts beside it). Throws when
# the guest did not run to its end.
function Invoke-KernelMatrixBoot([string] $Id, [string] $ScenarioPath, [hashtable] $Settings) {
    $dir = Join-Path $PSScriptRoot '../results/kernel-matrix'
    $null = New-Item -ItemType Directory $dir -Force
    $output = Join-Path $dir "$Id.$([IO.Path]::GetFileNameWithoutExtension($ScenarioPath)).prints"
    foreach ($k in $Settings.Keys) { Set-Item "Env:SOFTDIRTY_MATRIX_$k" $Settings[$k] }
    try { bash (Join-Path $PSScriptRoot '../vm/matrix.sh') $Id $ScenarioPath $output | Write-Host; if ($LASTEXITCODE -ne 0) { throw "matrix.sh $Id exited $LASTEXITCODE" } }
    finally { foreach ($k in $Settings.Keys) { Remove-Item "Env:SOFTDIRTY_MATRIX_$k" -ErrorAction SilentlyContinue } }
    $output
}
Export-ModuleMember -Function Compare-KernelScenarioPrints, Compare-RecordedKernelPrints, Invoke-KernelMatrixBoot

<#
.SYNOPSIS
    Why a test that runs a child under strace cannot run here; nothing where it can. $Use says what strace does in the test.
    Measured: strace must be able to trace a child (not where ptrace is forbidden, as in some containers).
#>
function Get-StraceSkipReason([string] $Use = 'the failed call is injected with strace') {
    if (-not $IsLinux) { return 'Linux only' }
    if (-not (Get-Command strace -CommandType Application -ErrorAction Ignore)) { return "strace is not installed: $Use" }
    $said = strace -f -qq -o /dev/null -e trace=openat true 2>&1
    if ($LASTEXITCODE -ne 0) { "strace cannot trace here: $said" }
}

Export-ModuleMember -Function Get-StraceSkipReason

<#
.SYNOPSIS
    Runs $Script in a child PowerShell (the module at $Module imported, errors stopping, plain-text output) under strace -f
    with $Strace (its -P, trace and inject options), to fail chosen calls of the module. The child has two helpers: Id { ... }
    prints the ErrorId of a command's error, or 'none'; Said { ... } prints "said=ok" or "said=ERRORID|message" on one line.
    Returns Out (the child's output lines), Log (strace's lines; -y: descriptors with their paths), Said (the first "said="
    line, less that prefix), All (Out as one text) and Injected (how many calls strace failed).
#>
function Invoke-StraceChild([Parameter(Mandatory)] [string] $Module, [Parameter(Mandatory)] [string] $Script, [string[]] $Strace = @('-e', 'trace=none')) {
    $log = Join-Path ([IO.Path]::GetTempPath()) "sd-strace-$([guid]::NewGuid().ToString('n')).log"
    $pwsh = Get-PwshCommandLine # one path, or dotnet and pwsh.dll (an array either way)
    $run = @(@('strace', '-f', '-qq', '-y', '-o', $log, '--seccomp-bpf') + $Strace + $pwsh)
    # Plain text: an error's colours would put control characters in a failure's message, which the XML report cannot hold.
    $prelude = "`$ErrorActionPreference = 'Stop'; `$PSStyle.OutputRendering = 'PlainText'; Import-Module '$Module'; " +
        'function Id([scriptblock] $C) { try { $null = & $C; "none" } catch { $_.FullyQualifiedErrorId -replace '',.*'' } }; ' +
        'function Said([scriptblock] $C) { try { $null = & $C; "said=ok" } catch { "said=$($_.FullyQualifiedErrorId -replace '',.*'')|$($_.Exception.Message -replace ''\r?\n'', '' '')" } }; '
    try {
        $out = @(& $run[0] @($run | Select-Object -Skip 1) -NoProfile -NonInteractive -Command ($prelude + $Script) 2>&1 | ForEach-Object { "$_" })
        $trace = @(Get-Content -LiteralPath $log -ErrorAction Ignore)
    }
    finally { Remove-Item -LiteralPath $log -ErrorAction Ignore }
    @{
        Out = $out
        Log = $trace
        Said = ($out | Where-Object { $_ -like 'said=*' } | Select-Object -First 1) -replace '^said='
        All = $out -join "`n"
        Injected = @($trace | Where-Object { $_ -match 'INJECTED' }).Count
    }
}

Export-ModuleMember -Function Invoke-StraceChild

# ---------------------------------------------------------------------------------------------------
# process_vm_writev(2) from this PowerShell, as another process (a debugger) writes a target: the kernel writes the
# target's pages through its own mapping of them. [SoftDirtyTests.ProcessVmWrite]::Write(pid, address, bytes) returns the
# bytes written and throws with the errno. (Rounds 9 and 33.)
if ($IsLinux -and -not ('SoftDirtyTests.ProcessVmWrite' -as [type])) {
    Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
namespace SoftDirtyTests {
    public static class ProcessVmWrite {
        [StructLayout(LayoutKind.Sequential)] private struct IoVec { public IntPtr Base; public UIntPtr Length; }
        [DllImport("libc", SetLastError = true)] private static extern IntPtr process_vm_writev(int pid, IoVec[] local, ulong liovcnt, IoVec[] remote, ulong riovcnt, ulong flags);
        public static long Write(int pid, ulong address, byte[] data) {
            var h = GCHandle.Alloc(data, GCHandleType.Pinned);
            try {
                var l = new[] { new IoVec { Base = h.AddrOfPinnedObject(), Length = (UIntPtr)data.Length } };
                var r = new[] { new IoVec { Base = (IntPtr)(long)address, Length = (UIntPtr)data.Length } };
                long n = (long)process_vm_writev(pid, l, 1, r, 1, 0);
                if (n < 0) throw new InvalidOperationException("process_vm_writev: errno " + Marshal.GetLastWin32Error());
                return n;
            } finally { h.Free(); }
        }
    }
}
'@
}
