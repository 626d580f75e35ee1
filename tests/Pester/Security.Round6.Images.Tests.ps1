#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, sixth attack round, on the memory-image side (new cases only; rounds 1-5 are in Workflows.Security.Tests.ps1,
# Security.Round2/3/4.Tests.ps1 and Security.Round5.Images.Tests.ps1): memory that cannot be read plainly (a userfaultfd
# the target never serves, memfd_secret, PROT_NONE, a deleted file), mappings moved, replaced or dropped between a parent
# and its increment, paths as PowerShell gives them (other providers, drives, wildcard characters), a parent replaced
# between saves, a swap between Test and Restore, concurrent increments of one parent, and access control (setgid, a
# default ACL for another user, a read-only mount). The engine's side: tests/SoftDirty.Engine.Tests/Images/ImageRound6Tests.cs.

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $HasMount = $IsRoot -and [bool](Get-Command mount -CommandType Application -ErrorAction SilentlyContinue) -and [bool](Get-Command umount -CommandType Application -ErrorAction SilentlyContinue)
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    # Round 34: Test-AsNobody needs setpriv; without it the two cases failed with CommandNotFoundException.
    $script:NoSetpriv = if (-not (Get-Command setpriv -CommandType Application -ErrorAction Ignore)) { 'setpriv (util-linux) is not installed: the test acts as user nobody with it' }
    # Write tracking of another process as WriteTracking.Tests.ps1 needs it: PAGEMAP_SCAN, WP_ASYNC, x86-64, ptrace of a child.
    $script:WtSkip = Get-WriteTrackingSkipReason
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r6')
    chmod 0755 $TestDrive $root
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state6'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Of the $Pages pages at $Address, those whose first byte is even in the restore of $Image (imgtarget's filled pages
    # all start with an odd byte; a page the image lacks restores as zeros).
    function Get-UnfilledPages([string] $Image, [uint64] $Address, [int] $Pages) {
        $out = New-Dest
        $mapping = Restore-MemoryImage -Path $Image -Destination $out | Where-Object { $_.Start -le $Address -and $Address -lt $_.End }
        $bytes = [IO.File]::ReadAllBytes($mapping.File)
        $first = [int](($Address - $mapping.Start) / 4096)
        @(for ($i = 0; $i -lt $Pages; $i++) { if (($bytes[($first + $i) * 4096] -band 1) -eq 0) { $i } })
    }
    function Get-Mode([string] $Path) { (stat -c '%a' -- $Path).Trim() }
    # Runs a file command as user nobody (root only); its exit code.
    function Test-AsNobody([string[]] $Command) {
        & setpriv --reuid=65534 --regid=65534 --clear-groups -- @Command 2>$null | Out-Null
        $LASTEXITCODE
    }
    # Gives $Path the POSIX ACL $Attribute (system.posix_acl_access or _default) in the kernel's form: version 2, then
    # (tag, permissions, id) entries in tag order: the owner rwx, user 65534 (nobody) rwx, the group r-x, the mask rwx,
    # others r-x. Returns 0, or the errno where the filesystem takes no ACL. (No setfacl needed.)
    function Set-NobodyAcl([string] $Path, [string] $Attribute) {
        $acl = [System.Collections.Generic.List[byte]]::new([BitConverter]::GetBytes([uint32]2))
        foreach ($e in @(@(1, 7, -1), @(2, 7, 65534), @(4, 5, -1), @(0x10, 7, -1), @(0x20, 5, -1))) {
            $acl.AddRange([BitConverter]::GetBytes([uint16]$e[0])); $acl.AddRange([BitConverter]::GetBytes([uint16]$e[1])); $acl.AddRange([BitConverter]::GetBytes([int32]$e[2]))
        }
        if (-not ('R6Acl.Native' -as [type])) {
            Add-Type -Namespace R6Acl -Name Native -MemberDefinition '[DllImport("libc", SetLastError = true)] public static extern int setxattr(string path, string name, byte[] value, UIntPtr size, int flags);'
        }
        if ([R6Acl.Native]::setxattr($Path, $Attribute, $acl.ToArray(), [UIntPtr]::new([uint64]$acl.Count), 0) -eq 0) { return 0 }
        [Runtime.InteropServices.Marshal]::GetLastPInvokeError()
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Memory the module cannot read plainly (a real process)' -Tag 'Workflows', 'Security', 'Round6Images' {
    BeforeEach {
        $script:t = Start-ImgTarget
        $script:anon = Send-ImgTarget $t 'map 16'
        $null = Send-ImgTarget $t "fill $anon 8 3"
    }
    AfterEach { Stop-ImgTarget $t }

    It 'a range the target registered with a userfaultfd (MISSING and write-protect) that it never serves: Save returns, counts the 8 unpopulated pages unreadable and says so, and Test-MemoryImage says the image lacks them' {
        # Before the fix, as root, Save-MemoryImage never returned (and Ctrl+C did not end it): the unpopulated
        # write-protected pages carry a marker that pagemap shows as swapped, the save read them with process_vm_readv,
        # and the fault waited, killable only, for a userfaultfd monitor that never came. (As a user without the right to
        # a full userfaultfd the target gets a user-mode-only one, whose faults from other processes fail at once.)
        $t.Process.StandardInput.WriteLine("uffd $anon 16"); $answer = $t.Process.StandardOutput.ReadLine()
        if ($answer -notlike 'OK*') { Set-ItResult -Skipped -Because "the target could not register a userfaultfd with WP_UNPOPULATED here ($answer)"; return }
        Wait-ImgTargetIdle $t
        $img = New-Dest
        $job = Start-ThreadJob -ArgumentList $t.Id, $img, (Get-Module SoftDirty).Path {
            param($TargetId, $Img, $Module)
            Import-Module $Module
            $info = Save-MemoryImage -Id $TargetId -Path $Img -Method Hash -WarningVariable warned -WarningAction SilentlyContinue
            [pscustomobject]@{ Info = $info; Warned = "$warned" }
        }
        $done = Wait-Job $job -Timeout 120
        if (-not $done) { Stop-ImgTarget $t; $null = Wait-Job $job -Timeout 30 } # the fault ends when the userfaultfd closes
        $done | Should -Not -BeNullOrEmpty -Because 'a save must not wait for a userfaultfd monitor of the target'
        $result = Receive-Job $job -ErrorAction Stop
        $result.Info.UnreadablePages | Should -Be 8
        $result.Warned | Should -Match 'could not be read.*userfaultfd'
        $test = Test-MemoryImage $img -Detailed
        $test.Valid | Should -BeFalse
        "$($test.Problems)" | Should -Match '8 page\(s\) could not be read'
        Get-UnfilledPages $img ([Convert]::ToUInt64($anon, 16)) 16 | Should -Be @(8..15) -Because 'the 8 populated pages are in the image, the 8 the target never populated are not'
    }

    It 'pages of memfd_secret (kept from every other process) are counted unreadable, with a warning, and the image is not valid' {
        $t.Process.StandardInput.WriteLine('secret 4'); $answer = $t.Process.StandardOutput.ReadLine()
        if ($answer -notlike 'OK*') { Set-ItResult -Skipped -Because "memfd_secret is not available here ($answer)"; return }
        Wait-ImgTargetIdle $t
        $img = New-Dest
        $info = Save-MemoryImage -Id $t.Id -Path $img -WarningVariable warned -WarningAction SilentlyContinue
        $info.UnreadablePages | Should -Be 4
        "$warned" | Should -Match 'could not be read.*memfd_secret'
        Test-MemoryImage $img | Should -BeFalse
    }

    It 'pages written and then made PROT_NONE are saved whole: the image is valid and holds their data' {
        $null = Send-ImgTarget $t "protect $anon 16 0"
        $img = New-Dest
        $info = Save-MemoryImage -Id $t.Id -Path $img -WarningVariable warned
        $warned | Should -BeNullOrEmpty
        $info.UnreadablePages | Should -Be 0
        Test-MemoryImage $img | Should -BeTrue
        Get-UnfilledPages $img ([Convert]::ToUInt64($anon, 16)) 16 | Should -Be @(8..15)
    }

    It 'a private writable mapping of a file that was deleted afterwards: its pages are in the image' {
        $file = Join-Path $root "deleted-$(New-Guid)"
        $mapped = Send-ImgTarget $t "deleted $file 8"
        Test-Path -LiteralPath $file | Should -BeFalse
        $img = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path $img
        Test-MemoryImage $img | Should -BeTrue
        Get-UnfilledPages $img ([Convert]::ToUInt64($mapped, 16)) 8 | Should -BeNullOrEmpty
    }

    It 'the mapping <Case> between the parent and the increment, -Method <Method>: the increment restores what a full image of that moment restores' -ForEach @(
        foreach ($m in 'WriteProtect', 'Hash') {
            @{ Method = $m; Case = 'replaced by MAP_FIXED (zeros), then partly written' }
            @{ Method = $m; Case = 'grown and moved by mremap, then written in the new part' }
            @{ Method = $m; Case = 'partly dropped with MADV_DONTNEED, then partly written' }
        }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $null = Send-ImgTarget $t "fill $anon 16 4"
        if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id }
        try {
            $chain = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            switch -Wildcard ($Case) {
                'replaced*' { $null = Send-ImgTarget $t "fixed $anon 16"; $null = Send-ImgTarget $t "fill $anon 4 5" }
                'grown*' { $moved = Send-ImgTarget $t "grow $anon 16 64"; $null = Send-ImgTarget $t ('fill {0:x} 2 9' -f ([Convert]::ToUInt64($moved, 16) + 20 * 4096)) }
                'partly dropped*' { $null = Send-ImgTarget $t "dontneed $anon 0 6"; $null = Send-ImgTarget $t "fill $anon 2 5" }
            }
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
        } finally { if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue } }
        Test-MemoryImage "$chain/1" | Should -BeTrue
        $fromChain = @(Get-RestoredHash "$chain/1" $root); $fromFull = @(Get-RestoredHash $full $root)
        @(Compare-Object $fromChain $fromFull | ForEach-Object { "$(if ($_.SideIndicator -eq '<=') { 'chain' } else { 'full' }): $($_.InputObject)" }) | Should -BeNullOrEmpty
        $fromChain.Count | Should -Be $fromFull.Count
    }

    It 'three increments of one parent saved at the same time, -Method <Method>: each is valid and exact (the later ones warn that tracking was reset since their parent)' -ForEach @(
        @{ Method = 'Hash' }
        @{ Method = 'WriteProtect' }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id }
        try {
            $chain = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            $null = Send-ImgTarget $t "fill $anon 3 8"
            $module = (Get-Module SoftDirty).Path
            $jobs = foreach ($n in 'a', 'b', 'c') {
                Start-ThreadJob -ArgumentList $t.Id, "$chain/$n", "$chain/0", $module, $env:SOFTDIRTY_STATE_DIR, $Method {
                    param($TargetId, $Img, $Parent, $Module, $State, $Method)
                    $env:SOFTDIRTY_STATE_DIR = $State
                    Import-Module $Module
                    $null = Save-MemoryImage -Id $TargetId -Path $Img -Parent $Parent -Method $Method -WarningAction SilentlyContinue
                }
            }
            $null = $jobs | Wait-Job -Timeout 180
            $jobs | Receive-Job -ErrorAction Stop
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
        } finally { if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue } }
        $expected = @(Get-RestoredHash $full $root)
        foreach ($n in 'a', 'b', 'c') {
            Test-MemoryImage "$chain/$n" | Should -BeTrue -Because "increment $n"
            @(Get-RestoredHash "$chain/$n" $root) | Should -Be $expected -Because "increment $n"
        }
    }
}

