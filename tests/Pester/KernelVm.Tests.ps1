# Real soft-dirty bits of a real child process. Tagged Kernel: tests/vm runs this tag inside a VM that
# boots Debian's 6.1 kernel (CONFIG_MEM_SOFT_DIRTY=y) and sets SOFTDIRTY_KERNEL_VM=1, where soft-dirty
# MUST work. On a kernel without soft-dirty (this project's CI host) the soft-dirty cases are skipped
# with the probe's reason, so they never pass silently.
Describe 'Soft-dirty on a real kernel' -Tag 'Kernel' {
    BeforeAll {
        Import-Module $env:SOFTDIRTY_MODULE -Force
        $script:inVm = [bool]$env:SOFTDIRTY_KERNEL_VM
        $script:support = Get-SoftDirtySupport -Refresh
        # The full test target when it is built, else the small child of tests/native/sdvmchild.c.
        $script:target = if ($env:SOFTDIRTY_TARGET -and (Test-Path $env:SOFTDIRTY_TARGET)) { $env:SOFTDIRTY_TARGET }
                         else { Join-Path $PSScriptRoot '../native/bin/sdvmchild' }

        function Start-Child {
            $psi = [System.Diagnostics.ProcessStartInfo]::new($script:target)
            $psi.RedirectStandardInput = $true
            $psi.RedirectStandardOutput = $true
            $psi.UseShellExecute = $false
            $p = [System.Diagnostics.Process]::Start($psi)
            $ready = $p.StandardOutput.ReadLine() -split ' '
            if ($ready[0] -ne 'READY') { throw "child said '$($ready -join ' ')', not READY" }
            [pscustomobject]@{ Process = $p; Id = [int]$ready[1]; PageSize = [uint64]$ready[2] }
        }
        # One command line to the child; returns what follows OK (a string, maybe empty).
        function Send-Child($child, [string] $line) {
            $child.Process.StandardInput.WriteLine($line)
            $reply = $child.Process.StandardOutput.ReadLine()
            if ($reply -notmatch '^OK\b ?(.*)$') { throw "child answered '$reply' to '$line'" }
            $Matches[1]
        }
        function Stop-Child($child) {
            if (-not $child) { return }
            $child.Process.StandardInput.Close()
            if (-not $child.Process.WaitForExit(5000)) { $child.Process.Kill() }
            $child.Process.Dispose()
        }
        # Page indexes (0-based, in the child's mapping at $base) that read soft-dirty.
        function Get-DirtyIndex($child, [uint64] $base, [int] $pages) {
            Get-PageMap -Id $child.Id -Address $base -Length ($pages * $child.PageSize) |
                Where-Object SoftDirty | ForEach-Object { [int](($_.Address - $base) / $child.PageSize) }
        }
        function Skip-WithoutSoftDirty {
            if (-not $script:support.SoftDirty -and -not $script:inVm) {
                $because = "soft-dirty not supported by kernel $($script:support.KernelRelease): $($script:support.SoftDirtyReason)"
                Write-Host "    skipped: $because"
                Set-ItResult -Skipped -Because $because
            }
        }
    }

    It 'reports soft-dirty supported' {
        Skip-WithoutSoftDirty
        $support.SoftDirty | Should -BeTrue -Because $support.SoftDirtyReason
    }

    It 'reports PAGEMAP_SCAN absent on the 6.1 kernel of the VM' -Skip:(-not $env:SOFTDIRTY_KERNEL_VM) {
        $support.KernelRelease | Should -BeLike '6.1.*'
        $support.PagemapScan | Should -BeFalse
        $support.PagemapScanReason | Should -Not -BeNullOrEmpty
    }

    Context 'a child that writes some of its pages' {
        BeforeAll {
            $child = Start-Child
            $pages = 16
            $base = [Convert]::ToUInt64(((Send-Child $child "map $pages anon rw") -replace '^0x'), 16)
            # Every page present before the clear, so that the clear has something to clean.
            $null = Send-Child $child ('write {0:x} 0 {1}' -f $base, $pages)
        }
        AfterAll { Stop-Child $child }

        It 'reads a freshly written mapping soft-dirty' {
            Skip-WithoutSoftDirty
            Get-DirtyIndex $child $base $pages | Should -Be (0..($pages - 1))
        }

        It 'reads exactly the pages written after Clear-SoftDirty' {
            Skip-WithoutSoftDirty
            Clear-SoftDirty -Id $child.Id -Confirm:$false
            @(Get-DirtyIndex $child $base $pages) | Should -BeNullOrEmpty
            $null = Send-Child $child ('write {0:x} 2' -f $base)
            $null = Send-Child $child ('write {0:x} 5 3' -f $base)
            $null = Send-Child $child ('write {0:x} 13' -f $base)
            Get-DirtyIndex $child $base $pages | Should -Be @(2, 5, 6, 7, 13)
        }

        It 'filters the same pages in C# with -SoftDirty and joins them with -AsRange' {
            Skip-WithoutSoftDirty
            $length = $pages * $child.PageSize
            $pagesSeen = Get-PageMap -Id $child.Id -Address $base -Length $length -SoftDirty
            @($pagesSeen | ForEach-Object { [int](($_.Address - $base) / $child.PageSize) }) | Should -Be @(2, 5, 6, 7, 13)
            $ranges = Get-PageMap -Id $child.Id -Address $base -Length $length -SoftDirty -AsRange
            @($ranges | ForEach-Object { '{0}+{1}' -f (($_.Start - $base) / $child.PageSize), $_.PageCount }) | Should -Be @('2+1', '5+3', '13+1')
        }
    }
}
