#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fourteenth attack round: memory images, their chains and paths. New cases only: earlier rounds are in
# Security.Round*.Images/Data tests, Workflows.Images.Tests.ps1 and tests/SoftDirty.Engine.Tests/Images. First a
# target that changes a page so that it keeps its hash (the engine cases: ImagesRound14Tests.cs).

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    # Writing a child's memory through /proc/PID/mem needs the right to ptrace it.
    # The methods an emulated chain tracks writes with (between saves, across commands).
    $TrackedMethods = @(@{ Method = 'SoftDirty' }, @{ Method = 'WriteProtect' })
    $MemWriteSkip = if ($yama -ge 3 -or ($yama -eq 2 -and -not $IsRoot)) { "Yama's ptrace_scope $yama forbids ptrace of a child here" } else { $null }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r14i')
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $root "$Prefix-$([guid]::NewGuid().ToString('n'))" }
    # Words of a process's memory written and read through /proc/PID/mem (as a debugger would: the target's own pages
    # change, the same as if it wrote them), and the fixed secret of Fast128 (SplitMix64 of its seed, PageHashKey).
    if (-not ('R14Memory' -as [type])) {
        Add-Type -TypeDefinition @'
public static class R14Memory {
    public static ulong FixedSecretWord(int i) {
        ulong x = 0x5D1E7A3C9B1F4C6EUL, z = 0;
        for (int k = 0; k <= i; k++) { z = x += 0x9E3779B97F4A7C15UL; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL; z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL; z ^= z >> 31; }
        return z;
    }
    public static void Poke(int pid, ulong address, ulong value) {
        using var h = System.IO.File.OpenHandle("/proc/" + pid + "/mem", System.IO.FileMode.Open, System.IO.FileAccess.ReadWrite);
        System.IO.RandomAccess.Write(h, System.BitConverter.GetBytes(value), (long)address);
    }
    public static ulong Peek(int pid, ulong address) {
        using var h = System.IO.File.OpenHandle("/proc/" + pid + "/mem", System.IO.FileMode.Open, System.IO.FileAccess.Read);
        var b = new byte[8];
        if (System.IO.RandomAccess.Read(h, b, (long)address) != 8) throw new System.IO.IOException("short read of /proc/" + pid + "/mem");
        return System.BitConverter.ToUInt64(b, 0);
    }
}
'@
    }
    # An emulated process of 32 written pages, and the start of its mapping.
    function New-Victim { $v = New-FilledEmulator -Pages 32; $v.Emulator; $v.Mapping.Start }
    # The 8 bytes at $Address of what Restore-MemoryImage wrote for the mapping that holds it.
    function Read-Restored($Restored, [uint64] $Address) {
        $m = $Restored | Where-Object { $_.Start -le $Address -and $_.End -gt $Address } | Select-Object -First 1
        if (-not $m) { throw "no restored mapping holds 0x$('{0:x}' -f $Address)" }
        $bytes = [IO.File]::ReadAllBytes($m.File)
        [BitConverter]::ToUInt64($bytes, [int]($Address - $m.Start))
    }
}

