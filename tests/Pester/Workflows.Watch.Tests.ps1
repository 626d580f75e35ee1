# Watch-DirtyPage on a real process (tests/native/wftarget.c): samples, methods, Ctrl+C.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:noSoftDirty = -not (Get-SoftDirtySupport).SoftDirty
}
Describe 'Watch-DirtyPage' -Tag 'Workflows' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $t = Start-WfTarget
        $r = New-WfRegion $t 256
        $null = Send-WfTarget $t "hot $($r.Hex) 100 20 2000"
        $hotStart = $r.Address + 100 * $t.PageSize
        $hotEnd = $hotStart + 20 * $t.PageSize
        $noSoftDirty = -not (Get-SoftDirtySupport).SoftDirty
    }
    AfterAll { Stop-WfTarget $t }

    It 'takes one sample per interval with the hot pages in its ranges (Auto picks WriteProtect where injection is allowed, else Hash)' {
        $auto = if ((Get-SoftDirtySupport -Id $t.Id).WriteProtect) { 'WriteProtect' } else { 'Hash' }
        $s = @(Watch-DirtyPage -Id $t.Id -Interval 0.25 -Count 3 -Address $r.Address -Length (256 * $t.PageSize))
        $s.Count | Should -Be 3
        $s.Index | Should -Be 1, 2, 3
        foreach ($x in $s) {
            if ($noSoftDirty) { $x.Method | Should -Be $auto }
            $x.DirtyPages | Should -BeGreaterOrEqual 20
            $x.DirtyBytes | Should -Be ($x.DirtyPages * $t.PageSize)
            $x.Rate | Should -BeGreaterThan 0
            [math]::Abs($x.Rate - $x.DirtyPages / $x.Interval) | Should -BeLessThan 1
            $x.PagesScanned | Should -BeGreaterOrEqual 256
            @($x.Ranges | Where-Object { $_.Start -le $hotStart -and $_.End -ge $hotEnd }).Count | Should -Be 1
        }
        $s[2].Elapsed | Should -BeGreaterThan $s[0].Elapsed
    }

    It 'stops after -Duration seconds' {
        $s = @(Watch-DirtyPage -Id $t.Id -Interval 0.2 -Duration 0.6 -Mapping 'nothing-*', '[anon]' -Method Hash)
        $s.Count | Should -Be 3
    }

    It 'hashes with SHA-256 on request and finds the same hot pages' {
        $s = @(Watch-DirtyPage -Id $t.Id -Interval 0.2 -Count 1 -Method Hash -HashAlgorithm Sha256 -Address $r.Address -Length (256 * $t.PageSize))
        $s[0].Method | Should -Be 'Hash'
        @($s[0].Ranges | Where-Object { $_.Start -le $hotStart -and $_.End -ge $hotEnd }).Count | Should -Be 1
    }

    It 'refuses -Count with -Duration' {
        { Watch-DirtyPage -Id $t.Id -Count 2 -Duration 1 } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.WatchDirtyPageCommand'
    }

    It 'tracks a child of this PowerShell with WriteProtect, and .NET still sees it running (its ptrace stops kept from .NET''s reaping)' {
        $support = Get-SoftDirtySupport -Id $t.Id
        if (-not $support.WriteProtect) { Set-ItResult -Skipped -Because "WriteProtect of another process is not possible here: $($support.Reason)"; return }
        $s = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.05 -ErrorAction Stop)
        $s.Count | Should -Be 2
        $s[0].Method | Should -Be 'WriteProtect'
        $t.Process.HasExited | Should -BeFalse
        Send-WfTarget $t 'map 1' | Should -Match '^[0-9a-f]+$' -Because 'it still reads and answers its commands'
    }

    It 'refuses SoftDirty on a kernel without soft-dirty (skipped where the kernel has it)' -Skip:(-not $script:noSoftDirty) {
        $err = $null
        Watch-DirtyPage -Id $t.Id -Method SoftDirty -Count 1 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'SoftDirtyNotSupported,SoftDirty.Commands.WatchDirtyPageCommand'
    }

    It 'ends cleanly on Ctrl+C (Stop) and keeps the samples emitted so far' {
        $ps = [powershell]::Create()
        $null = $ps.AddScript("Import-Module '$env:SOFTDIRTY_MODULE'; Watch-DirtyPage -Id $($t.Id) -Interval 0.15 -Count 1000 -Method Hash")
        $out = [System.Management.Automation.PSDataCollection[psobject]]::new()
        $in = [System.Management.Automation.PSDataCollection[psobject]]::new(); $in.Complete()
        $h = $ps.BeginInvoke($in, $out)
        $deadline = [DateTime]::UtcNow.AddSeconds(15)
        while ($out.Count -lt 2 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
        $ps.Stop()
        $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        $out.Count | Should -BeGreaterOrEqual 2
        $out[0].DirtyPages | Should -BeGreaterOrEqual 20
        $ps.Streams.Error.Count | Should -Be 0
        $ps.Dispose()
        Get-ProcessState $t.Id | Should -Not -Be 'T'
    }
}
