#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Get-MemoryMapping against a real child process whose mappings each test makes.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $t = Start-TestTarget
    $ps = $t.PageSize
    $dir = Join-Path ([IO.Path]::GetTempPath()) "softdirty mm $PID"
    $null = New-Item -ItemType Directory $dir -Force
    function Get-Vma([uint64] $Address) { @(Get-MemoryMapping -Id $t.Id -Address $Address) }
}

AfterAll {
    Stop-TestTarget -All
    Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Get-MemoryMapping' {
    It 'shows a private anonymous mapping with its exact bounds, size, permissions and kind' {
        $a = $t.Map(5)
        $v = Get-Vma $a
        $v | Should -HaveCount 1
        $v[0] | Should -BeOfType ([SoftDirty.MemoryMapping])
        $v[0].ProcessId | Should -Be $t.Id
        $v[0].Start | Should -Be $a
        $v[0].End | Should -Be ($a + 5 * $ps)
        $v[0].Size | Should -Be (5 * $ps)
        $v[0].Permissions | Should -Be 'rw-p'
        $v[0].Shared | Should -BeFalse
        $v[0].Kind | Should -Be 'Anonymous'
        $v[0].Path | Should -Be ''
    }

    It 'shows a read-only mapping as r--p' {
        $v = Get-Vma ($t.Map(2, 'anon ro'))
        $v[0].Permissions | Should -Be 'r--p'
        $v[0].VmFlags | Should -Contain 'rd'
        $v[0].VmFlags | Should -Not -Contain 'wr'
    }

    It 'shows a shared anonymous mapping as SharedAnonymous, rw-s' {
        $s = $t.Map(3, 'shared')
        $v = Get-Vma $s
        $v[0].Start | Should -Be $s
        $v[0].Size | Should -Be (3 * $ps)
        $v[0].Permissions | Should -Be 'rw-s'
        $v[0].Shared | Should -BeTrue
        $v[0].Kind | Should -Be 'SharedAnonymous'
        $v[0].VmFlags | Should -Contain 'sh'
    }

    It 'shows a file mapping whose path has spaces with its full path, inode and kind File' {
        $file = Join-Path $dir 'a file with spaces.bin'
        $f = $t.Map(4, "file `"$file`"")
        $v = Get-Vma $f
        $v[0].Kind | Should -Be 'File'
        $v[0].Path | Should -Be $file
        $v[0].Deleted | Should -BeFalse
        $v[0].Permissions | Should -Be 'rw-s'
        $v[0].Size | Should -Be (4 * $ps)
        $v[0].Inode | Should -Be ([uint64](& stat -c %i $file))
        # -Mapping finds it by a wildcard on that path.
        $byName = @(Get-MemoryMapping -Id $t.Id -Mapping '*a file with spaces*')
        $byName | Should -HaveCount 1
        $byName[0].Start | Should -Be $f
    }

    It 'shows a mapped file that was deleted with Deleted = $true and the path without " (deleted)"' {
        $file = Join-Path $dir 'doomed file.bin'
        $f = $t.Map(2, "file `"$file`"")
        $t.Send("unlink `"$file`"")
        Test-Path -LiteralPath $file | Should -BeFalse
        $v = Get-Vma $f
        $v[0].Deleted | Should -BeTrue
        $v[0].Path | Should -Be $file
        $v[0].Kind | Should -Be 'File'
    }

    It 'counts Rss, Anonymous and PrivateDirty of the pages the child writes' {
        $a = $t.Map(8)
        (Get-Vma $a)[0].Rss | Should -Be 0
        $t.Send("write $(Hex $a) 1 3")
        $v = (Get-Vma $a)[0]
        $v.Rss | Should -Be (3 * $ps)
        $v.Anonymous | Should -Be (3 * $ps)
        $v.PrivateDirty | Should -Be (3 * $ps)
        $v.Swap | Should -Be 0
        $t.Send("write $(Hex $a) 6 2")
        (Get-Vma $a)[0].Rss | Should -Be (5 * $ps)
    }

    It 'reports VmFlags, and SoftDirty exactly when VmFlags has sd' {
        $all = Get-MemoryMapping -Id $t.Id
        foreach ($m in $all) {
            $m.VmFlags.Count | Should -BeGreaterThan 0
            $m.SoftDirty | Should -Be ($m.VmFlags -contains 'sd')
        }
        ($all | Where-Object Path -EQ '[stack]').VmFlags | Should -Contain 'gd'
    }

    It 'splits one VMA into three when the middle is mprotect''ed' {
        $a = $t.Map(6)
        $t.Send("mprotect $(Hex ($a + 2 * $ps)) 2 ro")
        $v = @(Get-MemoryMapping -Id $t.Id | Where-Object { $_.Start -ge $a -and $_.End -le $a + 6 * $ps })
        $v | Should -HaveCount 3
        ($v | ForEach-Object { '{0:x}-{1:x} {2}' -f ($_.Start - $a), ($_.End - $a), $_.Permissions }) |
            Should -Be ('0-{0:x} rw-p' -f (2 * $ps)), ('{0:x}-{1:x} r--p' -f (2 * $ps), (4 * $ps)), ('{0:x}-{1:x} rw-p' -f (4 * $ps), (6 * $ps))
        # And merges them again when the protection is restored.
        $t.Send("mprotect $(Hex ($a + 2 * $ps)) 2 rw")
        (Get-Vma $a)[0].End | Should -Be ($a + 6 * $ps)
    }

    It 'drops a mapping once it is unmapped' {
        $a = $t.Map(2)
        Get-Vma $a | Should -HaveCount 1
        $t.Send("unmap $(Hex $a) 2")
        Get-Vma $a | Should -HaveCount 0
    }

    It 'classifies [heap], [stack] and [vdso]' -ForEach @(
        @{ Name = '[heap]'; Kind = 'Heap' }, @{ Name = '[stack]'; Kind = 'Stack' }, @{ Name = '[vdso]'; Kind = 'Vdso' }
    ) {
        $v = @(Get-MemoryMapping -Id $t.Id -Mapping $Name)
        $v | Should -HaveCount 1
        $v[0].Kind | Should -Be $Kind
        $v[0].Path | Should -Be $Name
    }

    It 'lists the same mappings as /proc/PID/maps, in order' {
        $expected = Get-Content "/proc/$($t.Id)/maps" | ForEach-Object { ($_ -split ' ')[0] }
        $got = Get-MemoryMapping -Id $t.Id | ForEach-Object { '{0:x}-{1:x}' -f $_.Start, $_.End }
        # Hex widths: maps pads to at least 8 digits.
        $got | Should -Be ($expected | ForEach-Object { $s, $e = $_ -split '-'; '{0:x}-{1:x}' -f [Convert]::ToUInt64($s, 16), [Convert]::ToUInt64($e, 16) })
    }

    It 'binds Id from Get-Process' {
        @(Get-Process -Id $t.Id | Get-MemoryMapping -Mapping '[stack]') | Should -HaveCount 1
    }

    It 'takes a -Mapping name that is no valid wildcard pattern literally instead of failing' {
        { Get-MemoryMapping -Id $t.Id -Mapping '[vvar*' -ErrorAction Stop } | Should -Not -Throw
        @(Get-MemoryMapping -Id $t.Id -Mapping '[st*') | Should -HaveCount 0
        @(Get-MemoryMapping -Id $t.Id -Mapping '[[]stack]') | Should -HaveCount 1
    }
}