Describe 'A page changed so that it keeps its Fast128 hash (round 14)' -Tag 'Images', 'Security', 'Round14Images' {
    BeforeEach { $script:t = Start-ImgTarget }
    AfterEach { Stop-ImgTarget $t }

    It 'an increment saves the page and the chain restores the bytes the process holds' -Skip:([bool]$MemWriteSkip) {
        # Word 0 of stripes 0 and 1 of a page (bytes 0 and 64) with the low halves of Fast128's fixed secret words 0
        # and 1: each multiplies to zero, and only their sum counts; moving one unit between their high halves kept
        # the unkeyed hash. Before the fix the increment saved no page (DataPages 0), Test-MemoryImage called the
        # chain valid and its restore held the parent's bytes: the change was lost without a word.
        $ps = [uint64](Get-SoftDirtySupport).PageSize
        $addr = [Convert]::ToUInt64((Send-ImgTarget $t 'map 4'), 16)
        $null = Send-ImgTarget $t ('fill {0:x} 4 5' -f $addr)
        $page = $addr + $ps
        $lo0 = [R14Memory]::FixedSecretWord(0) -band [uint64]4294967295
        $lo1 = [R14Memory]::FixedSecretWord(1) -band [uint64]4294967295
        [R14Memory]::Poke($t.Id, $page, $lo0 -bor ([uint64]0x1111 -shl 32))
        [R14Memory]::Poke($t.Id, $page + 64, $lo1 -bor ([uint64]0x2222 -shl 32))
        $full = New-ImagePath 'full'; $inc = New-ImagePath 'inc'
        $null = Save-MemoryImage -Id $t.Id -Path $full
        [R14Memory]::Poke($t.Id, $page, $lo0 -bor ([uint64]0x1112 -shl 32))
        [R14Memory]::Poke($t.Id, $page + 64, $lo1 -bor ([uint64]0x2221 -shl 32))
        $i = Save-MemoryImage -Id $t.Id -Path $inc -Parent $full
        $i.DataPages | Should -BeGreaterOrEqual 1
        Test-MemoryImage -Path $inc | Should -BeTrue
        $r = Restore-MemoryImage -Path $inc -Destination (New-ImagePath 'out')
        '{0:x16}' -f (Read-Restored $r $page) | Should -Be ('{0:x16}' -f [R14Memory]::Peek($t.Id, $page))
        '{0:x16}' -f (Read-Restored $r ($page + 64)) | Should -Be ('{0:x16}' -f [R14Memory]::Peek($t.Id, $page + 64))
    }

    It 'an increment of a chain without a key (saved by an earlier version) warns that it compares by the fixed one; of a keyed chain it does not' {
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        $keyed = New-ImagePath 'keyed'; $old = New-ImagePath 'unkeyed'
        $null = Save-MemoryImage -Id $t.Id -Path $keyed
        $null = Save-MemoryImage -Id $t.Id -Path $old
        # As an earlier version wrote it: no pageKey (the checksum recomputed; its pages no longer verify, which the
        # save does not need).
        $m = [SoftDirty.TestKit.Images.ManifestFile]::Read($old)
        $m.PageKey = [NullString]::Value
        [SoftDirty.TestKit.Images.ManifestFile]::Write($old, $m)
        $null = Save-MemoryImage -Id $t.Id -Path (New-ImagePath 'keyed-1') -Parent $keyed -WarningVariable w1 -WarningAction SilentlyContinue
        $null = Save-MemoryImage -Id $t.Id -Path (New-ImagePath 'unkeyed-1') -Parent $old -WarningVariable w2 -WarningAction SilentlyContinue
        @($w1 | Where-Object { "$_" -like '*page-hash key*' }) | Should -BeNullOrEmpty
        @($w2 | Where-Object { "$_" -like '*has no page-hash key*' }).Count | Should -Be 1
    }

    It 'each full image has its own key, which Get-MemoryImage does not show, and an increment carries its parent''s' {
        $a = New-ImagePath 'a'; $b = New-ImagePath 'b'; $a1 = New-ImagePath 'a1'
        $null = Save-MemoryImage -Id $t.Id -Path $a
        $null = Save-MemoryImage -Id $t.Id -Path $b
        $null = Save-MemoryImage -Id $t.Id -Path $a1 -Parent $a
        $key = { param($p) (Get-Content -Raw (Join-Path $p manifest.json) | ConvertFrom-Json).pageKey }
        (& $key $a) | Should -Match '^[0-9a-f]{64}$'
        (& $key $a) | Should -Not -Be (& $key $b)
        (& $key $a1) | Should -Be (& $key $a)
        (Get-MemoryImage -Path $a | Get-Member -MemberType Property).Name | Should -Not -Match 'Key'
        (Get-MemoryImage -Path $a | Out-String) | Should -Not -Match (& $key $a)
    }
}