Describe 'A target in other namespaces' -Tag 'Workflows', 'Security', 'Round6Images' {
    It 'a target in <Label> (unshare), saved by its pid here: the full image and an increment are valid, and the increment restores what a full image of that moment restores' -ForEach @(
        @{ Label = 'a new pid namespace'; Options = '--pid' }
        @{ Label = 'new user and pid namespaces'; Options = '--user --map-root-user --pid' }
    ) {
        $unshare = Get-Command unshare -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if (-not $unshare) { Set-ItResult -Skipped -Because 'unshare (util-linux) is not installed'; return }
        $psi = [System.Diagnostics.ProcessStartInfo]::new($unshare.Source, "$Options --fork --kill-child $(Join-Path $PSScriptRoot '../native/bin/imgtarget')")
        $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true; $psi.RedirectStandardError = $true
        $p = [System.Diagnostics.Process]::Start($psi)
        try {
            $ready = $p.StandardOutput.ReadLine()
            if ($ready -notmatch '^READY ') { Set-ItResult -Skipped -Because "this user may not create $Label here: $($p.StandardError.ReadToEnd().Trim())"; return }
            # Its pid here: the child of unshare (it calls itself 1 in its namespace).
            $t = [pscustomobject]@{ Process = $p; Id = [int]((Get-Content "/proc/$($p.Id)/task/$($p.Id)/children").Trim()) }
            $region = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $region 16 3"
            $chain = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method Hash
            $null = Send-ImgTarget $t "fill $region 4 5"
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method Hash
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
        } finally { if (-not $p.HasExited) { $p.Kill($true); $p.WaitForExit(5000) | Out-Null } }
        Test-MemoryImage "$chain/0" | Should -BeTrue
        Test-MemoryImage "$chain/1" | Should -BeTrue
        @(Get-RestoredHash "$chain/1" $root) | Should -Be @(Get-RestoredHash $full $root)
    }
}

