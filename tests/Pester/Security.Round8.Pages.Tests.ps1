#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, eighth attack round, on the page cmdlets, the emulator, the chart and serialization (new cases only;
# earlier rounds are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1).
# The engine's side: tests/SoftDirty.Engine.Tests/PagesRound8Tests.cs.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:NoScan = if (-not (Get-SoftDirtySupport).PagemapScan) { 'this kernel has no PAGEMAP_SCAN (Linux 6.7+)' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r8')
    chmod 0755 $TestDrive $root
    $script:PageMapId = 'SoftDirty.Commands.GetPageMapCommand'
    # Starts "storm" in the target (it answers when the storm ends) and returns the file prefix it maps.
    function Start-Storm($Target, [uint64] $Base, [int] $Pages, [int] $Milliseconds) {
        $prefix = Join-Path $root "storm$([guid]::NewGuid().ToString('n').Substring(0, 8))"
        $Target.Process.StandardInput.WriteLine("storm $(Hex $Base) $Pages $prefix $Milliseconds")
        $Target.Process.StandardInput.Flush()
        $prefix
    }
    function Wait-Storm($Target) {
        $reply = $Target.Process.StandardOutput.ReadLine()
        $reply | Should -Match '^OK \d+$'
        [int]($reply -split ' ')[1]
    }
}