Describe 'Path spellings PowerShell normalises, and names it does not (round 14)' -Tag 'Images', 'Security', 'Round14Images' {
    BeforeAll {
        $script:e = (New-FilledEmulator).Emulator
        $script:here = New-Item -ItemType Directory (New-ImagePath 'paths')
        Push-Location $here
    }
    AfterAll { Pop-Location }

    It '<Label>: the image lands in <Lands>, the folder the spelling names, and Get, Test and Restore read it back by that spelling' -ForEach @(
        @{ Label = 'a trailing /. on a new folder'; Spell = 'dot/.'; Lands = 'dot'; Make = @() }
        @{ Label = 'a trailing /. on an empty folder of the caller''s'; Spell = 'edot/.'; Lands = 'edot'; Make = @('edot') }
        @{ Label = 'sub/.. (taken lexically, as PowerShell takes it)'; Spell = 'up/sub/..'; Lands = 'up'; Make = @('up') }
        @{ Label = 'a folder named like a drive, made relative (./Env:x)'; Spell = './Env:x'; Lands = 'Env:x'; Make = @() }
        @{ Label = 'one space'; Spell = ' '; Lands = ' '; Make = @() }
        @{ Label = 'a trailing space'; Spell = 'sp '; Lands = 'sp '; Make = @() }
        @{ Label = '250 bytes'; Spell = ('L' * 250); Lands = ('L' * 250); Make = @() }
    ) {
        foreach ($f in $Make) { $null = New-Item -ItemType Directory (Join-Path $here $f) }
        $i = Save-MemoryImage -Emulator $e -Path $Spell
        $i.Path | Should -Be (Join-Path $here $Lands)
        [IO.File]::Exists([IO.Path]::Combine($here, $Lands, 'manifest.json')) | Should -BeTrue
        (Get-MemoryImage -Path $Spell).Id | Should -Be $i.Id
        Test-MemoryImage -Path $Spell | Should -BeTrue
        $r = @(Restore-MemoryImage -Path $Spell -Destination "r-$($i.Id)")
        $r.Count | Should -BeGreaterThan 0
        $c = Save-MemoryImage -Emulator $e -Path "c-$($i.Id)" -Parent $Spell
        $c.ParentPath | Should -Be (Join-Path $here $Lands)
    }

    It '~ is the home folder (as PowerShell resolves it), for Save and Get alike' {
        $name = "r14-$([guid]::NewGuid().ToString('n'))"
        try {
            $i = Save-MemoryImage -Emulator $e -Path "~/$name"
            $i.Path | Should -Be (Join-Path $HOME $name)
            (Get-MemoryImage -Path "~/$name").Id | Should -Be $i.Id
        } finally { Remove-Item -LiteralPath (Join-Path $HOME $name) -Recurse -Force -ErrorAction Ignore }
    }

    It 'names in two Unicode normal forms (e + U+0301 and U+00E9) are two folders: neither reads the other''s image' {
        $nfd = 'e' + [char]0x301; $nfc = [string][char]0xe9
        $i = Save-MemoryImage -Emulator $e -Path $nfd
        Get-ErrorId { Get-MemoryImage -Path $nfc } | Should -Be 'ImageIncomplete,SoftDirty.Commands.GetMemoryImageCommand'
        $j = Save-MemoryImage -Emulator $e -Path $nfc
        $j.Id | Should -Not -Be $i.Id
        (Get-MemoryImage -Path $nfd).Id | Should -Be $i.Id
    }

    It 'an escaped wildcard (a`[1`]) is a literal name too: it reads neither a[1] nor a1' {
        $null = Save-MemoryImage -Emulator $e -Path 'w1'
        $null = Save-MemoryImage -Emulator $e -Path 'w[1]'
        Get-ErrorId { Get-MemoryImage -Path 'w`[1`]' } | Should -Be 'ImageIncomplete,SoftDirty.Commands.GetMemoryImageCommand'
        Test-MemoryImage -Path 'w`[1`]' | Should -BeFalse
    }
}