Describe 'Paths as PowerShell gives them' -Tag 'Workflows', 'Security', 'Round6Images' {
    BeforeAll {
        $script:v = New-FilledEmulator
        $script:image = New-Dest
        $null = $v.Emulator | Save-MemoryImage -Path $image
    }

    It '<Label>: Save, Test, Get and Restore say InvalidArgument and nothing appears in the process''s working directory' -ForEach @(
        @{ Label = 'a path of the Environment provider'; Path = 'Env:/r6-image' }
        @{ Label = 'a path of the Variable provider'; Path = 'Variable:r6-image' }
        @{ Label = 'a path of the Function provider'; Path = 'Function:r6-image' }
        @{ Label = 'a path of the Alias provider'; Path = 'Alias:r6-image' }
        @{ Label = 'a drive that does not exist'; Path = 'NoSuchDriveR6:/r6-image' }
    ) {
        # Before the fix PowerShell resolved these to the bare name 'r6-image', which the module took relative to the
        # process's working directory (not the current location): the image and the restore landed there, silently.
        $cwd = [Environment]::CurrentDirectory
        $before = @(Get-ChildItem -Force -LiteralPath $cwd -ErrorAction Ignore).Name
        Get-ErrorId { $v.Emulator | Save-MemoryImage -Path $Path } | Should -BeLike 'InvalidArgument,*'
        Get-ErrorId { Restore-MemoryImage -Path $image -Destination $Path } | Should -BeLike 'InvalidArgument,*'
        Get-ErrorId { Restore-MemoryImage -Path $Path -Destination (New-Dest) } | Should -BeLike 'InvalidArgument,*'
        Get-ErrorId { Test-MemoryImage -Path $Path } | Should -BeLike 'InvalidArgument,*'
        Get-ErrorId { Get-MemoryImage -Path $Path } | Should -BeLike 'InvalidArgument,*'
        Get-ErrorId { Get-Item -LiteralPath "$image/pages.bin", "$image/index.bin", "$image/manifest.json" | Receive-MemoryImage -Path $Path } | Should -BeLike 'InvalidArgument,*'
        Get-ErrorId { $v.Emulator | Save-MemoryImage -Path (New-Dest) -Parent $Path } | Should -BeLike 'InvalidArgument,*'
        @(Get-ChildItem -Force -LiteralPath $cwd -ErrorAction Ignore).Name | Should -Be $before
    }

    It 'a relative path while the current location is in another provider (Env:) is InvalidArgument, not a folder in the working directory' {
        $cwd = [Environment]::CurrentDirectory
        $before = @(Get-ChildItem -Force -LiteralPath $cwd -ErrorAction Ignore).Name
        Push-Location Env:
        try {
            Get-ErrorId { $v.Emulator | Save-MemoryImage -Path 'r6-relative' } | Should -BeLike 'InvalidArgument,*'
            Get-ErrorId { Restore-MemoryImage -Path $image -Destination 'r6-relative' } | Should -BeLike 'InvalidArgument,*'
        } finally { Pop-Location }
        @(Get-ChildItem -Force -LiteralPath $cwd -ErrorAction Ignore).Name | Should -Be $before
    }

    It '<Label> is used as the file-system path it names, for Save (and -Parent), Test, Get, Restore and Receive' -ForEach @(
        @{ Label = 'a FileSystem:: provider-qualified path'; Make = { param($p) "FileSystem::$p" } }
        @{ Label = 'a path on a New-PSDrive drive'; Make = { param($p) $null = New-PSDrive -Name R6Img -PSProvider FileSystem -Root (Split-Path $p) -Scope Global -ErrorAction SilentlyContinue; "R6Img:/$(Split-Path -Leaf $p)" } }
        @{ Label = 'a relative path after Set-Location'; Make = { param($p) Set-Location (Split-Path $p); Split-Path -Leaf $p } }
        @{ Label = 'a path with trailing separators'; Make = { param($p) "$p//" } }
    ) {
        $base = New-Dest
        $null = New-Item -ItemType Directory $base
        $here = Get-Location
        try {
            $names = foreach ($n in 'full', 'inc', 'rest', 'recv') { & $Make (Join-Path $base $n) }
            ($v.Emulator | Save-MemoryImage -Path $names[0]).Path | Should -Be (Join-Path $base 'full')
            ($v.Emulator | Save-MemoryImage -Path $names[1] -Parent $names[0]).Path | Should -Be (Join-Path $base 'inc')
            Test-MemoryImage $names[1] | Should -BeTrue
            @(Get-MemoryImage $names[1]).Count | Should -Be 2
            $null = Restore-MemoryImage -Path $names[1] -Destination $names[2]
            $null = Get-Item -LiteralPath "$base/full/pages.bin", "$base/full/index.bin", "$base/full/manifest.json" | Receive-MemoryImage -Path $names[3]
        } finally { Set-Location $here; Remove-PSDrive R6Img -Scope Global -ErrorAction SilentlyContinue }
        @(Get-ChildItem -Force -LiteralPath $base).Name | Sort-Object | Should -Be @('full', 'inc', 'recv', 'rest')
        Test-Path -LiteralPath "$base/rest/mappings.json" | Should -BeTrue
    }

    It 'names with wildcard characters ([ ] * ?) are taken literally everywhere: no other image matched, exactly that name made' {
        $base = New-Dest
        $null = New-Item -ItemType Directory $base
        # A decoy that "img[12]" would match as a wildcard.
        $null = $v.Emulator | Save-MemoryImage -Path "$base/img1"
        foreach ($name in 'img[12]', 'a*?') {
            ($v.Emulator | Save-MemoryImage -Path "$base/$name").Path | Should -Be "$base/$name"
            ($v.Emulator | Save-MemoryImage -Path "$base/$name-inc" -Parent "$base/$name").Path | Should -Be "$base/$name-inc"
            Test-MemoryImage "$base/$name-inc" | Should -BeTrue
            (Get-MemoryImage "$base/$name-inc")[0].Path | Should -Be "$base/$name"
            $null = Restore-MemoryImage -Path "$base/$name-inc" -Destination "$base/$name-rest"
        }
        @(Get-ChildItem -Force -LiteralPath $base).Name | Sort-Object | Should -Be (@('a*?', 'a*?-inc', 'a*?-rest', 'img1', 'img[12]', 'img[12]-inc', 'img[12]-rest') | Sort-Object)
        Test-MemoryImage "$base/img[2]" | Should -BeFalse -Because 'a name that exists only as a wildcard match is no image'
    }
}

