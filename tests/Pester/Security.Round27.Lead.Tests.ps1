#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-seventh attack round, the lead's cases: what round 26 left open of failed commands.
# Found: when the fsync of the destination's folder failed after the rename (the result taken away again), a receive left
# the folders it had made on the way to an absent destination, and a migration whose -Destination folder's own creation
# failed there left them too (the save and the restore took theirs back). Where the destination's folder refuses the final
# rename and the removal (append-only, immutable, read-only since), the hidden unfinished folder stayed without a word: the
# error said only that the move failed. Every case below failed before.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $StraceSkip = Get-StraceSkipReason 'the fsync failure is injected with strace'
    $AppendSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Get-Command chattr -CommandType Application -ErrorAction Ignore)) { 'no chattr (e2fsprogs) to make a folder append-only' }
    else {
        # Measured: the folder's file system and this user's capabilities (CAP_LINUX_IMMUTABLE) allow chattr +a.
        $probe = Join-Path ([IO.Path]::GetTempPath()) "sd-r27-append-$([guid]::NewGuid().ToString('n'))"
        $null = New-Item -ItemType Directory $probe
        $said = chattr +a $probe 2>&1
        $ok = $LASTEXITCODE -eq 0
        if ($ok) { chattr -a $probe }
        Remove-Item -LiteralPath $probe
        if (-not $ok) { "chattr +a is refused here (it needs CAP_LINUX_IMMUTABLE and a file system that keeps the flag): $said" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r27lead')).FullName
    $f = New-FilledEmulator
    $script:source = "$root/source"
    $null = Save-MemoryImage -Emulator $f.Emulator -Path $source
    # Runs $Script in a child pwsh under strace with $Strace (trace and inject options); its output lines.
    function Invoke-Injected([string[]] $Strace, [string] $Script) { (Invoke-StraceChild -Module $module -Strace $Strace -Script $Script).Out }
    function Said([string[]] $Out, [string] $Name) { ($Out | Where-Object { $_ -like "$Name=*" } | Select-Object -First 1) -replace '^[^=]*=' }
}

Describe 'Round 27: the folders a failed command made, when the fsync after the rename fails' -Tag 'Security', 'Round27Lead' -Skip:([bool]$StraceSkip) {
    It 'save, restore, receive and migration into absent a/b/NAME leave nothing of a or b' {
        # Before: the receive left r/a/b (the result was taken away, the folders made on the way kept), the migration m/a/b.
        $out = (New-Item -ItemType Directory (Join-Path $root "fsync-$([guid]::NewGuid().ToString('n'))")).FullName
        $strace = @(foreach ($c in 's', 'r', 'v', 'm') { '-P', "$out/$c/a/b" }) + @('-e', 'trace=fsync', '-e', 'inject=fsync:error=ENOSPC')
        $o = Invoke-Injected -Strace $strace -Script @"
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
'save=' + (Id { Save-MemoryImage -Emulator `$e -Path '$out/s/a/b/img' })
'restore=' + (Id { Restore-MemoryImage -Path '$source' -Destination '$out/r/a/b/rest' })
'receive=' + (Id { Get-ChildItem '$source' | Receive-MemoryImage -Path '$out/v/a/b/recv' -Confirm:`$false })
'migrate=' + (Id { Invoke-PreCopyMigration -Emulator `$e -Destination '$out/m/a/b/mig' -Bandwidth 1GB -MaxIterations 2 })
"@
        foreach ($c in 'save', 'restore', 'receive', 'migrate') { Said $o $c | Should -Be 'ImageWriteError' -Because "$c ($($o -join "`n"))" }
        # The first level (s, r, v, m) is made too, so nothing at all stays.
        @(Get-ChildItem -Force -Recurse -Name -LiteralPath $out) | Should -BeNullOrEmpty
    }
}

Describe 'Round 27: a destination folder that refuses the rename and the removal' -Tag 'Security', 'Round27Lead' -Skip:([bool]$AppendSkip) {
    BeforeAll {
        $script:append = (New-Item -ItemType Directory (Join-Path $root "append-$([guid]::NewGuid().ToString('n'))")).FullName
        chattr +a $append
        $script:e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
    }
    AfterAll { chattr -a $append }

    It '<Command> into an append-only folder names the unfinished folder it left, and nothing else is there' -ForEach @(
        @{ Command = 'Save-MemoryImage'; Name = 'img'; Run = { param($d) Save-MemoryImage -Emulator $e -Path $d } }
        @{ Command = 'Restore-MemoryImage'; Name = 'rest'; Run = { param($d) Restore-MemoryImage -Path $source -Destination $d } }
        @{ Command = 'Receive-MemoryImage'; Name = 'recv'; Run = { param($d) Get-ChildItem -LiteralPath $source | Receive-MemoryImage -Path $d -Confirm:$false } }
    ) {
        # Before: PermissionDenied "Moving the finished ... failed: EPERM", and the hidden folder stayed unnamed as left.
        $before = @(Get-ChildItem -Force -Name -LiteralPath $append)
        $err = $null
        try { $null = & $Run "$append/$Name"; throw "$Command succeeded into an append-only folder" } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'PermissionDenied,*'
        $left = @(Get-ChildItem -Force -Name -LiteralPath $append | Where-Object { $_ -notin $before })
        $left.Count | Should -Be 1 -Because 'the unfinished folder cannot be removed from an append-only folder'
        $left[0] | Should -BeLike ".$Name.partial-*"
        $err.Exception.Message | Should -BeLike "*The unfinished folder $append/$($left[0]) (*) could not be removed (EPERM*"
        # Its files are gone (the unfinished folder itself is not append-only), and the message says so.
        @(Get-ChildItem -Force -LiteralPath "$append/$($left[0])").Count | Should -Be 0
        $err.Exception.Message | Should -BeLike '*(empty)*'
    }
}