Describe 'Image objects that came back from a session or a file (round 14)' -Tag 'Images', 'Security', 'Round14Images' {
    BeforeAll {
        $script:e = (New-FilledEmulator).Emulator
        $script:img = New-ImagePath 'deser'
        $script:info = Save-MemoryImage -Emulator $e -Path $img
        $xml = Join-Path $TestDrive 'info.xml'
        $info | Export-Clixml $xml
        $script:back = Import-Clixml $xml
    }

    It 'a MemoryImageInfo from Import-Clixml is Deserialized, and Test, Get and Restore bind its Path' {
        $back.pstypenames[0] | Should -Be 'Deserialized.SoftDirty.Images.MemoryImageInfo'
        $back | Test-MemoryImage | Should -BeTrue
        ($back | Get-MemoryImage).Id | Should -Be $info.Id
        @($back | Restore-MemoryImage -Destination (New-ImagePath 'deser-r')).Count | Should -BeGreaterThan 0
    }

    It 'piped into Save-MemoryImage it is refused (InputObjectMissingMandatory: -Id): its ProcessId never picks a process to save' {
        Get-ErrorId { $back | Save-MemoryImage -Path (New-ImagePath 'deser-s') } | Should -Be 'InputObjectMissingMandatory,SoftDirty.Commands.SaveMemoryImageCommand'
        Get-ErrorId { $info | Save-MemoryImage -Path (New-ImagePath 'deser-s') } | Should -Be 'InputObjectMissingMandatory,SoftDirty.Commands.SaveMemoryImageCommand'
    }

    It 'a Deserialized MemoryImageInfo shows in the table view of the live one' {
        ($back | Format-Table | Out-String) | Should -Match 'DataPages'
    }
}

Describe 'Increments of one parent into one destination at once, then continued (round 14, emulated)' -Tag 'Images', 'Security', 'Round14Images' {
    It '-Method <Method>: one save wins, the others say ImageExists and leave nothing; the winner''s child, after more writes, restores what a full image restores' -ForEach $TrackedMethods {
        # The losers collected and re-armed the tracking before their rename failed: the winner's epoch is then no
        # longer the process's, and its child must not trust the tracker (it compares, with a warning).
        $e, $base = New-Victim
        $chain = New-ImagePath 'same'
        $null = Save-MemoryImage -Emulator $e -Path "$chain-0" -Method $Method
        $e | Write-EmulatedMemory -Address ($base + 4KB) -Length 8KB -Value 0x41
        $module = (Get-Module SoftDirty).Path
        $jobs = foreach ($n in 1..3) {
            Start-ThreadJob -ArgumentList $e, "$chain-1", "$chain-0", $module, $Method {
                param($Emu, $Img, $Parent, $Module, $Method)
                Import-Module $Module
                try { $null = Save-MemoryImage -Emulator $Emu -Path $Img -Parent $Parent -Method $Method -WarningAction SilentlyContinue -ErrorAction Stop; 'saved' }
                catch { $_.FullyQualifiedErrorId }
            }
        }
        $null = $jobs | Wait-Job -Timeout 180
        $results = @($jobs | Receive-Job)
        @($results | Where-Object { $_ -eq 'saved' }).Count | Should -Be 1
        @($results | Where-Object { $_ -ne 'saved' }) | Should -Be (@('ImageExists,SoftDirty.Commands.SaveMemoryImageCommand') * 2)
        @(Get-ChildItem -Force -Name -LiteralPath $root | Where-Object { $_ -like '*.partial-*' }) | Should -BeNullOrEmpty
        $e | Write-EmulatedMemory -Address ($base + 20KB) -Length 4KB -Value 0x42
        $null = Save-MemoryImage -Emulator $e -Path "$chain-2" -Parent "$chain-1" -Method $Method -WarningAction SilentlyContinue
        $full = New-ImagePath 'same-full'
        $null = Save-MemoryImage -Emulator $e -Path $full -Method Hash
        Test-MemoryImage "$chain-2" | Should -BeTrue
        Compare-RestoredImage "$chain-2" $full $root | Should -BeNullOrEmpty
    }
}