Describe 'Pages read while the target replaces the mapping under them' -Tag 'Security', 'Round8Pages' {
    # sdtarget "storm": over and over, a new file <prefix>-<n> (never the same name twice) mapped shared over the same
    # pages and read (present, file pages), then private anonymous memory mapped over them and written (present,
    # exclusive, not file). The maps a cmdlet reads first name a file; by the time it reads the pagemap the pages may
    # be anonymous. Before the fix every such page came out under the file's name (333 of 333 present pages in one
    # run): a silent wrong answer. Because a file name is never reused, a page under a file's name that is not a file
    # page can only have been read after that file was gone.
    BeforeAll {
        $script:t = Start-TestTarget
        $script:pages = 16
        $script:base = $t.Map($pages)
    }
    AfterAll { Stop-TestTarget -Process $t.Process }

    It 'Get-PageMap <Label>: no anonymous page is ever named after a file, and the only errors are <Allowed>' -ForEach @(
        @{ Label = '-Address -Present'; Params = @{ Present = $true }; Allowed = @('MappingsChanged') }
        @{ Label = '-Address -AsRange'; Params = @{ AsRange = $true }; Allowed = @('MappingsChanged') }
        @{ Label = '-Mapping <prefix>-* -Present'; Params = @{ Mapping = 'PREFIX'; Present = $true }; Allowed = @('MappingsChanged', 'MappingNotFound') }
        @{ Label = '-Mapping <prefix>-* -ReadMethod Pread -AsRange -Present'; Params = @{ Mapping = 'PREFIX'; ReadMethod = 'Pread'; AsRange = $true; Present = $true }; Allowed = @('MappingsChanged', 'MappingNotFound') }
    ) {
        $prefix = Start-Storm $t $base $pages 3000
        $wrong = [System.Collections.Generic.List[string]]::new()
        $ids = @{}
        $named = 0
        $reads = 0
        $length = [uint64]$pages * $t.PageSize
        $deadline = [datetime]::UtcNow.AddSeconds(2.5)
        while ($reads -lt 20 -or [datetime]::UtcNow -lt $deadline) {
            $err = $null
            $p = @{} + $Params
            if ($p.Mapping) { $p.Mapping = "$prefix-*" } else { $p.Address = $base; $p.Length = $length }
            $out = @(Get-PageMap -Id $t.Id @p -ErrorAction SilentlyContinue -ErrorVariable err)
            foreach ($e in $err) { $ids[$e.FullyQualifiedErrorId.Split(',')[0]]++ }
            foreach ($o in $out) {
                if ($o.Mapping -notlike "$prefix-*") { continue }
                $named++
                if ($o.Present -and -not $o.FileOrSharedAnon) { $wrong.Add("$(Hex $o.Start) $($o.Flags) under $($o.Mapping)") }
            }
            $reads++
            if ($reads -ge 400) { break }
        }
        $rounds = Wait-Storm $t
        $rounds | Should -BeGreaterThan 0 -Because 'the storm ran'
        $wrong | Should -BeNullOrEmpty -Because 'an anonymous page is never a page of the file it replaced'
        @($ids.Keys | Where-Object { $_ -notin $Allowed }) | Should -BeNullOrEmpty -Because "errors seen: $($ids.Keys -join ', ')"
        Write-Host "    $Label : $reads reads, $rounds storm rounds, $named page(s) or range(s) under a file's name, errors: $(($ids.GetEnumerator() | ForEach-Object { "$($_.Key)=$($_.Value)" }) -join ' ')"
    }

    It 'Search-PageMap -Category Present over the storm: every region under a file''s name is a file region' -Skip:([bool]$NoScan) {
        $prefix = Start-Storm $t $base $pages 3000
        $wrong = [System.Collections.Generic.List[string]]::new()
        $ids = @{}
        $reads = 0
        $length = [uint64]$pages * $t.PageSize
        $deadline = [datetime]::UtcNow.AddSeconds(2.5)
        while ($reads -lt 20 -or [datetime]::UtcNow -lt $deadline) {
            $err = $null
            $out = @(Search-PageMap -Id $t.Id -Address $base -Length $length -Category Present -ReturnCategory 'Present, File' -ErrorAction SilentlyContinue -ErrorVariable err)
            foreach ($e in $err) { $ids[$e.FullyQualifiedErrorId.Split(',')[0]]++ }
            foreach ($r in $out | Where-Object Mapping -like "$prefix-*") {
                if (-not ($r.Categories -band [SoftDirty.PageCategory]::File)) { $wrong.Add("$(Hex $r.Start) $($r.Categories) under $($r.Mapping)") }
            }
            $reads++
            if ($reads -ge 400) { break }
        }
        $null = Wait-Storm $t
        $wrong | Should -BeNullOrEmpty
        @($ids.Keys | Where-Object { $_ -ne 'MappingsChanged' }) | Should -BeNullOrEmpty -Because "errors seen: $($ids.Keys -join ', ')"
    }

    It 'a quiet target is read without a change seen: the same pages as before the storm, and Get-PageMap agrees with Search-PageMap' {
        # The check after each chunk must not call an unchanged mapping changed (PROCMAP_QUERY and maps spell names the same).
        $t.Send("write $(Hex $base) 0 4 2") | Should -Be '4'
        $length = [uint64]$pages * $t.PageSize
        $err = $null
        $present = @(Get-PageMap -Id $t.Id -Address $base -Length $length -Present -ErrorVariable err)
        $err | Should -BeNullOrEmpty
        $present.Count | Should -Be $pages -Because 'the storm leaves every page written'
    }
}

