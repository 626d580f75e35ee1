#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, sixteenth attack round: the module racing itself and files changing under it (time of check to time of
# use). New cases only (rounds 2-15: Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1, WriteTracking.Tests.ps1,
# and the engine's EpochRound12Tests for the epoch folders).

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $RootSkip = if (-not $IsRoot) { 'needs root: a process and files of another user (65534)' }
    elseif (-not (Get-Command setpriv -ErrorAction SilentlyContinue)) { 'needs setpriv (util-linux) to act as another user' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r16race')
    $script:Internal = [Reflection.BindingFlags] 'Static, Public, NonPublic'
    $script:Engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
    $script:Epoch = $Engine.GetType('SoftDirty.Tracking.TrackingEpoch', $true)
    # Runs a command as user 65534 (nobody), failing the test where it fails.
    function script:Invoke-AsNobody([string] $File, [string[]] $Arguments) {
        & setpriv --reuid=65534 --regid=65534 --clear-groups $File @Arguments
        if ($LASTEXITCODE -ne 0) { throw "setpriv $File $Arguments failed ($LASTEXITCODE)" }
    }
}

Describe 'A hard link the owner of a process planted as its soft-dirty lock file, taken by root (round 16)' -Tag 'Security', 'Round16Race' -Skip:([bool]$RootSkip) {
    BeforeAll {
        # The epoch folders (TrackingEpoch.SharedTempFolder and RuntimeRoot, internal) pointed at folders of this test:
        # the machine's own, which other commands use, are left alone.
        $script:saved = foreach ($p in 'SharedTempFolder', 'RuntimeRoot') { $Epoch.GetProperty($p, $Internal).GetValue($null) }
        $script:folders = Join-Path $root "epochs-$(New-Guid)"
        foreach ($d in 'tmp', 'run') { $null = New-Item -ItemType Directory (Join-Path $folders $d) }
        chmod -R 0755 $folders
        $Epoch.GetProperty('SharedTempFolder', $Internal).SetValue($null, (Join-Path $folders tmp))
        $Epoch.GetProperty('RuntimeRoot', $Internal).SetValue($null, (Join-Path $folders run))
        $script:sleeper = Start-Process setpriv -ArgumentList '--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '600' -PassThru
        $deadline = [DateTime]::UtcNow.AddMinutes(1) # hang guard only
        while ((Get-Content "/proc/$($sleeper.Id)/comm" -ErrorAction SilentlyContinue) -ne 'sleep' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
        $script:source = $Engine.GetType('SoftDirty.ProcPageSource', $true).GetMethod('Open', [type[]]@([int])).Invoke($null, [object[]]@($sleeper.Id))
    }
    AfterAll {
        if ($source) { $source.Dispose() }
        if ($sleeper -and -not $sleeper.HasExited) { $sleeper.Kill(); $sleeper.WaitForExit() }
        $Epoch.GetProperty('SharedTempFolder', $Internal).SetValue($null, $saved[0])
        $Epoch.GetProperty('RuntimeRoot', $Internal).SetValue($null, $saved[1])
    }

    It 'a root file every user may write (0666), linked by the user as IDENTITY.lock: root''s lock leaves its mode and bytes alone' {
        # fs.protected_hardlinks 1 lets a user link a file they may read and write; with 0, any file of root's. Before the
        # fix root's lock (LockFile.Take: "made under the umask", so fchmod 0600 of a file of its own) made the linked file
        # 0600: every other user of it lost it (with protected_hardlinks 0, /etc/passwd too). Seen: mode 0600 after the lock.
        $identity = $Epoch.GetMethod('Identity', $Internal).Invoke($null, [object[]]@($source))
        $identity | Should -Not -BeNullOrEmpty
        $users = Join-Path $folders 'tmp/softdirty-epochs-65534'
        $null = New-Item -ItemType Directory $users
        chown 65534 $users; chmod 0700 $users
        $victim = Join-Path $folders 'shared'
        'shared by every user' | Set-Content -NoNewline $victim
        chmod 0666 $victim
        Invoke-AsNobody ln $victim, (Join-Path $users "$($identity.Replace('/', '-')).lock")
        $held = $Epoch.GetMethod('Lock', $Internal).Invoke($null, [object[]]@($source, [Threading.CancellationToken]::None))
        $held | Should -Not -BeNullOrEmpty
        $held.Dispose()
        (stat -c '%a %u' $victim) | Should -Be '666 0'
        Get-Content -Raw $victim | Should -Be 'shared by every user'
    }
}
