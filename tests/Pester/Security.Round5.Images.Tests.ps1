#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fifth attack round, on the memory-image side (new cases only; rounds 1-4 are in Workflows.Security.Tests.ps1
# and Security.Round2/3/4.Tests.ps1): memory that changes without a write through the target's own page tables (a memfd
# written by another process or by write(2), a file changed under a private mapping, pages read-faulted in), writes
# followed by mprotect, guard regions, selections wider than the parent's, branches and swapped parents, long and odd destination
# names, a full filesystem, the umask, leftovers of another user and more mappings than open files. Each chain is
# restored and compared with a full image of the same moment. The engine's side: tests/SoftDirty.Engine.Tests/Images/ImageRound5Tests.cs.

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $HasMount = $IsRoot -and [bool](Get-Command mount -CommandType Application -ErrorAction SilentlyContinue) -and [bool](Get-Command umount -CommandType Application -ErrorAction SilentlyContinue)
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    # Write tracking of another process as WriteTracking.Tests.ps1 needs it: PAGEMAP_SCAN, WP_ASYNC, x86-64, ptrace of a child.
    $script:WtSkip = Get-WriteTrackingSkipReason
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r5')
    chmod 0755 $TestDrive $root
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state5'
    # imgtarget (tests/native/imgtarget.c): Start-ImgTarget, Send-ImgTarget, Wait-ImgTargetIdle, Stop-ImgTarget in SoftDirty.TestSupport.psm1.
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # A chain's leaf against a full image of the same moment (Hash: every present page): the same restored bytes,
    # and the chain is valid.
    function Assert-ChainIsTheMoment([string] $Leaf, [scriptblock] $SaveFull, [string] $Because) {
        $full = New-Dest
        $null = & $SaveFull $full
        Test-MemoryImage $Leaf | Should -BeTrue -Because $Because
        $chain = @(Get-RestoredHash $Leaf $root); $moment = @(Get-RestoredHash $full $root)
        # Only what differs, so that a failure names the mapping.
        @(Compare-Object $chain $moment | ForEach-Object { "$(if ($_.SideIndicator -eq '<=') { 'chain' } else { 'full' }): $($_.InputObject)" }) | Should -BeNullOrEmpty -Because $Because
        $chain.Count | Should -Be $moment.Count
    }
    function Get-Left([string] $Folder) { @(Get-ChildItem -Force -LiteralPath $Folder -ErrorAction Ignore).Name }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Memory that changes without a write through the target''s page tables (a real process)' -Tag 'Workflows', 'Security', 'Round5Images' {
    BeforeEach {
        $script:t = Start-ImgTarget
        $script:anon = Send-ImgTarget $t 'map 64'
        $null = Send-ImgTarget $t "fill $anon 64 3"
        $script:shm = (Send-ImgTarget $t 'shm 32') -split ' '   # address, descriptor (hex)
        $null = Send-ImgTarget $t "fill $($shm[0]) 32 5"
        $script:file = Join-Path $root "mapped-$(New-Guid)"
        [IO.File]::WriteAllBytes($file, [byte[]](1..255) * 300)
        $script:fileMap = Send-ImgTarget $t "file $file 16"
        $null = Send-ImgTarget $t "touch $fileMap 0 4"
    }
    AfterEach {
        if ($wtEnabled) { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; $script:wtEnabled = $false }
        Stop-ImgTarget $t
    }

    It '<Case>, -Method <Method>: the increment restores what a full image of that moment restores' -ForEach @(
        foreach ($m in 'WriteProtect', 'Hash') {
            @{ Method = $m; Case = 'a memfd (MAP_SHARED) written by another process through its descriptor' }
            @{ Method = $m; Case = 'a memfd written by the target with write(2), not through its mapping' }
            @{ Method = $m; Case = 'a private read-only file mapping: the file rewritten and new pages read-faulted' }
            @{ Method = $m; Case = 'anonymous pages written, then mprotect read-only' }
            @{ Method = $m; Case = 'anonymous pages written, then mprotect PROT_NONE' }
            @{ Method = $m; Case = 'a parent of one mapping (-Mapping), an increment of all' }
        }
    ) {
        # Before the fix, with WriteProtect, every one of these but the last restored stale pages from a chain that
        # Test-MemoryImage called valid: the written-bits of the target's page tables never saw those changes, and
        # WriteProtect watched writable mappings only. (Soft-dirty misses the same; the emulator's cases below.)
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id; $script:wtEnabled = $true }
        $chain = New-Dest
        $parentArgs = if ($Case -like 'a parent of one mapping*') { @{ Mapping = '*imgtarget-shm*' } } else { @{} }
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method @parentArgs
        switch -Wildcard ($Case) {
            '*another process*' {
                $fs = [IO.File]::Open("/proc/$($t.Id)/fd/$([Convert]::ToInt32($shm[1], 16))", 'Open', 'ReadWrite')
                try { $fs.Position = 2 * 4096; $fs.Write([byte[]](9) * 8192, 0, 8192) } finally { $fs.Dispose() }
            }
            '*write(2)*' { $null = Send-ImgTarget $t "pwrite $($shm[1]) 3 2" }
            '*file mapping*' {
                $fs = [IO.File]::Open($file, 'Open', 'ReadWrite')
                try { $fs.Position = 4096; $fs.Write([byte[]](7) * 4096, 0, 4096) } finally { $fs.Dispose() }
                $null = Send-ImgTarget $t "touch $fileMap 4 4"
            }
            '*read-only' { $null = Send-ImgTarget $t "write $anon 2 3"; $null = Send-ImgTarget $t "protect $anon 64 1" }
            '*PROT_NONE' { $null = Send-ImgTarget $t "write $anon 2 3"; $null = Send-ImgTarget $t "protect $anon 64 0" }
        }
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
        Assert-ChainIsTheMoment "$chain/1" { param($p) Save-MemoryImage -Id $t.Id -Path $p -Method Hash } -Because "$Case ($Method)"
    }

    It 'pages made guard regions (MADV_GUARD_INSTALL), -Method <Method>: a full image is valid without a warning, and the increment restores what a full image of that moment restores' -ForEach @(
        @{ Method = 'Hash' }, @{ Method = 'WriteProtect' }
    ) {
        # Before the fix pagemap's guard markers (SWAP | GUARD) were taken for swapped pages with data: their reads
        # failed, and every image of a process with guard regions warned "could not be read (unmapped during the
        # save)" and was invalid (ImageIncomplete).
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id; $script:wtEnabled = $true }
        $chain = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
        $t.Process.StandardInput.WriteLine("guard $anon 4 4")
        $answer = $t.Process.StandardOutput.ReadLine()
        if ($answer -ne 'OK') { Set-ItResult -Skipped -Because "this kernel has no guard regions (MADV_GUARD_INSTALL, Linux 6.15+): $answer"; return }
        Wait-ImgTargetIdle $t
        $w = $null
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/full" -Method Hash -WarningVariable w -WarningAction SilentlyContinue
        $w | Should -BeNullOrEmpty
        Test-MemoryImage "$chain/full" | Should -BeTrue
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningVariable w -WarningAction SilentlyContinue
        $w | Should -BeNullOrEmpty
        Assert-ChainIsTheMoment "$chain/1" { param($p) Save-MemoryImage -Id $t.Id -Path $p -Method Hash } -Because "guard regions ($Method)"
    }

    It '-Verify with -Method WriteProtect compares every page (a stale duplicate of the WriteProtect case ignored -Verify)' {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $null = Enable-WriteTracking -Id $t.Id; $script:wtEnabled = $true
        $chain = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method WriteProtect
        $verbose = { param($out) @($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) -join ' | ' }
        $trusting = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect -Verbose 4>&1
        & $verbose $trusting | Should -BeLike '*WriteProtect: * candidate pages*'
        $verified = Save-MemoryImage -Id $t.Id -Path "$chain/2" -Parent "$chain/1" -Method WriteProtect -Verify -Verbose 4>&1
        & $verbose $verified | Should -BeLike '*every present page is compared*'
        $scanned = { param($i) [uint64](Get-Content "$chain/$i/manifest.json" -Raw | ConvertFrom-Json).scannedPages }
        & $scanned 2 | Should -BeGreaterOrEqual ((& $scanned 1) + 64) -Because 'the 64 anonymous pages nobody wrote were compared too'
        Assert-ChainIsTheMoment "$chain/2" { param($p) Save-MemoryImage -Id $t.Id -Path $p -Method Hash } -Because 'a verified increment'
    }

    It 'two increments from one parent (a branch), -Method WriteProtect: the second warns that tracking was reset since its parent and is exact' {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $null = Enable-WriteTracking -Id $t.Id; $script:wtEnabled = $true
        $chain = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method WriteProtect
        $null = Send-ImgTarget $t "write $anon 1 2"
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/a" -Parent "$chain/0" -Method WriteProtect
        $null = Send-ImgTarget $t "write $anon 10 1"
        $w = $null
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/b" -Parent "$chain/0" -Method WriteProtect -WarningVariable w -WarningAction SilentlyContinue
        "$w" | Should -BeLike '*reset or restarted since the parent*'
        Assert-ChainIsTheMoment "$chain/b" { param($p) Save-MemoryImage -Id $t.Id -Path $p -Method Hash } -Because 'the branch holds the pages written before its sibling'
    }
}

