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
        $record = $Epoch.GetMethod('FileKey', $Internal).Invoke($null, [object[]]@($sleeper.Id))
        $record | Should -Not -BeNullOrEmpty
        $users = Join-Path $folders 'tmp/softdirty-epochs-65534'
        $null = New-Item -ItemType Directory $users
        chown 65534 $users; chmod 0700 $users
        $victim = Join-Path $folders 'shared'
        'shared by every user' | Set-Content -NoNewline $victim
        chmod 0666 $victim
        Invoke-AsNobody ln $victim, (Join-Path $users "$record.lock")
        $held = $Epoch.GetMethod('Lock', $Internal).Invoke($null, [object[]]@($source, [Threading.CancellationToken]::None))
        $held | Should -Not -BeNullOrEmpty
        $held.Dispose()
        (stat -c '%a %u' $victim) | Should -Be '666 0'
        Get-Content -Raw $victim | Should -Be 'shared by every user'
    }
}

Describe 'A destination changed between the module''s last check and its use (round 16)' -Tag 'Security', 'Round16Race' {
    BeforeAll {
        # InjectionSteps (internal): a recorder whose OnStep runs at each named step of a command on this thread; here
        # it changes the destination at that moment, as another process racing the command would.
        $script:Steps = $Engine.GetType('SoftDirty.Injection.InjectionSteps', $true)
        $script:CommitStep = $Engine.GetType('SoftDirty.Images.PrivateOutput', $true).GetField('CommitStep', $Internal).GetValue($null)
        $script:MigrationStep = $Engine.GetType('SoftDirty.Workflows.PreCopyMigration', $true).GetField('DestinationCheckedStep', $Internal).GetValue($null)
        # Runs $Command with $Change run once at step $Step; the FullyQualifiedErrorId's first part, or 'none'.
        function script:Invoke-AtStep([string] $Step, [scriptblock] $Change, [scriptblock] $Command) {
            $done = [ref] $false
            $recorder = [Activator]::CreateInstance($Steps)
            $Steps.GetProperty('OnStep').SetValue($recorder, [Action[string]] { param($s) if ($s -eq $Step -and -not $done.Value) { $done.Value = $true; & $Change } }.GetNewClosure())
            $Steps.GetProperty('Current', $Internal).SetValue($null, $recorder)
            try { (Get-ErrorId $Command).Split(',')[0] }
            finally { $Steps.GetProperty('Current', $Internal).SetValue($null, $null) }
            if (-not $done.Value) { throw "step '$Step' was never reached" }
        }
        $script:v = New-FilledEmulator -Pages 8
    }

    It 'Save-MemoryImage into <Was>, which became <Became> just before the rename: <Id>, nothing written there or through it, no partial folder' -ForEach @(
        @{ Was = 'an empty folder'; Became = 'a link to a folder'; Id = 'UnsafeDestination' }
        @{ Was = 'an empty folder'; Became = 'a file'; Id = 'ImageExists' }
        @{ Was = 'an empty folder'; Became = 'a folder holding a file'; Id = 'ImageExists' }
        @{ Was = 'an absent name'; Became = 'a link to a folder'; Id = 'UnsafeDestination' }
        @{ Was = 'an absent name'; Became = 'a folder of user 65534'; Id = 'UnsafeDestination' }
    ) {
        # The rename that puts the private folder in place is the same for saves, receives and restores (PrivateOutput.Commit;
        # a restore runs it on a worker thread, where this step hook is not). Before the fix an empty folder swapped for a
        # link or a file reached the user as ImageWriteError ("Moving the finished ... failed: errno 20: Not a directory"),
        # a failed write (seen in about 1 of 100 restores against a process swapping the name in a loop; here every time),
        # and a link or another user's folder put where nothing was as ImageExists ("another save or restore into the same
        # place?"), where the check a moment earlier says UnsafeDestination.
        if ($Became -like '*user 65534' -and (id -u) -ne '0') { Set-ItResult -Skipped -Because 'needs root to make a folder of another user'; return }
        $folder = Join-Path $root "commit-$(New-Guid)"
        $null = New-Item -ItemType Directory $folder
        $dest = Join-Path $folder 'dest'
        if ($Was -eq 'an empty folder') { $null = New-Item -ItemType Directory $dest }
        $elsewhere = Join-Path $root "elsewhere-$(New-Guid)"
        $null = New-Item -ItemType Directory $elsewhere
        $change = switch -Wildcard ($Became) {
            'a link*' { { Remove-Item -LiteralPath $dest -ErrorAction Ignore; $null = New-Item -ItemType SymbolicLink -Path $dest -Target $elsewhere }.GetNewClosure() }
            'a file' { { Remove-Item -LiteralPath $dest; 'planted' | Set-Content -NoNewline $dest }.GetNewClosure() }
            'a folder holding*' { { 'planted' | Set-Content -NoNewline (Join-Path $dest 'x') }.GetNewClosure() }
            '*user 65534' { { $null = New-Item -ItemType Directory $dest; chown 65534 $dest }.GetNewClosure() }
        }
        $emulator = $v.Emulator # a local: a closure sees no script variable
        Invoke-AtStep $CommitStep $change { Save-MemoryImage -Emulator $emulator -Path $dest }.GetNewClosure() | Should -Be $Id
        @(Get-ChildItem -Force -Name $elsewhere) | Should -BeNullOrEmpty
        @(Get-ChildItem -Force -Name $folder) | Should -Be @('dest')
        if ($Became -eq 'a file') { Get-Content -Raw -LiteralPath $dest | Should -Be 'planted' }
        elseif ($Became -notlike 'a link*') { @(Get-ChildItem -Force -Name -LiteralPath $dest) | Where-Object { $_ -ne 'x' } | Should -BeNullOrEmpty }
    }

    It 'Invoke-PreCopyMigration whose absent -Destination another migration created (empty) meanwhile: the migration writes its rounds there' {
        # Before the fix the mkdir's EEXIST was UnsafeDestination ("something was created there meanwhile"), though an
        # empty folder of the caller's is a destination the check accepts: seen with two migrations into one new folder
        # from two runspaces, and here at that step every time.
        $dest = Join-Path $root "mig-$(New-Guid)"
        $e = (New-FilledEmulator -Pages 16).Emulator
        Invoke-AtStep $MigrationStep { $null = New-Item -ItemType Directory $dest }.GetNewClosure() {
            Invoke-PreCopyMigration -Emulator $e -Bandwidth 1GB -MaxIterations 2 -Destination $dest
        }.GetNewClosure() | Should -Be 'none'
        $rounds = @(Get-ChildItem -Directory $dest)
        $rounds.Count | Should -BeGreaterThan 0
        Test-MemoryImage ($rounds | Sort-Object Name | Select-Object -Last 1).FullName | Should -BeTrue
    }

    It 'Invoke-PreCopyMigration whose absent -Destination became <Became> meanwhile: <Id>, and nothing is written' -ForEach @(
        @{ Became = 'a link to a folder'; Id = 'UnsafeDestination' }
        @{ Became = 'a folder holding a file'; Id = 'ImageExists' }
    ) {
        $dest = Join-Path $root "mig-$(New-Guid)"
        $elsewhere = Join-Path $root "elsewhere-$(New-Guid)"
        $null = New-Item -ItemType Directory $elsewhere
        $e = (New-FilledEmulator -Pages 16).Emulator
        $change = if ($Became -like 'a link*') { { $null = New-Item -ItemType SymbolicLink -Path $dest -Target $elsewhere }.GetNewClosure() }
                  else { { $null = New-Item -ItemType Directory $dest; 'x' | Set-Content (Join-Path $dest 'x') }.GetNewClosure() }
        Invoke-AtStep $MigrationStep $change { Invoke-PreCopyMigration -Emulator $e -Bandwidth 1GB -MaxIterations 2 -Destination $dest }.GetNewClosure() | Should -Be $Id
        @(Get-ChildItem -Force -Name $elsewhere) | Should -BeNullOrEmpty
    }
}