Describe 'One emulated process used from two runspaces at once' -Tag 'Security', 'Round8Pages' {
    # The emulator locks each system call, so concurrent use never corrupts it; but Get-PageMap reads the mappings,
    # then the pagemap, in separate calls. A thread job replacing a shared file mapping (/f-<n>, a new name each time)
    # with anonymous memory and back: before the fix 192 of 2,496 pages read under a file's name were anonymous.
    It 'Get-PageMap beside a thread job that replaces the mapping: no anonymous page under a file''s name; Search-PageMap likewise' {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $module = (Get-Module SoftDirty).Path
        $job = Start-ThreadJob -ArgumentList $e, $m, $module {
            param($e, $m, $module)
            Import-Module $module
            for ($k = 0; $k -lt 1500; $k++) {
                $null = $e | Add-EmulatedMapping -Address $m.Start -Length 64KB -Fixed -Path "/f-$k" -Shared
                $e | Read-EmulatedMemory -Address $m.Start -Length 64KB
                $null = $e | Add-EmulatedMapping -Address $m.Start -Length 64KB -Fixed
                $e | Write-EmulatedMemory -Address $m.Start -Length 64KB
            }
        }
        try {
            $named = 0
            $wrong = [System.Collections.Generic.List[string]]::new()
            $ids = @{}
            while ($job.State -in 'NotStarted', 'Running') {
                $err = $null
                $p = @($e | Get-PageMap -Address $m.Start -Length 64KB -Present -ErrorAction SilentlyContinue -ErrorVariable err)
                $r = @($e | Search-PageMap -Address $m.Start -Length 64KB -Category Present -ReturnCategory 'Present, File' -ErrorAction SilentlyContinue -ErrorVariable +err)
                foreach ($x in $err) { $ids[$x.FullyQualifiedErrorId.Split(',')[0]]++ }
                foreach ($o in $p | Where-Object Mapping -like '/f-*') { $named++; if (-not $o.FileOrSharedAnon) { $wrong.Add("page $(Hex $o.Start) under $($o.Mapping)") } }
                foreach ($o in $r | Where-Object Mapping -like '/f-*') { if (-not ($o.Categories -band [SoftDirty.PageCategory]::File)) { $wrong.Add("region $(Hex $o.Start) under $($o.Mapping)") } }
            }
            $job | Receive-Job -ErrorAction Stop
            $wrong | Should -BeNullOrEmpty
            @($ids.Keys | Where-Object { $_ -ne 'MappingsChanged' }) | Should -BeNullOrEmpty -Because "errors seen: $($ids.Keys -join ', ')"
            $named | Should -BeGreaterThan 0 -Because 'pages were read under the files'' names'
        } finally { $job | Remove-Job -Force }
    }
}

Describe 'A target that execs while its mappings are read' -Tag 'Security', 'Round8Pages' {
    # maps and smaps are read 4 KiB at a time; where the mm goes away between two reads (exec, exit) the kernel ends
    # the text early without an error. Before the fix Get-MemoryMapping then returned the first part of the old
    # program's list as if it were the whole (1,555 of 3,000+ mappings in one run): silent data loss.
    It 'Get-MemoryMapping in a loop across the exec: the old program''s whole list, the new program''s, or ProcessExecuted; never a list cut short (trial <_>)' -ForEach (1..6) {
        $t = Start-TestTarget
        try {
            1..1000 | ForEach-Object { $null = $t.Map(1) }
            $old = @(Get-MemoryMapping -Id $t.Id)
            $exe = (Get-Item -LiteralPath "/proc/$($t.Id)/exe").Target
            $sleep = (Get-Command sleep -CommandType Application | Select-Object -First 1).Source
            $t.Send("exec $(Get-Random -Minimum 0 -Maximum 30000) $sleep 60") | Should -Be ''
            $seen = @{}
            $bad = [System.Collections.Generic.List[string]]::new()
            for ($i = 0; $i -lt 300; $i++) {
                $err = $null
                $m = @(Get-MemoryMapping -Id $t.Id -ErrorAction SilentlyContinue -ErrorVariable err)
                if ($err) { $seen[$err[0].FullyQualifiedErrorId.Split(',')[0]]++; continue }
                $ofOld = @($m | Where-Object Path -eq $exe).Count
                if ($ofOld -gt 0 -and $m.Count -ne $old.Count) { $bad.Add("$($m.Count) of $($old.Count) mappings of the old program") }
                if ($ofOld -gt 0) { $seen['old']++ } else { $seen['new']++ }
                if ($ofOld -eq 0 -and @($m | Where-Object Kind -eq File).Count -ge 2) { break } # the new program, its libraries mapped
            }
            $bad | Should -BeNullOrEmpty
            @($seen.Keys | Where-Object { $_ -notin 'old', 'new', 'ProcessExecuted' }) | Should -BeNullOrEmpty -Because "seen: $($seen.Keys -join ', ')"
            $seen['new'] | Should -BeGreaterThan 0 -Because "the loop ran until the new program was read (seen: $(($seen.GetEnumerator() | ForEach-Object { "$($_.Key)=$($_.Value)" }) -join ' '))"
        } finally { Stop-TestTarget -Process $t.Process }
    }
}