Describe 'Emulated chains: what soft-dirty cannot see, and layout changes between saves' -Tag 'Workflows', 'Security', 'Round5Images' {
    BeforeAll {
        function New-Victim([switch] $Shared) {
            $e = New-EmulatedProcess -Name r5
            $m = $e | Add-EmulatedMapping -Length 256KB -Shared:$Shared
            $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
            @{ Emulator = $e; Mapping = $m }
        }
    }

    It '<Case>, -Method <Method>: the increment restores what a full image of that moment restores' -ForEach @(
        foreach ($m in 'SoftDirty', 'WriteProtect') {
            @{ Method = $m; Case = 'a MAP_SHARED mapping written by a fork child (Copy-EmulatedProcess)' }
            @{ Method = $m; Case = 'a parent of one mapping (-Mapping), an increment of all' }
            @{ Method = $m; Case = 'pages discarded (MADV_DONTNEED) and read again' }
            @{ Method = $m; Case = 'the mapping replaced by a new one at the same address (MAP_FIXED)' }
            @{ Method = $m; Case = 'a written region moved (mremap)' }
            @{ Method = $m; Case = 'pages written, then mprotect PROT_NONE' }
            @{ Method = $m; Case = 'a private mapping written by a fork child only' }
            @{ Method = $m; Case = 'written pages made guard regions (MADV_GUARD_INSTALL)' }
            @{ Method = $m; Case = 'written pages paged out (MADV_PAGEOUT) and one written again' }
            @{ Method = $m; Case = 'referenced bits cleared (Clear-PageReference -Type All) after writes' }
        }
    ) {
        # Before the fix, with SoftDirty, the first two restored stale or missing pages from a valid chain: a page of
        # shared memory written by another process is soft-dirty there, not here; pages outside the parent's
        # selection were never saved, written since or not.
        $v = New-Victim -Shared:($Case -like 'a MAP_SHARED*')
        $e = $v.Emulator; $m = $v.Mapping
        $other = if ($Case -like 'a parent of one mapping*') { $o = $e | Add-EmulatedMapping -Length 64KB -Path /data/r5; $e | Write-EmulatedMemory -Address $o.Start -Length $o.Size; $o }
        $child = if ($Case -like '*fork child*') { $e | Copy-EmulatedProcess }
        $chain = New-Dest
        $parentArgs = if ($other) { @{ Mapping = '/data/r5' } } else { @{} }
        $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method $Method -Confirm:$false @parentArgs
        switch -Wildcard ($Case) {
            '*fork child*' { $child | Write-EmulatedMemory -Address $m.Start -Length 8KB -Value 3 }
            '*DONTNEED*' { $e | Invoke-EmulatedMadvise -Address $m.Start -Length 16KB -Advice DontNeed; $null = $e | Read-EmulatedMemory -Address $m.Start -Length 16KB }
            '*MAP_FIXED*' { $null = $e | Add-EmulatedMapping -Address $m.Start -Length 32KB -Fixed; $null = $e | Read-EmulatedMemory -Address $m.Start -Length 8KB }
            '*mremap*' { $e | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value 1; $null = $e | Move-EmulatedMapping -Address $m.Start -Length $m.Size -NewAddress ($m.End + 1MB) }
            '*PROT_NONE' { $e | Write-EmulatedMemory -Address $m.Start -Length 8KB -Value 5; $e | Set-EmulatedProtection -Address $m.Start -Length $m.Size -Protection None }
            '*MADV_PAGEOUT*' {
                $e | Write-EmulatedMemory -Address $m.Start -Length 8KB -Value 2
                $e | Invoke-EmulatedMadvise -Address $m.Start -Length $m.Size -Advice PageOut
                $e | Write-EmulatedMemory -Address ($m.Start + 4KB) -Length 4KB -Value 8
            }
            '*Clear-PageReference*' { $e | Write-EmulatedMemory -Address $m.Start -Length 8KB -Value 4; Clear-PageReference -Emulator $e -Type All -Confirm:$false }
            '*guard regions*' { $e | Write-EmulatedMemory -Address $m.Start -Length 8KB -Value 6; $e | Invoke-EmulatedMadvise -Address $m.Start -Length 16KB -Advice GuardInstall }
        }
        $null = Save-MemoryImage -Emulator $e -Path "$chain/1" -Parent "$chain/0" -Method $Method -Confirm:$false -WarningAction SilentlyContinue
        Assert-ChainIsTheMoment "$chain/1" { param($p) Save-MemoryImage -Emulator $e -Path $p -Method Hash -Confirm:$false } -Because "$Case ($Method)"
    }

    It 'two increments from one parent (a branch), -Method SoftDirty: the second warns and holds the pages written before its sibling' {
        $v = New-Victim; $e = $v.Emulator; $m = $v.Mapping
        $chain = New-Dest
        $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method SoftDirty -Confirm:$false
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value 7
        $null = Save-MemoryImage -Emulator $e -Path "$chain/a" -Parent "$chain/0" -Method SoftDirty -Confirm:$false
        $e | Write-EmulatedMemory -Address ($m.Start + 8KB) -Length 4KB -Value 9
        $w = $null
        $null = Save-MemoryImage -Emulator $e -Path "$chain/b" -Parent "$chain/0" -Method SoftDirty -Confirm:$false -WarningVariable w -WarningAction SilentlyContinue
        "$w" | Should -BeLike '*cleared since the parent*comparing every page*'
        Assert-ChainIsTheMoment "$chain/b" { param($p) Save-MemoryImage -Emulator $e -Path $p -Method Hash -Confirm:$false } -Because 'a branch'
    }

    It 'a middle image re-saved (another valid image of the same process under the parent''s name): Test, Get, Restore and Save say ImageParentMismatch and create nothing' {
        $v = New-Victim; $e = $v.Emulator; $m = $v.Mapping
        $chain = New-Dest
        $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method SoftDirty -Confirm:$false
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value 1
        $null = Save-MemoryImage -Emulator $e -Path "$chain/1" -Parent "$chain/0" -Method SoftDirty -Confirm:$false
        $e | Write-EmulatedMemory -Address ($m.Start + 4KB) -Length 4KB -Value 2
        $null = Save-MemoryImage -Emulator $e -Path "$chain/2" -Parent "$chain/1" -Method SoftDirty -Confirm:$false
        Rename-Item "$chain/1" "$chain/1-first"
        $null = Save-MemoryImage -Emulator $e -Path "$chain/1" -Parent "$chain/0" -Method Hash -Confirm:$false
        $r = Test-MemoryImage "$chain/2" -Detailed
        $r.Valid | Should -BeFalse
        $r.Problems[0].Error | Should -Be 'ImageParentMismatch'
        $r.Problems[0].Message | Should -BeLike '*not the image this one was taken against*'
        Get-ErrorId { Get-MemoryImage "$chain/2" } | Should -Be 'ImageParentMismatch,SoftDirty.Commands.GetMemoryImageCommand'
        Get-ErrorId { Restore-MemoryImage "$chain/2" "$chain/out" } | Should -Be 'ImageParentMismatch,SoftDirty.Commands.RestoreMemoryImageCommand'
        Get-ErrorId { Save-MemoryImage -Emulator $e -Path "$chain/3" -Parent "$chain/2" -Confirm:$false } | Should -Be 'ImageParentMismatch,SoftDirty.Commands.SaveMemoryImageCommand'
        Get-Left $chain | Sort-Object | Should -Be @('0', '1', '1-first', '2')
        # The first image back in place: the chain is whole again.
        Remove-Item -Recurse "$chain/1"; Rename-Item "$chain/1-first" "$chain/1"
        Test-MemoryImage "$chain/2" | Should -BeTrue
    }

    It 'a -Parent given relative to the current location, and the chain moved afterwards, stay valid and exact' {
        $v = New-Victim; $e = $v.Emulator; $m = $v.Mapping
        $chain = New-Item -ItemType Directory (New-Dest)
        $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method SoftDirty -Confirm:$false
        $e | Write-EmulatedMemory -Address $m.Start -Length 12KB -Value 4
        Push-Location $chain
        try { $null = Save-MemoryImage -Emulator $e -Path '1' -Parent './0' -Method SoftDirty -Confirm:$false } finally { Pop-Location }
        (Get-Content "$chain/1/manifest.json" -Raw | ConvertFrom-Json).parent.path | Should -Be '../0'
        $moved = New-Dest
        Move-Item $chain $moved
        Assert-ChainIsTheMoment "$moved/1" { param($p) Save-MemoryImage -Emulator $e -Path $p -Method Hash -Confirm:$false } -Because 'links are relative'
    }

    It 'a link to the newest increment (a "latest" link) works as -Parent and for Test and Restore, and so does a child saved through a linked folder' {
        # Before the fix a parent link was resolved against the path the image was opened by: through a link to an
        # increment, its own parent ("../0") was looked for beside the link (ImageParentMismatch, no such image).
        $v = New-Victim; $e = $v.Emulator; $m = $v.Mapping
        $real = New-Item -ItemType Directory (Join-Path (New-Dest) 'deeper/chain') -Force
        $null = Save-MemoryImage -Emulator $e -Path "$real/0" -Method SoftDirty -Confirm:$false
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value 1
        $null = Save-MemoryImage -Emulator $e -Path "$real/1" -Parent "$real/0" -Method SoftDirty -Confirm:$false
        $latest = New-Dest
        $null = New-Item -ItemType SymbolicLink -Path $latest -Target "$real/1"
        Test-MemoryImage $latest | Should -BeTrue
        $e | Write-EmulatedMemory -Address ($m.Start + 4KB) -Length 4KB -Value 2
        $null = Save-MemoryImage -Emulator $e -Path "$real/2" -Parent $latest -Method SoftDirty -Confirm:$false
        (Get-Content "$real/2/manifest.json" -Raw | ConvertFrom-Json).parent.path | Should -Be '../1'
        $linkedFolder = New-Dest
        $null = New-Item -ItemType SymbolicLink -Path $linkedFolder -Target $real
        $e | Write-EmulatedMemory -Address ($m.Start + 8KB) -Length 4KB -Value 3
        $null = Save-MemoryImage -Emulator $e -Path "$linkedFolder/3" -Parent "$real/2" -Method SoftDirty -Confirm:$false
        Test-MemoryImage "$real/3" | Should -BeTrue
        Assert-ChainIsTheMoment "$linkedFolder/3" { param($p) Save-MemoryImage -Emulator $e -Path $p -Method Hash -Confirm:$false } -Because 'links to images and to their folder'
    }

    It 'a chain 60 increments deep (SoftDirty) is valid and restores what a full image of that moment restores' {
        $v = New-Victim; $e = $v.Emulator; $m = $v.Mapping
        $chain = New-Dest
        $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method SoftDirty -Confirm:$false
        for ($i = 1; $i -le 60; $i++) {
            $e | Write-EmulatedMemory -Address ($m.Start + ($i % 64) * 4KB) -Length 4KB -Value ($i % 250)
            $null = Save-MemoryImage -Emulator $e -Path "$chain/$i" -Parent "$chain/$($i - 1)" -Method SoftDirty -Confirm:$false
        }
        (Get-MemoryImage "$chain/60")[-1].Depth | Should -Be 60
        Assert-ChainIsTheMoment "$chain/60" { param($p) Save-MemoryImage -Emulator $e -Path $p -Method Hash -Confirm:$false } -Because 'a deep chain'
    }
}

