#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 28 (Limits): the limits of the PowerShell that runs the module (its open-file limit met at each step of
# a receive, a save, a restore and a chain deeper than the limit) and numbers past 2^31 and 2^32 (an image whose pages.bin
# is over 4 GiB: an opt-in proof, SOFTDIRTY_BIG_IMAGES, whose run is described in the round's report).
# Found: a file piped into Receive-MemoryImage whose folder could not be opened for want of a descriptor said ImageCorrupt
# (of the sender's image) where it is ResourceLimit; a save, restore or receive whose result was put in place and whose
# last check (that the path still names it) met the limit said ResourceLimit and left the result in place (a script that
# tried again met ImageExists); a restore held two descriptors per image of the chain (its folder and its pages.bin), so a
# chain that Test-MemoryImage and Save-MemoryImage -Parent read was ResourceLimit to a restore at the same limit, and the
# pages files it had opened before it met the limit stayed open until the garbage collector came.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r28limits')
    # The child's helpers: the soft open-file limit set in-process (setrlimit; at a low limit PowerShell could start no
    # prlimit), the limit that leaves exactly N descriptors free below it (RLIMIT_NOFILE bounds the descriptor's number,
    # so holes count), and the descriptors open (the listing's own left out).
    $script:prelude = @'
param([string] $Out)
$PSStyle.OutputRendering = 'PlainText'
Import-Module $env:SOFTDIRTY_MODULE
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
Add-Type -Namespace R28 -Name Limit -MemberDefinition @"
[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] private static extern int getrlimit(int resource, ulong[] limits);
[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] private static extern int setrlimit(int resource, ulong[] limits);
// 7: RLIMIT_NOFILE (asm-generic/resource.h, x86-64 and arm64 alike).
public static ulong Soft() { var l = new ulong[2]; return getrlimit(7, l) == 0 ? l[0] : 0; }
public static int SetOpenFiles(ulong soft) { var l = new ulong[2]; if (getrlimit(7, l) != 0) return -1; l[0] = soft; return setrlimit(7, l); }
public static System.Collections.Generic.HashSet<int> Open() {
    var used = new System.Collections.Generic.HashSet<int>();
    foreach (var f in System.IO.Directory.GetFiles("/proc/self/fd")) {
        var t = new System.IO.FileInfo(f).LinkTarget;
        if (t != null && t.StartsWith("/proc/") && t.EndsWith("/fd")) continue;
        used.Add(int.Parse(System.IO.Path.GetFileName(f)));
    }
    return used;
}
public static int LimitFor(int free) {
    var used = Open();
    for (int n = 0, seen = 0; ; n++) if (!used.Contains(n)) { if (seen == free) return n; seen++; }
}
"@
$soft = [R28.Limit]::Soft()
function Invoke-AtLimit([int] $Free, [scriptblock] $Command) {
    $before = [R28.Limit]::Open().Count
    if ([R28.Limit]::SetOpenFiles([ulong][R28.Limit]::LimitFor($Free)) -ne 0) { throw 'setrlimit failed' }
    $id = try { $null = & $Command; 'ok' } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
    $null = [R28.Limit]::SetOpenFiles($soft)
    "$id $([R28.Limit]::Open().Count - $before)"
}
'@
    # One child runs every part (a PowerShell started and its module imported once), each in a folder of its own; its lines
    # come back prefixed with the part's name.
    $parts = [ordered]@{}
    $parts.receive = @'
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 64KB
$null = Save-MemoryImage -Emulator $e -Path "$Out/img" -Confirm:$false
$files = @(Get-Item "$Out/img/index.bin", "$Out/img/pages.bin", "$Out/img/manifest.json")
$null = $files | Receive-MemoryImage "$Out/warm" -Confirm:$false
foreach ($free in 0..10) {
    foreach ($at in 0..2) {
        $dest = "$Out/r-$free-$at"
        $before = [R28.Limit]::Open().Count
        $id = try {
            $null = & { for ($i = 0; $i -lt 3; $i++) { if ($i -eq $at) { $null = [R28.Limit]::SetOpenFiles([ulong][R28.Limit]::LimitFor($free)) }; $files[$i] } } |
                Receive-MemoryImage $dest -Confirm:$false
            'ok'
        } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
        $null = [R28.Limit]::SetOpenFiles($soft)
        $valid = if (Test-Path $dest) { Test-MemoryImage $dest } else { 'absent' }
        "CASE $free $at $id $([R28.Limit]::Open().Count - $before) $valid"
    }
}
'LEFT ' + ((Get-ChildItem -Force $Out -Name | Where-Object { $_ -notmatch '^(img|warm|r-\d+-\d)$' }) -join ' ')
'CHILD DONE'
'@
    $parts.write = @'
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 64KB
$null = Save-MemoryImage -Emulator $e -Path "$Out/img" -Confirm:$false
$null = Save-MemoryImage -Emulator $e -Path "$Out/warm-s" -Parent "$Out/img" -Confirm:$false
$null = Restore-MemoryImage "$Out/img" "$Out/warm-r"
foreach ($free in 0..12) {
    $r = Invoke-AtLimit $free { Save-MemoryImage -Emulator $e -Path "$Out/s-$free" -Parent "$Out/img" -Confirm:$false }
    "CASE save $free $r $(Test-Path "$Out/s-$free")"
    $r = Invoke-AtLimit $free { Restore-MemoryImage "$Out/img" "$Out/r-$free" }
    "CASE restore $free $r $(Test-Path "$Out/r-$free")"
}
'LEFT ' + ((Get-ChildItem -Force $Out -Name | Where-Object { $_ -notmatch '^(img|warm-[sr]|[sr]-\d+)$' }) -join ' ')
'CHILD DONE'
'@
    $parts.deep = @'
