# Memory images of a real process: chains, restore, verification, permissions, atomicity under SIGKILL.
Describe 'Memory images' -Tag 'Workflows' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $t = Start-WfTarget
        $r = New-WfRegion $t 512
        $root = Join-Path $TestDrive 'images'
        $null = New-Item -ItemType Directory $root
        function Restored([string] $Image, [string] $Into) {
            Restore-MemoryImage -Path $Image -Destination $Into | Out-Null
            Get-ChildItem (Join-Path $Into '*.bin') | Sort-Object Name | ForEach-Object { '{0} {1}' -f $_.Name, (Get-FileHash $_ -Algorithm SHA256).Hash }
        }
    }
    AfterAll { Stop-WfTarget $t }

    It 'restores full + increments to exactly the bytes of a full image taken at the same moment (real frozen process)' {
        $full = Save-MemoryImage -Id $t.Id -Path "$root/c0" -Freeze -Method Hash
        $full.Kind | Should -Be 'Full'
        $full.DataPages | Should -BeGreaterOrEqual 512
        $null = Send-WfTarget $t "write $($r.Hex) 3 10"
        $null = Send-WfTarget $t "same $($r.Hex) 50 10"
        $i1 = Save-MemoryImage -Id $t.Id -Path "$root/c1" -Parent "$root/c0" -Freeze
        $i1.Kind | Should -Be 'Incremental'
        $i1.DataPages | Should -BeGreaterOrEqual 10
        $i1.DataPages | Should -BeLessThan 60      # the identical rewrites are not stored
        $i1.InheritedPages | Should -BeGreaterOrEqual 500
        $null = Send-WfTarget $t "zero $($r.Hex) 200 4"
        $null = Send-WfTarget $t "hot $($r.Hex) 300 8 500"
        Start-Sleep -Milliseconds 100
        kill -STOP $t.Id
        try {
            Start-Sleep -Milliseconds 50
            $i2 = Save-MemoryImage -Id $t.Id -Path "$root/c2" -Parent "$root/c1"
            $i2.ZeroPages | Should -BeGreaterOrEqual 4
            $null = Save-MemoryImage -Id $t.Id -Path "$root/f2"
        } finally { kill -CONT $t.Id; $null = Send-WfTarget $t 'cold' }
        $chain = Restored "$root/c2" "$root/rc"
        $flat = Restored "$root/f2" "$root/rf"
        $chain.Count | Should -BeGreaterThan 3
        $chain | Should -Be $flat
        Get-ProcessState $t.Id | Should -Not -Be 'T'
    }

    It 'saves a WriteProtect image of a child of this PowerShell (.NET still sees it running), and refuses a second image in one directory' {
        $support = Get-SoftDirtySupport -Id $t.Id
        if ($support.WriteProtect) {
            (Save-MemoryImage -Id $t.Id -Path "$root/wp" -Method WriteProtect -Freeze -ErrorAction Stop).Method | Should -Be 'WriteProtect'
            $t.Process.HasExited | Should -BeFalse
        }
        { Save-MemoryImage -Id $t.Id -Path "$root/c0" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageExists,SoftDirty.Commands.SaveMemoryImageCommand'
    }

    It 'lists a chain with its statistics' {
        $c = @(Get-MemoryImage "$root/c2")
        $c.Depth | Should -Be 0, 1, 2
        $c.Kind | Should -Be 'Full', 'Incremental', 'Incremental'
        $c[1].ParentPath | Should -Be $c[0].Path
        $c[0].ProcessId | Should -Be $t.Id
        $c[2].FileBytes | Should -BeGreaterThan 0
    }

    It 'keeps secrets private: directories 0700, files 0600' {
        [int](Get-Item "$root/c1").UnixFileMode | Should -Be 448   # 0700
        foreach ($f in Get-ChildItem "$root/c1") { [int]$f.UnixFileMode | Should -Be 384 }   # 0600
        Test-MemoryImage "$root/c2" | Should -BeTrue
        # A restore is as private as the image: the directory 0700, every file (mappings.json included) 0600.
        $null = Restore-MemoryImage "$root/c2" "$root/private"
        [int](Get-Item "$root/private").UnixFileMode | Should -Be 448
        foreach ($f in Get-ChildItem "$root/private") { [int]$f.UnixFileMode | Should -Be 384 }
        Test-Path "$root/private/mappings.json" | Should -BeTrue
    }

    It 'names the file and offset of a corrupt page' {
        # A copy of the chain (parent links are relative), with one byte of the full image's page 7 flipped.
        $null = New-Item -ItemType Directory "$root/x"; Copy-Item "$root/c0", "$root/c1" "$root/x" -Recurse
        $pages = Join-Path $root 'x/c0/pages.bin'
        $fs = [IO.File]::Open($pages, 'Open', 'ReadWrite'); $fs.Position = 4096 * 7 + 1; $b = $fs.ReadByte(); $fs.Position--; $fs.WriteByte($b -bxor 0x5A); $fs.Dispose()
        $res = Test-MemoryImage "$root/x/c1" -Detailed
        $res.Valid | Should -BeFalse
        $res.Problems[0].Error | Should -Be 'ImageCorrupt'
        $res.Problems[0].File | Should -Be $pages
        $res.Problems[0].Offset | Should -Be (4096 * 7)
        Test-MemoryImage "$root/x/c1" | Should -BeFalse
        if (Test-MemoryImage "$root/x/c1") { throw 'a corrupt chain tested true' }
        $err = $null
        Restore-MemoryImage "$root/x/c1" "$root/rx" -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].Exception.Message | Should -BeLike "*$pages at offset 28672*"
    }

    It 'says a truncated file is incomplete, at the offset where it ends' {
        Copy-Item "$root/c0" "$root/t0" -Recurse
        $pages = Join-Path $root 't0/pages.bin'
        $fs = [IO.File]::Open($pages, 'Open', 'ReadWrite'); $fs.SetLength(4096 * 3 + 10); $fs.Dispose()
        $p = (Test-MemoryImage "$root/t0" -Detailed).Problems[0]
        $p.Error | Should -Be 'ImageIncomplete'
        $p.Offset | Should -Be (4096 * 3 + 10)
        $p.Message | Should -BeLike "*pages.bin at offset 12298*truncated*"
    }

    It 'refuses a parent that is not the image the increment was taken against' {
        # The increment c1 next to another full image under its parent's name.
        $null = New-Item -ItemType Directory "$root/m"; Copy-Item "$root/f2" "$root/m/c0" -Recurse; Copy-Item "$root/c1" "$root/m/m1" -Recurse
        $p = (Test-MemoryImage "$root/m/m1" -Detailed).Problems[0]
        $p.Error | Should -Be 'ImageParentMismatch'
        $p.Message | Should -BeLike '*m1/manifest.json*not the image this one was taken against*'
        { Get-MemoryImage "$root/m/m1" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageParentMismatch,SoftDirty.Commands.GetMemoryImageCommand'
        { Save-MemoryImage -Id $t.Id -Path "$root/m2" -Parent "$root/m/m1" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageParentMismatch,SoftDirty.Commands.SaveMemoryImageCommand'
        # Editing the link instead is caught by the manifest's checksum.
        Copy-Item "$root/c1" "$root/e1" -Recurse
        (Get-Content "$root/e1/manifest.json" -Raw) -replace '"path": "../c0"', '"path": "../f2"' | Set-Content "$root/e1/manifest.json"
        $e = (Test-MemoryImage "$root/e1" -Detailed).Problems[0]
        $e.Error | Should -Be 'ImageCorrupt'
        $e.Message | Should -BeLike '*e1/manifest.json*checksum mismatch*'
        Test-Path "$root/m2" | Should -BeFalse
    }

    It 'SIGKILL of a saving pwsh at random points leaves the chain before valid, and no image or only a complete one at the destination' {
        $big = New-WfRegion $t 32768 7     # 128 MiB, so a save lasts long enough to be cut
        $base = "$root/k0"
        $null = Save-MemoryImage -Id $t.Id -Path $base
        $pwsh = Join-Path $PSHOME 'pwsh'
        $cut = 0
        $outcomes = @()
        # At least three kills; more (up to eight) until one lands inside a save.
        for ($i = 1; $i -le 8 -and ($i -le 3 -or $cut -eq 0); $i++) {
            $dest = "$root/kill$i"
            $script = "Import-Module '$env:SOFTDIRTY_MODULE'; [Console]::Out.WriteLine('GO'); [Console]::Out.Flush(); `$null = Save-MemoryImage -Id $($t.Id) -Path '$dest' -Parent '$base' -Method Hash -Freeze; [Console]::Out.WriteLine('DONE')"
            $psi = [Diagnostics.ProcessStartInfo]::new($pwsh, @('-NoProfile', '-NonInteractive', '-Command', $script))
            $psi.RedirectStandardOutput = $true
            $child = [Diagnostics.Process]::Start($psi)
            $child.StandardOutput.ReadLine() | Should -Be 'GO'
            # Once the save has begun writing (its private folder exists), a random delay, then SIGKILL.
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while (-not (Get-ChildItem -Force $root -Filter ".kill$i.partial-*") -and -not (Test-Path $dest) -and -not $child.HasExited -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 5 }
            $delay = Get-Random -Minimum 0 -Maximum 150
            Start-Sleep -Milliseconds $delay
            kill -KILL $child.Id
            $child.WaitForExit()
            Test-MemoryImage $base | Should -BeTrue
            # -Freeze attached with ptrace: the kernel resumed the target when the saver died.
            $deadline = [DateTime]::UtcNow.AddSeconds(5)
            while ((Get-ProcessState $t.Id) -in 't', 'T' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
            Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
            if (Test-Path $dest) { Test-MemoryImage $dest | Should -BeTrue; $outcomes += "kill $i after $delay ms: the save had finished" }
            else {
                $cut++
                $outcomes += "kill $i after $delay ms: no image (the partial folder is hidden)"
                # The destination is free for the next save.
                $null = Save-MemoryImage -Id $t.Id -Path $dest -Parent $base -Method Hash
                Test-MemoryImage $dest | Should -BeTrue
            }
            Get-ChildItem -Force $root -Filter ".kill$i.partial-*" | Remove-Item -Recurse -Force
        }
        $cut | Should -BeGreaterThan 0 -Because "at least one kill should land inside a save of 128 MiB ($($outcomes -join '; '))"
    }
}
