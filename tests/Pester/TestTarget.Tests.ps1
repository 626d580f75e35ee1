#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The native test target itself: the other suites trust what it says it did.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $PSDefaultParameterValues = @{ 'Get-PageMap:WarningAction' = 'SilentlyContinue' }
    $t = Start-TestTarget
    $ps = $t.PageSize
}

AfterAll {
    Stop-TestTarget -All
}

Describe 'sdtarget' {
    It 'says READY with its pid and the system page size' {
        $t.Id | Should -Be $t.Process.Id
        $t.PageSize | Should -Be ([Environment]::SystemPageSize)
    }

    It 'answers ERR (and keeps serving) for <Name>' -ForEach @(
        @{ Name = 'an unknown command'; Command = 'frobnicate' }
        @{ Name = 'a write to an unmapped address'; Command = 'write 10000 0' }
        @{ Name = 'a write to a read-only mapping'; Command = 'RO' }
        @{ Name = 'a bad page count'; Command = 'map 0' }
        @{ Name = 'a bad protection'; Command = 'map 1 anon rwx' }
        @{ Name = 'a file it cannot create'; Command = 'map 1 file /proc/no/such/file' }
    ) {
        if ($Command -eq 'RO') { $Command = "write $(Hex ($t.Map(1, 'anon ro'))) 0" }
        $t.TrySend($Command) | Should -Match '^ERR '
        $t.Send('ping') | Should -Be "$($t.Id)"
    }

    It 'writes every stride-th page with write <addr> <index> <count> <stride>' {
        $m = $t.Map(10)
        $t.Send("write $(Hex $m) 1 3 4") | Should -Be '3'
        (Get-PageMap -Id $t.Id -Address $m -Length (10 * $ps) -Present | ForEach-Object { ($_.Start - $m) / $ps }) | Should -Be 1, 5, 9
        $t.TrySend("write $(Hex $m) 1 4 4") | Should -Match '^ERR .*not mapped'   # page 13 lies past the mapping
    }

    It 'reads back the bytes it wrote' {
        $m = $t.Map(3)
        $t.Send("write $(Hex $m) 0 3") | Should -Be '3'
        $t.Send("read $(Hex $m) 0 3") | Should -Be '6'   # bytes 1, 2, 3
    }

    It 'puts each mapping in its own VMA between PROT_NONE guard pages' {
        $m = $t.Map(2)
        $below = Get-MemoryMapping -Id $t.Id -Address ($m - $ps)
        $above = Get-MemoryMapping -Id $t.Id -Address ($m + 2 * $ps)
        $below.Permissions | Should -Be '---p'
        $above.Permissions | Should -Be '---p'
        (Get-MemoryMapping -Id $t.Id -Address $m).Size | Should -Be (2 * $ps)
    }

    It 'forks a child that lives until killed, and exits on exit' {
        $x = Start-TestTarget
        $child = [int]$x.Send('fork')
        (Get-Process -Id $child).Name | Should -Be 'sdtarget'
        $x.Send('exit') | Should -Be ''
        $x.Process.WaitForExit(5000) | Should -BeTrue
        # The forked child dies with its parent (PR_SET_PDEATHSIG): gone, or a zombie if nobody reaps it here.
        function Test-Running { (Test-Path "/proc/$child") -and ((Get-Content -Raw "/proc/$child/stat" -ErrorAction SilentlyContinue) -split '\) ')[1][0] -ne 'Z' }
        $deadline = [DateTime]::UtcNow.AddSeconds(5)
        while ((Test-Running) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
        Test-Running | Should -BeFalse
        Stop-TestTarget $x
    }
}
