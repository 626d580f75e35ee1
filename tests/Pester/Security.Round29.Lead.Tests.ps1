#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-ninth attack round, the lead's cases: what the helpers left open in the image code.
# Found (left open by r29errB, shown here): a save, a restore or a receive puts its result in place by a rename, then opens the
# destination again to check that it names the folder just made. Round 28 took the result back where that check ran out of
# descriptors; any other failure of it (EIO from a failing disk, EACCES from a folder on the way made unsearchable meanwhile)
# failed the command and left the result there, so the command said it failed while its image stood at the destination (a
# script that tried again met ImageExists). Shown with strace, which makes only that open fail (the destination's own name is
# opened nowhere else). Every case below failed before.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $StraceSkip = Get-StraceSkipReason 'the failed check is injected with strace'
}

Describe 'Round 29: the check after a result is put in place fails (EIO, EACCES)' -Tag 'Security', 'Round29Lead' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
        $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r29lead')).FullName
        $f = New-FilledEmulator 8
        $script:source = "$root/source"
        $null = Save-MemoryImage -Emulator $f.Emulator -Path $source
        $script:child = "$root/child.ps1"
        @'
param($Module, $Command, $Source, $Destination)
$ErrorActionPreference = 'Stop'
Import-Module $Module
try {
    switch ($Command) {
        'save' { $e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 32KB; $e | Write-EmulatedMemory -Address $m.Start -Length 32KB; $null = Save-MemoryImage -Emulator $e -Path $Destination }
        'restore' { $null = Restore-MemoryImage -Path $Source -Destination $Destination }
    }
    'result=ok'
} catch { "result=$($_.FullyQualifiedErrorId -replace ',.*$')|$($_.Exception.Message)" }
'@ | Set-Content -LiteralPath $child
        # The child's result line, run under strace that fails every openat of the destination's own name with $Errno (none: no strace).
        function script:Invoke-Child([string] $Command, [string] $Destination, [string] $Errno) {
            $pwsh = Get-PwshCommandLine # one path, or dotnet and pwsh.dll (an array either way)
            $strace = @('strace', '-f', '-qq', '-o', '/dev/null', '--seccomp-bpf', '-e', 'trace=openat', '-e', "inject=openat:error=$Errno", '-P', (Split-Path $Destination -Leaf))
            $run = @(if ($Errno) { $strace + $pwsh } else { $pwsh })
            $out = @(& $run[0] @($run | Select-Object -Skip 1) -NoProfile -NonInteractive -File $child -Module $module -Command $Command -Source $source -Destination $Destination 2>&1 | ForEach-Object { "$_" })
            $line = $out | Where-Object { $_ -like 'result=*' } | Select-Object -First 1
            if (-not $line) { throw "the child printed no result: $($out -join "`n")" }
            $line -replace '^result='
        }
    }

    It '<Command> without injection puts its result in place (the setting is what the case needs)' -ForEach @(
        @{ Command = 'save' }, @{ Command = 'restore' }
    ) {
        $dest = "$root/$Command-control"
        Invoke-Child $Command $dest '' | Should -Be 'ok'
        Test-Path -LiteralPath "$dest/mappings.json", "$dest/manifest.json" | Should -Contain $true
    }

    It '<Command> whose check after the rename meets <Errno> fails with <ErrorId> and leaves the destination as it was' -ForEach @(
        @{ Command = 'save'; Errno = 'EIO'; ErrorId = 'ImageWriteError' }
        @{ Command = 'save'; Errno = 'EACCES'; ErrorId = 'PermissionDenied' }
        @{ Command = 'restore'; Errno = 'EIO'; ErrorId = 'ImageWriteError' }
        @{ Command = 'restore'; Errno = 'EACCES'; ErrorId = 'PermissionDenied' }
    ) {
        $dest = "$root/$Command-$Errno"
        $said = Invoke-Child $Command $dest $Errno
        $said | Should -BeLike "$ErrorId|*removed again*"
        Test-Path -LiteralPath $dest | Should -BeFalse -Because "a command that failed leaves nothing at its destination ($said)"
        @(Get-ChildItem -LiteralPath $root -Force -Filter ".$Command-$Errno.partial-*") | Should -BeNullOrEmpty
    }
}

# Found (left open by r29errB): Export-DirtyPageChart drew a deserialized sample or pre-copy round that lacked its Elapsed or
# Rate (a Select-Object or an edit that left it out) at 0 s or 0 pages/s, as if the process had stopped writing; it is refused
# now (InvalidArgument naming the property), as one whose values cannot be read already was.
Describe 'Round 29: a deserialized sample without its Elapsed or Rate' -Tag 'Security', 'Round29Lead' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 1MB
        $live = @($e | Watch-DirtyPage -Count 2 -Interval 0.1 -Workload @{ Address = $m.Start; Length = 1MB; Pattern = 'HotSet'; AccessesPerSecond = 4000; WriteRatio = 1; Seed = 3 })
        $script:clixml = Join-Path $TestDrive 'samples.xml'
        $live | Export-Clixml -LiteralPath $clixml
    }

    It 'whole, draws (the setting is what the case needs)' {
        $samples = @(Import-Clixml -LiteralPath $clixml)
        $samples[0].PSObject.TypeNames[0] | Should -Be 'Deserialized.SoftDirty.Workflows.DirtyPageSample'
        $svg = Join-Path $TestDrive 'whole.svg'
        $samples | Export-DirtyPageChart -Path $svg -ErrorVariable said -ErrorAction SilentlyContinue | Out-Null
        $said | Should -BeNullOrEmpty
        Test-Path -LiteralPath $svg | Should -BeTrue
    }

    It 'without <Property>, is refused (InvalidArgument naming it), never drawn at 0' -ForEach @(@{ Property = 'Elapsed' }, @{ Property = 'Rate' }) {
        $samples = @(Import-Clixml -LiteralPath $clixml)
        # The second sample again, without the property (a deserialized object's own properties cannot be removed).
        $without = [pscustomobject]@{}
        foreach ($p in $samples[1].PSObject.Properties) { if ($p.Name -ne $Property) { $without | Add-Member -NotePropertyName $p.Name -NotePropertyValue $p.Value } }
        $without.PSObject.TypeNames.Clear()
        foreach ($t in $samples[1].PSObject.TypeNames) { $without.PSObject.TypeNames.Add($t) }
        $without.PSObject.Properties[$Property] | Should -BeNullOrEmpty
        $samples[1] = $without
        $svg = Join-Path $TestDrive "without-$Property.svg"
        $samples | Export-DirtyPageChart -Path $svg -ErrorVariable said -ErrorAction SilentlyContinue | Out-Null
        @($said).Count | Should -Be 1
        $said[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        $said[0].Exception.Message | Should -BeLike "*has no $Property*"
    }
}