Describe 'Mapping paths that hold line-end characters other than a newline' -Tag 'Security', 'Round8Pages' {
    # The kernel escapes only '\n' in a maps path (\012). The parser split lines with EnumerateLines, which also ends a
    # line at '\r', '\f', U+0085, U+2028 and U+2029: a file name could cut its own mapping's path short and add a mapping
    # line of its choosing (here a fake [heap]), or make every read of the process fail with a parse error. The target's
    # owner picks the names; the caller (root, say) is the one misled.
    BeforeAll {
        $script:t = Start-TestTarget
        $script:fake = 0x7f0000000000
    }
    AfterAll { Stop-TestTarget -Process $t.Process }

    It 'a file named with <Label> is one mapping with its whole name: Get-MemoryMapping, Get-PageMap and Search-PageMap agree with maps' -ForEach @(
        @{ Label = 'CR and a forged [heap] line'; Sep = "`r" }
        @{ Label = 'a form feed and a forged [heap] line'; Sep = "`f" }
        @{ Label = 'U+0085 (NEL) and a forged [heap] line'; Sep = [string][char]0x85 }
        @{ Label = 'U+2028 and a forged [heap] line'; Sep = [string][char]0x2028 }
        @{ Label = 'U+2029 and a forged [heap] line'; Sep = [string][char]0x2029 }
        @{ Label = 'CR and a forged smaps counter'; Sep = "`r"; Tail = 'Rss:                9999 kB' }
    ) {
        $tail = if ($Tail) { $Tail } else { '{0:x}-{1:x} rw-p 00000000 00:00 0                          [heap]' -f $fake, ($fake + 1MB) }
        $name = Join-Path $root ("line-ends-$([guid]::NewGuid().ToString('n').Substring(0, 6))" + $Sep + $tail)
        $a = $t.Map(2, "file `"$name`"")
        $lines = @((Get-Content -Raw -LiteralPath "/proc/$($t.Id)/maps").Split("`n", [StringSplitOptions]::RemoveEmptyEntries))
        $lines.Where({ $_.StartsWith(('{0:x}-' -f $fake)) }) | Should -BeNullOrEmpty -Because 'nothing is really mapped at the forged address'

        $err = $null
        $m = @(Get-MemoryMapping -Id $t.Id -ErrorVariable err)
        $err | Should -BeNullOrEmpty
        $m.Count | Should -Be $lines.Count
        @($m | Where-Object Start -eq $fake) | Should -BeNullOrEmpty
        $mine = @($m | Where-Object Start -eq $a)
        $mine.Count | Should -Be 1
        $mine[0].Path | Should -BeExactly $name
        $mine[0].Rss | Should -BeLessThan 1MB -Because 'a counter in a name is not the mapping''s counter'
        @(Get-MemoryMapping -Id $t.Id -Mapping '[heap]' | Where-Object Start -eq $fake) | Should -BeNullOrEmpty

        $pages = @(Get-PageMap -Id $t.Id -Address $a -Length (2 * $t.PageSize) -ErrorVariable err)
        $err | Should -BeNullOrEmpty
        $pages.Count | Should -Be 2
        $pages.Mapping | Should -BeExactly @($name, $name)
        @(Get-PageMap -Id $t.Id -AsRange | Where-Object { $_.Start -ge $fake -and $_.Start -lt $fake + 1MB }) | Should -BeNullOrEmpty
        if ((Get-SoftDirtySupport).PagemapScan) {
            $t.Send("read $(Hex $a) 0 2") | Out-Null
            $r = @(Search-PageMap -Id $t.Id -Address $a -Length (2 * $t.PageSize) -Category Present)
            $r.Mapping | Should -BeExactly $name
        }
        $t.Send("unmap $(Hex $a) 2") | Out-Null
    }
}

Describe 'Control characters in mapping paths and names reach the terminal only escaped' -Tag 'Security', 'Round8Pages' {
    # The owner of a process picks its file names and its name (comm); the kernel escapes only '\n' in maps. The
    # module's views printed them raw, so looking at another user's mappings (Get-MemoryMapping | Format-Table, as
    # root) sent that user's terminal sequences to the terminal: set its title (OSC 0), erase the line just printed
    # (CSI 2K, CR), colour, reorder text (U+202E), or ring it (BEL). The views now show them as \x1b, \u202e; the
    # objects keep the text the kernel gave.
    BeforeAll {
        $script:t = Start-TestTarget
        $script:evil = "`e]0;owned`a`e[2K`bX`e[31mRED$([char]0x9b)2J$([char]0x202e)txt.exe"
        $script:name = Join-Path $root "ctl-$evil"
        $script:a = $t.Map(2, "file `"$name`"")
        $null = $t.Send("read $(Hex $a) 0 2")
        # A character a hostile name may hold that must not reach the terminal as it is.
        $script:hostile = '[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|\x1b\]0;owned|\x1b\[2K|\x1b\[31mRED'
    }
    AfterAll {
        Stop-TestTarget -Process $t.Process
        # An unbalanced '[' in the name: Pester's TestDrive clean-up (Remove-Item with wildcards) cannot remove it.
        [System.IO.File]::Delete($name)
    }

    It '<Command> | <Format> shows the name escaped' -ForEach @(
        foreach ($f in 'Out-String', 'Format-Table', 'Format-List', 'Format-Wide') {
            @{ Command = 'Get-MemoryMapping'; Format = $f; Get = { Get-MemoryMapping -Id $t.Id | Where-Object Start -eq $a } }
            @{ Command = 'Get-PageMap'; Format = $f; Get = { Get-PageMap -Id $t.Id -Address $a -Length (2 * $t.PageSize) } }
            @{ Command = 'Get-PageMap -AsRange'; Format = $f; Get = { Get-PageMap -Id $t.Id -Address $a -Length (2 * $t.PageSize) -AsRange } }
            @{ Command = 'Search-PageMap'; Format = $f; Get = { Search-PageMap -Id $t.Id -Address $a -Length (2 * $t.PageSize) -Category Present } }
        }
    ) {
        if ($Command -eq 'Search-PageMap' -and -not (Get-SoftDirtySupport).PagemapScan) { Set-ItResult -Skipped -Because 'this kernel has no PAGEMAP_SCAN' }
        $objects = @(& $Get)
        $objects.Count | Should -BeGreaterThan 0
        # (Failure messages must not hold the characters either: Pester's XML report cannot write them.)
        ($objects[0].($(if ($Command -eq 'Get-MemoryMapping') { 'Path' } else { 'Mapping' })) -ceq $name) | Should -BeTrue -Because 'the object keeps the name as it is'
        $text = if ($Format -eq 'Out-String') { $objects | Out-String -Width 400 } else { $objects | & $Format | Out-String -Width 400 }
        ($text -match $hostile) | Should -BeFalse -Because 'no control character of the name is printed as it is'
        # A table shows the file name cut to its column; a list shows it whole, escaped.
        if ($Format -eq 'Format-List') { $text.Contains('\x1b]0;owned\x07\x1b[2K\x08X\x1b[31mRED\x9b2J\u202etxt.exe') | Should -BeTrue }
    }

    It 'a deserialized mapping (Export-Clixml, Import-Clixml) prints escaped too' {
        $file = Join-Path $root "m-$([guid]::NewGuid().ToString('n')).xml"
        Get-MemoryMapping -Id $t.Id | Where-Object Start -eq $a | Export-Clixml -LiteralPath $file
        $back = Import-Clixml -LiteralPath $file
        ($back.Path -ceq $name) | Should -BeTrue
        foreach ($f in 'Format-Table', 'Format-List') { (($back | & $f | Out-String -Width 400) -match $hostile) | Should -BeFalse -Because "$f prints no control character as it is" }
    }

    It 'an error naming a process whose name holds control characters shows them escaped' {
        $e = New-EmulatedProcess -Name "n$evil"
        $err = $null
        $e | Get-PageMap -Mapping 'no-such-mapping' -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -Be "MappingNotFound,$PageMapId"
        # Round 12: the record's exception carries the escaped text too (NormalView, DetailedView and Get-Error print it).
        ($err[0].Exception.Message -match $hostile) | Should -BeFalse -Because 'the exception holds no control character as it is'
        $err[0].Exception.Message | Should -Match 'n\\x' -Because 'the exception still names the process, escaped'
        (($err[0] | Out-String -Width 400) -match $hostile) | Should -BeFalse -Because 'the error view prints no control character as it is'
        (($e | Format-Table | Out-String -Width 400) -match $hostile) | Should -BeFalse -Because 'the table prints no control character as it is'
    }
}

Describe 'Deserialized samples with a hostile PSComputerName, and kernel threads' -Tag 'Security', 'Round8Pages' {
    It 'Export-DirtyPageChart of samples whose PSComputerName holds markup writes a well-formed SVG with the markup as text' {
        $e = New-EmulatedProcess -Name 'web'
        $m = $e | Add-EmulatedMapping -Length 1MB
        $samples = @($e | Watch-DirtyPage -Count 2 -Interval 0.1 -Workload @{ Address = $m.Start; Length = 1MB; Pattern = 'Random'; AccessesPerSecond = 2000 })
        $file = Join-Path $root "s-$([guid]::NewGuid().ToString('n')).xml"
        $samples | Export-Clixml -LiteralPath $file
        $hosts = '</text><script>alert(1)</script>', "a&b`"c'<x/>"
        $back = foreach ($h in $hosts) { Import-Clixml -LiteralPath $file | ForEach-Object { $_ | Add-Member -NotePropertyName PSComputerName -NotePropertyValue $h -PassThru } }
        $svg = Join-Path $root "chart-$([guid]::NewGuid().ToString('n')).svg"
        $back | Export-DirtyPageChart -Path $svg
        $doc = [xml](Get-Content -Raw -LiteralPath $svg)
        $doc.SelectNodes('//*[local-name()="script"]').Count | Should -Be 0
        $text = ($doc.SelectNodes('//*[local-name()="text"]') | ForEach-Object InnerText) -join "`n"
        foreach ($h in $hosts) { $text | Should -BeLike "*$([WildcardPattern]::Escape($h))*" -Because 'each host is named in the legend, as text' }
    }

    It '<Command> of kthreadd (pid 2), whose pagemap cannot be opened (no mm), is InvalidArgument: a kernel thread' -ForEach @(
        @{ Command = 'Get-MemoryMapping' }
        @{ Command = 'Search-PageMap' }
        @{ Command = 'Get-PageMap' }
    ) {
        $stat = Get-Content -Raw -LiteralPath /proc/2/stat -ErrorAction Ignore
        if (-not $stat -or $stat -notmatch '\(kthreadd\)') { Set-ItResult -Skipped -Because 'pid 2 is not kthreadd here (a pid namespace)' }
        if ($Command -eq 'Search-PageMap' -and -not (Get-SoftDirtySupport).PagemapScan) { Set-ItResult -Skipped -Because 'this kernel has no PAGEMAP_SCAN' }
        $err = $null
        & $Command -Id 2 -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be "InvalidArgument,SoftDirty.Commands.$($Command.Replace('-', ''))Command"
        $err[0].Exception.Message | Should -Match 'kernel thread'
    }
}