Describe 'Destination names, a full filesystem, the umask and leftovers of another user' -Tag 'Workflows', 'Security', 'Round5Images' {
    BeforeAll {
        $script:src = New-FilledEmulator 64
        $script:img = "$root/img"
        $null = Save-MemoryImage -Emulator $src.Emulator -Path $img -Confirm:$false
        $script:imageFiles = { Get-Item "$img/pages.bin", "$img/index.bin", "$img/manifest.json" }
        $script:Ops = [ordered]@{
            Save = { param($p) Save-MemoryImage -Emulator $src.Emulator -Path $p -Confirm:$false }
            Restore = { param($p) Restore-MemoryImage $img $p }
            Receive = { param($p) & $imageFiles | Receive-MemoryImage -Path $p }
        }
    }

    It 'a destination name of <Label> (legal) is saved, restored and received under exactly that name, leaving nothing else' -ForEach @(
        @{ Label = '214 bytes'; Name = 'c' * 214 }
        @{ Label = '255 bytes (NAME_MAX)'; Name = 'd' * 255 }
        @{ Label = '80 CJK characters (240 bytes of UTF-8)'; Name = [string][char]0x4e2d * 80 }
        @{ Label = 'a newline'; Name = "new`nline" }
        @{ Label = 'a tab and a trailing space'; Name = "tab`there " }
        @{ Label = 'a right-to-left override'; Name = "x$([char]0x202e)gpj.exe" }
        @{ Label = 'shell syntax'; Name = '$(id);`id`' }
    ) {
        # Before the fix a name of 214-255 bytes failed with ImageWriteError (File name too long): the private folder
        # .NAME.partial-GUID was 42 bytes longer than the name.
        foreach ($op in $Ops.Keys) {
            $parent = New-Item -ItemType Directory (New-Dest)
            $dest = Join-Path $parent $Name
            Get-ErrorId { & $Ops[$op] $dest } | Should -Be 'none' -Because "$op of a name of $Label"
            Get-Left $parent | Should -Be $Name -Because $op
            if ($op -eq 'Restore') { Test-Path -LiteralPath (Join-Path $dest 'mappings.json') | Should -BeTrue }
            else { Test-MemoryImage $dest | Should -BeTrue -Because $op }
        }
    }

    It 'a destination name of 256 bytes (past NAME_MAX) is a clean ImageWriteError for each, leaving nothing' {
        foreach ($op in $Ops.Keys) {
            $parent = New-Item -ItemType Directory (New-Dest)
            $id = Get-ErrorId { & $Ops[$op] (Join-Path $parent ('e' * 256)) }
            $id | Should -BeLike 'ImageWriteError,*' -Because $op
            Get-Left $parent | Should -BeNullOrEmpty
        }
    }

    It 'a filesystem that fills up (a 1 MiB tmpfs; root only, to mount it): Save, Restore and Receive say ImageWriteError naming what they wrote, leave the folder as it was, and it takes a restore that fits afterwards' -Skip:(-not $HasMount) {
        $mnt = New-Item -ItemType Directory (New-Dest)
        mount -t tmpfs -o size=1m,mode=0755 tmpfs $mnt
        try {
            $null = New-Item -ItemType Directory "$mnt/dest"
            $big = New-FilledEmulator 1024   # 4 MiB
            $bigImg = New-Dest
            $null = Save-MemoryImage -Emulator $big.Emulator -Path $bigImg -Confirm:$false
            $errors = @{}
            foreach ($case in @(
                @{ Name = 'restore into an empty folder'; Run = { Restore-MemoryImage $bigImg "$mnt/dest" } }
                @{ Name = 'restore into a new folder'; Run = { Restore-MemoryImage $bigImg "$mnt/new" } }
                @{ Name = 'save'; Run = { Save-MemoryImage -Emulator $big.Emulator -Path "$mnt/img" -Confirm:$false } }
                @{ Name = 'receive'; Run = { Get-Item "$bigImg/pages.bin", "$bigImg/index.bin", "$bigImg/manifest.json" | Receive-MemoryImage -Path "$mnt/recv" } }
            )) {
                $e = $null
                try { $null = & $case.Run -ErrorAction Stop } catch { $e = $_ }
                $e | Should -Not -BeNullOrEmpty -Because $case.Name
                ($e.FullyQualifiedErrorId -split ',')[0] | Should -Be 'ImageWriteError' -Because $case.Name
                $e.Exception.Message | Should -BeLike "*$mnt*No space left on device*" -Because $case.Name
                $e.Exception.Message | Should -Not -BeLike '*`[Unknown`]*' -Because "$($case.Name): the message names the file"
                Get-Left $mnt | Should -Be 'dest' -Because "$($case.Name) leaves nothing (no partial folder of process memory)"
                Get-Left "$mnt/dest" | Should -BeNullOrEmpty
            }
            $null = Restore-MemoryImage $img "$mnt/dest"
            Test-Path "$mnt/dest/mappings.json" | Should -BeTrue
        } finally { umount $mnt }
    }

    It 'Receive-MemoryImage under umask 0777 makes its folder 0700 and its files 0600 (and the image reads back)' {
        $d = New-Item -ItemType Directory (New-Dest)
        $command = "Import-Module '$env:SOFTDIRTY_MODULE'; Get-Item '$img/pages.bin', '$img/index.bin', '$img/manifest.json' | Receive-MemoryImage -Path '$d/new/recv' -ErrorAction Stop | Out-Null; 'CHILD OK'"
        $pwsh = Get-PwshCommandLine
        $out = sh -c 'umask 0777; exec "$@"' sh @pwsh -NoProfile -NonInteractive -Command $command 2>&1
        ($out -join "`n") | Should -BeLike '*CHILD OK*'
        foreach ($dir in "$d/new", "$d/new/recv") { (Get-Item $dir).UnixMode | Should -Be 'drwx------' -Because $dir }
        foreach ($f in Get-ChildItem "$d/new/recv") { $f.UnixMode | Should -Be '-rw-------' -Because $f.Name }
        Test-MemoryImage "$d/new/recv" | Should -BeTrue
    }

    It 'an image of more mappings than the open-file limit (600 mappings, ulimit -n 256) restores, whole and exact' {
        # Before the fix the flat-file restore held one open file per mapping: a process of more mappings than
        # RLIMIT_NOFILE (a JVM or a browser easily has thousands; max_map_count is 65530) could not be restored
        # (ImageWriteError, Too many open files).
        $e = New-EmulatedProcess -Name many
        for ($i = 0; $i -lt 600; $i++) {
            # Alternate protections, so that the emulator keeps 600 mappings rather than merging neighbours.
            $m = $e | Add-EmulatedMapping -Length 4KB -Protection $(if ($i % 2) { 'Read, Write' } else { 'Read' })
            if ($i % 2) { $e | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value ($i % 251) }
        }
        $many = New-Dest
        $null = Save-MemoryImage -Emulator $e -Path $many -Confirm:$false
        (Get-Content "$many/manifest.json" -Raw | ConvertFrom-Json).mappings.Count | Should -BeGreaterOrEqual 600
        $out = New-Dest
        $command = "Import-Module '$env:SOFTDIRTY_MODULE'; `$null = Restore-MemoryImage '$many' '$out' -ErrorAction Stop; 'CHILD OK'"
        $pwsh = Get-PwshCommandLine
        $said = sh -c 'ulimit -n 256 && exec "$@"' sh @pwsh -NoProfile -NonInteractive -Command $command 2>&1
        ($said -join "`n") | Should -BeLike '*CHILD OK*'
        $hashes = Get-ChildItem $out -Filter *.bin | Sort-Object Name | ForEach-Object { "$($_.Name)=$((Get-FileHash $_).Hash)" }
        @($hashes).Count | Should -BeGreaterOrEqual 600
        $hashes | Should -Be (Get-RestoredHash $many $root)
    }

    It 'a leftover partial folder of another user next to the destination (named as the module names its own; root only, to chown it) is neither used nor removed' -Skip:(-not $IsRoot) {
        $parent = New-Item -ItemType Directory (New-Dest)
        $planted = New-Item -ItemType Directory (Join-Path $parent ".out.partial-$([guid]::NewGuid().ToString('n'))")
        'theirs' | Set-Content "$planted/pages.bin"
        chown -R 65534:65534 $planted
        foreach ($op in $Ops.Keys) {
            Remove-Item -Recurse -Force "$parent/out" -ErrorAction SilentlyContinue
            Get-ErrorId { & $Ops[$op] "$parent/out" } | Should -Be 'none' -Because $op
            Get-Left $parent | Sort-Object | Should -Be (@('out', $planted.Name) | Sort-Object) -Because $op
            Get-Content "$planted/pages.bin" | Should -Be 'theirs'
            (stat -c '%u' $planted) | Should -Be '65534'
        }
    }
}