Describe 'A chain copied elsewhere (cp -a, another filesystem) and both copies continued (round 14, emulated)' -Tag 'Images', 'Security', 'Round14Images' {
    It '-Method <Method>: each copy''s next increment restores what a full image of its moment restores, whichever re-armed the tracking last' -ForEach $TrackedMethods {
        # A copy carries the original's tracking epoch: once either is continued, the other's epoch is stale and its
        # increment must compare contents, never trust writes tracked since the other's save.
        $e, $base = New-Victim
        $chain = New-Item -ItemType Directory (New-ImagePath 'orig')
        $other = if (Test-Path /dev/shm) { Join-Path /dev/shm "sd-r14-$([guid]::NewGuid().ToString('n'))" } else { New-ImagePath 'copy' }
        try {
            $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method $Method
            $e | Write-EmulatedMemory -Address ($base + 4KB) -Length 4KB -Value 0x51
            $null = Save-MemoryImage -Emulator $e -Path "$chain/1" -Parent "$chain/0" -Method $Method
            cp -a $chain $other
            $LASTEXITCODE | Should -Be 0
            $e | Write-EmulatedMemory -Address ($base + 8KB) -Length 4KB -Value 0x52
            $null = Save-MemoryImage -Emulator $e -Path "$other/2" -Parent "$other/1" -Method $Method -WarningAction SilentlyContinue
            $e | Write-EmulatedMemory -Address ($base + 12KB) -Length 4KB -Value 0x53
            $null = Save-MemoryImage -Emulator $e -Path "$chain/2" -Parent "$chain/1" -Method $Method -WarningAction SilentlyContinue
            $full = New-ImagePath 'copy-full'
            $null = Save-MemoryImage -Emulator $e -Path $full -Method Hash
            (Get-MemoryImage "$other/1").Id | Should -Be (Get-MemoryImage "$chain/1").Id
            Test-MemoryImage "$other/2" | Should -BeTrue
            Test-MemoryImage "$chain/2" | Should -BeTrue
            Compare-RestoredImage "$chain/2" $full $root | Should -BeNullOrEmpty
            # The copy's increment holds the first two writes (its moment), not the third.
            $r = @(Restore-MemoryImage -Path "$other/2" -Destination (New-ImagePath 'copy-r'))
            $bytes = [IO.File]::ReadAllBytes(($r | Where-Object { $_.Start -le $base -and $_.End -gt $base }).File)
            $off = [int]($base - ($r | Where-Object { $_.Start -le $base -and $_.End -gt $base }).Start)
            $bytes[$off + 4KB], $bytes[$off + 8KB] | Should -Be 0x51, 0x52
            $bytes[$off + 12KB] | Should -Not -Be 0x53
        } finally { Remove-Item -LiteralPath $other -Recurse -Force -ErrorAction Ignore }
    }
}

Describe 'Restore-MemoryImage -Emulator next to or over memory the emulated process has (round 14)' -Tag 'Images', 'Security', 'Round14Images' {
    BeforeAll {
        $script:src = New-EmulatedProcess
        $script:m = $src | Add-EmulatedMapping -Length 64KB
        $src | Write-EmulatedMemory -Address $m.Start -Length 64KB -Value 7
        $script:img = New-ImagePath 'emu'
        $null = Save-MemoryImage -Emulator $src -Path $img
    }

    It 'a mapping <Label>: <Outcome>, and the process''s own bytes stay as they were' -ForEach @(
        @{ Label = 'just below the image''s'; From = -64; Pages = 16; Outcome = 'restored' }
        @{ Label = 'just above the image''s'; From = 64; Pages = 16; Outcome = 'restored' }
        @{ Label = 'over the image''s last page'; From = 60; Pages = 2; Outcome = 'ImageExists' }
        @{ Label = 'inside the image''s'; From = 8; Pages = 1; Outcome = 'ImageExists' }
        @{ Label = 'covering the image''s'; From = -4; Pages = 18; Outcome = 'ImageExists' }
    ) {
        $t = New-EmulatedProcess
        $own = $t | Add-EmulatedMapping -Length ($Pages * 4KB) -Address ([uint64]([long]$m.Start + $From * 1KB)) -Fixed
        $t | Write-EmulatedMemory -Address $own.Start -Length $own.Size -Value 9
        $id = Get-ErrorId { Restore-MemoryImage -Path $img -Emulator $t -Confirm:$false }
        if ($Outcome -eq 'restored') {
            $id | Should -Be 'none'
            ($t | Read-EmulatedMemory -Address $m.Start -AsByteArray)[0] | Should -Be 7
            ($t | Read-EmulatedMemory -Address ($m.End - 1) -AsByteArray)[0] | Should -Be 7
        } else {
            $id | Should -Be "$Outcome,SoftDirty.Commands.RestoreMemoryImageCommand"
            @($t | Get-MemoryMapping).Count | Should -Be 1
        }
        ($t | Read-EmulatedMemory -Address $own.Start -AsByteArray)[0] | Should -Be 9
        ($t | Read-EmulatedMemory -Address ($own.End - 1) -AsByteArray)[0] | Should -Be 9
    }
}