Describe 'Images replaced between two commands' -Tag 'Workflows', 'Security', 'Round6Images' {
    It 'a "latest" link moved back to an older image between saves (-Method SoftDirty, emulated): the increment warns, continues the older image, and is exact' {
        $v = New-FilledEmulator
        $e = $v.Emulator; $m = $v.Mapping
        $chain = New-Dest
        $null = New-Item -ItemType Directory $chain
        $null = $e | Save-MemoryImage -Path "$chain/0" -Method SoftDirty
        $e | Write-EmulatedMemory -Address $m.Start -Length 8KB -Value 2
        $null = $e | Save-MemoryImage -Path "$chain/1" -Parent "$chain/0" -Method SoftDirty
        $e | Write-EmulatedMemory -Address ($m.Start + 32KB) -Length 4KB -Value 3
        $null = New-Item -ItemType SymbolicLink -Path "$chain/latest" -Target "$chain/0"
        $null = $e | Save-MemoryImage -Path "$chain/2" -Parent "$chain/latest" -Method SoftDirty -WarningVariable warned -WarningAction SilentlyContinue
        "$warned" | Should -Match 'cleared since the parent image'
        (Get-MemoryImage "$chain/2").Count | Should -Be 2
        $full = New-Dest
        $null = $e | Save-MemoryImage -Path $full -Method Hash
        Test-MemoryImage "$chain/2" | Should -BeTrue
        @(Get-RestoredHash "$chain/2" $root) | Should -Be @(Get-RestoredHash $full $root)
    }

    It 'an image tested valid and then swapped for a damaged one before Restore: Restore verifies again, says ImageCorrupt and writes nothing' {
        $v = New-FilledEmulator
        $good = New-Dest; $bad = New-Dest
        $null = $v.Emulator | Save-MemoryImage -Path $good
        $null = $v.Emulator | Save-MemoryImage -Path $bad
        $bytes = [IO.File]::ReadAllBytes("$bad/pages.bin"); $bytes[100] = $bytes[100] -bxor 0xff; [IO.File]::WriteAllBytes("$bad/pages.bin", $bytes)
        Test-MemoryImage $good | Should -BeTrue
        Rename-Item -LiteralPath $good "$good-aside"; Rename-Item -LiteralPath $bad $good
        $dest = New-Dest
        Get-ErrorId { Restore-MemoryImage -Path $good -Destination $dest } | Should -BeLike 'ImageCorrupt,*'
        Test-Path -LiteralPath $dest | Should -BeFalse
    }
}