$depth = 48
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 256KB; $e | Write-EmulatedMemory -Address $m.Start -Length 256KB -Value 1
$null = Save-MemoryImage -Emulator $e -Path "$Out/0" -Confirm:$false
for ($i = 1; $i -le $depth; $i++) {
    $e | Write-EmulatedMemory -Address ($m.Start + [uint64](($i % 64) * 4096)) -Length 4096 -Value ([byte]($i + 1))
    $null = Save-MemoryImage -Emulator $e -Path "$Out/$i" -Parent "$Out/$($i - 1)" -Confirm:$false
}
$null = Restore-MemoryImage "$Out/$depth" "$Out/reference"
$reference = (Get-ChildItem "$Out/reference" -Filter *.bin | Get-FileHash).Hash -join ','
$null = Test-MemoryImage "$Out/$depth"
foreach ($free in @(0, 1, ($depth / 2), $depth, ($depth + 2), ($depth + 4), ($depth + 8), ($depth + 12), ($depth + 16), ($depth + 24), (2 * $depth), (2 * $depth + 24))) {
    $r = Invoke-AtLimit $free { if (-not (Test-MemoryImage "$Out/$depth")) { throw "not valid" } }
    "CASE test $free $r"
    $r = Invoke-AtLimit $free { Save-MemoryImage -Emulator $e -Path "$Out/s-$free" -Parent "$Out/$depth" -Confirm:$false }
    "CASE save $free $r"
    $r = Invoke-AtLimit $free { Restore-MemoryImage "$Out/$depth" "$Out/r-$free" }
    $same = if (Test-Path "$Out/r-$free") { ((Get-ChildItem "$Out/r-$free" -Filter *.bin | Get-FileHash).Hash -join ',') -eq $reference } else { 'absent' }
    "CASE restore $free $r $same"
}
'CHILD DONE'
'@
    $child = $prelude + "`n" + (@(foreach ($name in $parts.Keys) {
        "try { & { param([string] `$Out) $($parts[$name]) } (New-Item -ItemType Directory `"`$Out/$name`").FullName | ForEach-Object { `"${name}: `$_`" } }"
        "catch { `"${name}: FAILED `$(`$_.FullyQualifiedErrorId) `$_`" }"
    }) -join "`n")
    $script = Join-Path $root 'child.ps1'
    Set-Content -LiteralPath $script -Value $child
    $pwsh = Get-PwshCommandLine
    $script:childLines = @(& $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -File $script $root.FullName 2>&1 | ForEach-Object { "$_" })
}


