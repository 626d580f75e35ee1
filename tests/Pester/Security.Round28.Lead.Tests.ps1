#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-eighth attack round, the lead's cases: what round 27 left open of failed commands.
# Found: where a save, a restore or a receive failed half-way (a write refused) and the hidden unfinished folder could not
# be removed either (a disk gone read-only, a folder made append-only), the folder stayed without a word: the error said
# only what failed, while the folder (no command reads it) held part of a process's memory. Round 27 named it only where
# the final rename failed. Every case below failed before.

BeforeDiscovery {
    $StraceSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Get-Command strace -CommandType Application -ErrorAction Ignore)) { 'strace is not installed: the failed removal is injected with strace' }
    elseif (-not (Get-Command prlimit -CommandType Application -ErrorAction Ignore)) { 'prlimit (util-linux) is not installed: the failed write is a file-size limit' }
    else {
        # Measured: strace can trace a child here (not where ptrace is forbidden, as in some containers).
        $said = strace -f -qq -o /dev/null -e trace=openat true 2>&1
        if ($LASTEXITCODE -ne 0) { "strace cannot trace here: $said" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r28lead')).FullName
    # 256 KiB of memory: past the 64 KiB file-size limit the child sets.
    $f = New-FilledEmulator 64
    $script:source = "$root/source"
    $null = Save-MemoryImage -Emulator $f.Emulator -Path $source
}

Describe 'Round 28: a command that fails half-way where its unfinished folder cannot be removed' -Tag 'Security', 'Round28Lead' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        $script:out = (New-Item -ItemType Directory (Join-Path $root "left-$([guid]::NewGuid().ToString('n'))")).FullName
        # The child: writes refused past 64 KiB (its file-size limit, soft), every removal refused (strace: EROFS, as on a disk
        # remounted read-only). Each case prints its error id and message.
        $pwsh = Get-PwshCommandLine
        $command = @"
`$ErrorActionPreference = 'Stop'; `$PSStyle.OutputRendering = 'PlainText'; Import-Module '$module'
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 256KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
& prlimit --pid `$PID --fsize=65536:
function Case([string] `$Name, [scriptblock] `$C) { try { `$null = & `$C; "`$Name=none" } catch { "`$Name=`$(`$_.FullyQualifiedErrorId -replace ',.*')|`$(`$_.Exception.Message -replace '\r?\n', ' ')" } }
Case save { Save-MemoryImage -Emulator `$e -Path '$out/s/img' }
Case restore { Restore-MemoryImage -Path '$source' -Destination '$out/r/rest' }
Case receive { Get-ChildItem -LiteralPath '$source' | Receive-MemoryImage -Path '$out/v/recv' -Confirm:`$false }
& prlimit --pid `$PID --fsize=unlimited
"@
        $script:said = @(strace -f -qq -o /dev/null --seccomp-bpf -e trace=unlinkat -e inject=unlinkat:error=EROFS @pwsh -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" })
    }
    AfterAll { Remove-Item -LiteralPath $out -Recurse -Force -ErrorAction Ignore }

    It '<Command> says ImageWriteError, names the unfinished folder it left, and that folder is the only thing there' -ForEach @(
        @{ Command = 'Save-MemoryImage'; Case = 'save'; Folder = 's'; Name = 'img' }
        @{ Command = 'Restore-MemoryImage'; Case = 'restore'; Folder = 'r'; Name = 'rest' }
        @{ Command = 'Receive-MemoryImage'; Case = 'receive'; Folder = 'v'; Name = 'recv' }
    ) {
        $line = $said | Where-Object { $_ -like "$Case=*" } | Select-Object -First 1
        $line | Should -Not -BeNullOrEmpty -Because ($said -join "`n")
        $id, $message = ($line -replace '^[^=]*=') -split '\|', 2
        $id | Should -Be 'ImageWriteError' -Because $line
        # Before: the message said only that the write failed; the hidden folder stayed unnamed.
        $left = @(Get-ChildItem -Force -Name -LiteralPath "$out/$Folder")
        $left.Count | Should -Be 1 -Because "only the unfinished folder stays ($($left -join ', '))"
        $left[0] | Should -BeLike ".$Name.partial-*"
        $message | Should -BeLike "*$out/$Folder/$($left[0])*could not be removed*" -Because $line
        Test-Path -LiteralPath "$out/$Folder/$Name" | Should -BeFalse -Because 'nothing was put in place'
    }
}