Describe 'Access control around the destination' -Tag 'Workflows', 'Security', 'Round6Images' {
    It 'a setgid parent folder: the image and the restore are 0700/0600, without the setgid bit its folder would inherit' {
        $parent = New-Dest
        $null = New-Item -ItemType Directory $parent
        chmod 2755 $parent
        $v = New-FilledEmulator
        $null = $v.Emulator | Save-MemoryImage -Path "$parent/img"
        $null = Restore-MemoryImage -Path "$parent/img" -Destination "$parent/rest"
        $null = Get-Item -LiteralPath "$parent/img/pages.bin", "$parent/img/index.bin", "$parent/img/manifest.json" | Receive-MemoryImage -Path "$parent/recv"
        foreach ($d in 'img', 'rest', 'recv') {
            Get-Mode "$parent/$d" | Should -Be '700' -Because "$d is the module's folder"
            Get-ChildItem -LiteralPath "$parent/$d" | ForEach-Object { Get-Mode $_.FullName | Should -Be '600' -Because "$d/$($_.Name)" }
        }
    }

    It 'a parent folder whose default ACL grants user nobody rwx (root only, to act as nobody): nobody can neither list nor read the image, the restore or a received image' -Skip:(-not $IsRoot) {
        if ($NoSetpriv) { Set-ItResult -Skipped -Because $NoSetpriv; return }
        $parent = New-Dest
        $null = New-Item -ItemType Directory $parent
        chmod 0755 $parent
        $errno = Set-NobodyAcl $parent 'system.posix_acl_default'
        if ($errno) { Set-ItResult -Skipped -Because "this filesystem takes no POSIX ACL (errno $errno)"; return }
        # The ACL works: a folder made there by hand is open to nobody.
        $null = New-Item -ItemType Directory "$parent/plain"
        Test-AsNobody @('ls', "$parent/plain") | Should -Be 0 -Because 'the default ACL must grant nobody access, else this test proves nothing'
        $v = New-FilledEmulator
        $null = $v.Emulator | Save-MemoryImage -Path "$parent/img"
        $null = Restore-MemoryImage -Path "$parent/img" -Destination "$parent/rest"
        $null = Get-Item -LiteralPath "$parent/img/pages.bin", "$parent/img/index.bin", "$parent/img/manifest.json" | Receive-MemoryImage -Path "$parent/recv"
        foreach ($d in 'img', 'rest', 'recv') {
            Test-AsNobody @('ls', "$parent/$d") | Should -Not -Be 0 -Because "nobody must not list $d"
            foreach ($f in Get-ChildItem -LiteralPath "$parent/$d") { Test-AsNobody @('cat', $f.FullName) | Should -Not -Be 0 -Because "nobody must not read $d/$($f.Name)" }
        }
    }

    It 'a parent folder with an ACL entry that lets user nobody write (root only, for the entry''s uid) is refused as UnsafeDestination' -Skip:(-not $IsRoot) {
        if ($NoSetpriv) { Set-ItResult -Skipped -Because $NoSetpriv; return }
        $parent = New-Dest
        $null = New-Item -ItemType Directory $parent
        chmod 0755 $parent
        $errno = Set-NobodyAcl $parent 'system.posix_acl_access'
        if ($errno) { Set-ItResult -Skipped -Because "this filesystem takes no POSIX ACL (errno $errno)"; return }
        Test-AsNobody @('touch', "$parent/by-nobody") | Should -Be 0 -Because 'the ACL must let nobody write, else this test proves nothing'
        $v = New-FilledEmulator
        Get-ErrorId { $v.Emulator | Save-MemoryImage -Path "$parent/img" } | Should -BeLike 'UnsafeDestination,*'
        # The mode shows the ACL's mask as the group bits: the message names the ACL too (it said "its group" only).
        { $v.Emulator | Save-MemoryImage -Path "$parent/img" -ErrorAction Stop } | Should -Throw '*its group may write to (or a user or group its ACL names)*'
        $img = New-Dest
        $null = $v.Emulator | Save-MemoryImage -Path $img
        Get-ErrorId { Restore-MemoryImage -Path $img -Destination "$parent/rest" } | Should -BeLike 'UnsafeDestination,*'
        @(Get-ChildItem -Force -LiteralPath $parent).Name | Should -Be @('by-nobody')
    }

    It 'an empty mount point as the destination itself (a tmpfs; root only, to mount): Save, Restore and Receive say InvalidArgument before writing anything, and the mount stays empty' -Skip:(-not $HasMount) {
        # Before the fix the whole image or restore was written beside it and then thrown away: the rename that puts
        # it in place cannot replace a mount point (EBUSY, ImageWriteError at the very end).
        $v = New-FilledEmulator
        $img = New-Dest
        $null = $v.Emulator | Save-MemoryImage -Path $img
        $base = New-Dest
        $null = New-Item -ItemType Directory "$base/mnt"
        chmod 0755 $base
        mount -t tmpfs -o size=1m,mode=0700 softdirty-r6 "$base/mnt"
        try {
            if ($LASTEXITCODE -ne 0) { Set-ItResult -Skipped -Because 'a tmpfs could not be mounted here'; return }
            Get-ErrorId { $v.Emulator | Save-MemoryImage -Path "$base/mnt" } | Should -BeLike 'InvalidArgument,*'
            Get-ErrorId { Restore-MemoryImage -Path $img -Destination "$base/mnt" } | Should -BeLike 'InvalidArgument,*'
            Get-ErrorId { Get-Item -LiteralPath "$img/pages.bin", "$img/index.bin", "$img/manifest.json" | Receive-MemoryImage -Path "$base/mnt" } | Should -BeLike 'InvalidArgument,*'
            @(Get-ChildItem -Force -LiteralPath $base).Name | Should -Be @('mnt')
            @(Get-ChildItem -Force -LiteralPath "$base/mnt").Count | Should -Be 0
            # A folder inside it is fine.
            ($v.Emulator | Save-MemoryImage -Path "$base/mnt/image").Path | Should -Be "$base/mnt/image"
        } finally { umount "$base/mnt" }
    }

    It 'a read-only bind mount as the destination''s folder (root only, to mount): Save, Restore and Receive say ImageWriteError and change nothing' -Skip:(-not $HasMount) {
        $v = New-FilledEmulator
        $img = New-Dest
        $null = $v.Emulator | Save-MemoryImage -Path $img
        $ro = New-Dest
        $null = New-Item -ItemType Directory $ro
        chmod 0755 $ro
        mount --bind $ro $ro
        try {
            mount -o remount,bind,ro $ro
            if ($LASTEXITCODE -ne 0) { Set-ItResult -Skipped -Because 'the bind mount could not be made read-only here'; return }
            Get-ErrorId { $v.Emulator | Save-MemoryImage -Path "$ro/img" } | Should -BeLike 'ImageWriteError,*'
            Get-ErrorId { Restore-MemoryImage -Path $img -Destination "$ro/rest" } | Should -BeLike 'ImageWriteError,*'
            Get-ErrorId { Get-Item -LiteralPath "$img/pages.bin", "$img/index.bin", "$img/manifest.json" | Receive-MemoryImage -Path "$ro/recv" } | Should -BeLike 'ImageWriteError,*'
            @(Get-ChildItem -Force -LiteralPath $ro).Count | Should -Be 0
        } finally { umount $ro }
    }
}