Describe 'The folder above a destination moved away and replaced by a link while the module writes (round 16)' -Tag 'Security', 'Round16Race' {
    BeforeAll {
        $script:Steps = $Engine.GetType('SoftDirty.Injection.InjectionSteps', $true)
        $script:CommitStep = $Engine.GetType('SoftDirty.Images.PrivateOutput', $true).GetField('CommitStep', $Internal).GetValue($null)
    }
    AfterEach { $Steps.GetProperty('Current', $Internal).SetValue($null, $null) }

    It 'Save-MemoryImage whose folder became a link to <Holds>: UnsafeDestination naming where the image is; never the object of what the link shows' -ForEach @(
        @{ Holds = 'a folder holding another image of that name' }
        @{ Holds = 'an empty folder' }
    ) {
        # The private folder is renamed into place relative to the folder's descriptor, so the image lands in the moved
        # folder (work.old/img), never through the link; but the save then described -Path, which the link made name
        # something else. Before the fix, with another image behind the link the save SUCCEEDED and returned that image
        # (its Id, pid and 3 pages; the 8 pages written were in work.old/img), and with an empty folder it said
        # ImageIncomplete ("no such image directory") of a save that had written a whole image.
        $base = Join-Path $root "moved-$(New-Guid)"
        $work, $old, $elsewhere = "$base/work", "$base/work.old", "$base/elsewhere"
        $null = New-Item -ItemType Directory $work, $elsewhere
        $other = $null
        if ($Holds -like '*another image*') {
            $o = New-FilledEmulator -Pages 3
            $other = (Save-MemoryImage -Emulator $o.Emulator -Path "$elsewhere/img").Id
        }
        $v = New-FilledEmulator -Pages 8
        $recorder = [Activator]::CreateInstance($Steps)
        $moved = [ref] $false
        $step = $CommitStep # a local: a closure sees no script variable
        $Steps.GetProperty('OnStep').SetValue($recorder, [Action[string]] {
            param($s)
            if ($s -eq $step -and -not $moved.Value) { $moved.Value = $true; Rename-Item $work $old; $null = New-Item -ItemType SymbolicLink -Path $work -Target $elsewhere }
        }.GetNewClosure())
        $Steps.GetProperty('Current', $Internal).SetValue($null, $recorder)
        $saved = $null
        $err = try { $saved = Save-MemoryImage -Emulator $v.Emulator -Path "$work/img" -ErrorAction Stop; 'none' } catch { $_ }
        $Steps.GetProperty('Current', $Internal).SetValue($null, $null)
        $moved.Value | Should -BeTrue
        $saved | Should -BeNullOrEmpty
        "$err" | Should -BeLike "*$old/img*"
        $err.FullyQualifiedErrorId | Should -BeLike 'UnsafeDestination,*'
        $written = Get-MemoryImage "$old/img"
        $written.DataPages | Should -Be 8
        Test-MemoryImage "$old/img" | Should -BeTrue
        if ($other) { (Get-MemoryImage "$elsewhere/img").Id | Should -Be $other } else { @(Get-ChildItem -Force -Name $elsewhere) | Should -BeNullOrEmpty }
    }
}
