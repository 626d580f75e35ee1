<#
.SYNOPSIS
    Drives tests/native/bin/sdtarget, a process whose memory the tests control (see sdtarget.c for the
    line protocol), and the helpers the /proc test files share.
#>
Set-StrictMode -Version 3.0

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

Export-ModuleMember -Function Start-TestTarget, Send-TestTarget, Stop-TestTarget, Get-PwshCommandLine, Get-UnusedProcessId, Get-ProcStatusKb