Describe 'Round 28: a PowerShell whose open-file limit runs out while it receives, saves or restores an image' -Tag 'Security', 'Round28Limits' {
    It 'each file piped into Receive-MemoryImage, the limit met at each step: ResourceLimit, never ImageCorrupt of the image read; a failed receive leaves nothing' {
        # The limit is set between the files of the pipeline (by the command that produces them), so that it is met where
        # the receiver opens the folder of the file it reads: that said "ImageCorrupt: FOLDER: EMFILE" of an image that is whole.
        $lines = @($childLines | Where-Object { $_ -like 'receive: *' } | ForEach-Object { $_.Substring('receive: '.Length) })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $cases.Count | Should -Be 33
        foreach ($c in $cases) {
            $f = $c -split ' '
            $f[3] | Should -BeIn 'ok', 'ResourceLimit' -Because "a limit of this PowerShell is ResourceLimit, never ImageCorrupt of the image read ($c)"
            # A receive that failed leaves the destination as it was (absent); one that worked put a valid image there.
            $f[5] | Should -Be $(if ($f[3] -eq 'ok') { 'True' } else { 'absent' }) -Because $c
            $f[4] | Should -Be '0' -Because "no descriptor stays open after the command ($c)"
        }
        @($cases | Where-Object { $_ -like '* ResourceLimit *' }).Count | Should -BeGreaterThan 0 -Because 'the lowest limits leave no descriptor'
        @($cases | Where-Object { $_ -like 'CASE 10 *' -and $_ -notlike '* ok *' }) | Should -BeNullOrEmpty -Because "with 10 descriptors to spare a receive works`n$text"
        $lines | Should -Contain 'LEFT ' -Because 'no private folder stays behind'
    }

    It 'Save-MemoryImage and Restore-MemoryImage at each limit: ok or ResourceLimit, and a command that failed put nothing in place' {
        # Round 13 swept these at every limit for their ErrorId; where the limit was met by the last check of a result already
        # renamed into place (that its path still names it), the command said ResourceLimit and the result stayed.
        $lines = @($childLines | Where-Object { $_ -like 'write: *' } | ForEach-Object { $_.Substring('write: '.Length) })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $cases.Count | Should -Be 26
        foreach ($c in $cases) {
            $f = $c -split ' '
            $f[3] | Should -BeIn 'ok', 'ResourceLimit' -Because $c
            $f[5] | Should -Be $(if ($f[3] -eq 'ok') { 'True' } else { 'False' }) -Because "a failed command leaves the destination as it was ($c)"
            $f[4] | Should -Be '0' -Because "no descriptor stays open after the command ($c)"
        }
        @($cases | Where-Object { ($_ -split ' ')[3] -eq 'ResourceLimit' }).Count | Should -BeGreaterThan 0
        @($cases | Where-Object { ($_ -split ' ')[2] -eq '12' -and ($_ -split ' ')[3] -ne 'ok' }) | Should -BeNullOrEmpty -Because "with 12 descriptors to spare both work`n$text"
        $lines | Should -Contain 'LEFT '
    }

    It 'a chain of 48 increments restores wherever Test-MemoryImage and Save-MemoryImage -Parent read it with a few descriptors to spare, and a failure keeps none open' {
        # A restore opened each image's pages.bin while it held each image's folder: twice the descriptors of the chain.
        $lines = @($childLines | Where-Object { $_ -like 'deep: *' } | ForEach-Object { $_.Substring('deep: '.Length) })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $cases.Count | Should -Be 36
        foreach ($c in $cases) {
            $f = $c -split ' '
            $f[3] | Should -BeIn 'ok', 'ResourceLimit' -Because $c
            $f[4] | Should -Be '0' -Because "no descriptor stays open after the command ($c)"
            if ($f[1] -eq 'restore') { $f[5] | Should -Be $(if ($f[3] -eq 'ok') { 'True' } else { 'absent' }) -Because $c }
        }
        # Where the chain is read with 16 to spare, it restores too: one descriptor per image, as reading it takes.
        $readable = @($cases | Where-Object { $_ -like 'CASE test * ok *' } | ForEach-Object { [int](($_ -split ' ')[2]) })
        $readable.Count | Should -BeGreaterThan 0 -Because $text
        $spare = @($readable | Where-Object { $_ -ge ($readable | Measure-Object -Minimum).Minimum + 16 })
        $spare.Count | Should -BeGreaterThan 1 -Because "the chain is read at limits with 16 and more to spare`n$text"
        foreach ($free in $spare) {
            $cases | Should -Contain "CASE restore $free ok 0 True" -Because "Test-MemoryImage read the chain with $free descriptors free`n$text"
            $cases | Should -Contain "CASE save $free ok 0" -Because $text
        }
        @($cases | Where-Object { ($_ -split ' ')[2] -eq '0' -and ($_ -split ' ')[3] -eq 'ok' }) | Should -BeNullOrEmpty -Because 'no descriptor left: nothing can be read'
    }
}
