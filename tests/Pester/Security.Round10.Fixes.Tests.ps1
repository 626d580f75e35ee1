#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, tenth attack round, on the code round 9 added (new cases only; rounds 2-9 are in Security.Round*.Tests.ps1,
# Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1): the selection cache of the workflow cmdlets (one selector
# object per selection, so that an emulated process's kept WriteProtect tracker is continued).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r10')
    chmod 0700 $root
    $script:n = 0
    function script:New-Dest { $script:n++; Join-Path $root "img$n" }
    # The selection cache (internal): WorkflowSelector.Made and WorkflowSelector.Create.
    $script:Selector = (Get-Module SoftDirty).ImplementingAssembly.GetType('SoftDirty.Commands.WorkflowSelector', $true)
    $script:Made = $Selector.GetField('Made', [Reflection.BindingFlags] 'Static, NonPublic')
    $script:CreateSelector = $Selector.GetMethod('Create', [Reflection.BindingFlags] 'Static, Public, NonPublic')
}

Describe 'Round 10: the selection cache of the workflow cmdlets' -Tag Round10Fixes {
    It 'a -Mapping array the user changes after a command does not change that selection for later commands' {
        # A selector kept under the key of 'a.bin' held the caller's array: changing the variable afterwards made every
        # later -Mapping 'a.bin' of the session select b.bin too (a literal match on the changed name), silently.
        $e = New-EmulatedProcess -Name r10sel
        $a = $e | Add-EmulatedMapping -Length 16KB -Path /r10/a.bin
        $b = $e | Add-EmulatedMapping -Length 16KB -Path /r10/b.bin
        foreach ($m in $a, $b) { $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size }
        [string[]] $names = 'a.bin'
        $first = $e | Save-MemoryImage -Path (New-Dest) -Mapping $names -Confirm:$false
        $first.MappingCount | Should -Be 1
        $names[0] = 'b.bin'
        $again = $e | Save-MemoryImage -Path (New-Dest) -Mapping 'a.bin' -Confirm:$false
        $again.MappingCount | Should -Be 1
        $again.DataPages | Should -Be $first.DataPages
    }

    It 'a session selecting a new address each time does not keep every selection it made' {
        # Each selection was kept for the life of the process: a loop over addresses grew it without bound.
        $before = $Made.GetValue($null).Count
        for ($i = 0; $i -lt 3000; $i++) {
            $null = $CreateSelector.Invoke($null, @($null, [Nullable[uint64]] (0x10000000 + 4096 * $i), [Nullable[uint64]] 4096))
            if ($i % 200 -eq 199) { [GC]::Collect(); [GC]::WaitForPendingFinalizers() }
        }
        $Made.GetValue($null).Count - $before | Should -BeLessThan 1000
    }

    It 'the same selection still gives the same selector while one is held, and a changed one gives another' {
        $x = $CreateSelector.Invoke($null, @([string[]] @('[heap]'), $null, $null))
        $y = $CreateSelector.Invoke($null, @([string[]] @('[heap]'), $null, $null))
        [object]::ReferenceEquals($x, $y) | Should -BeTrue
        $z = $CreateSelector.Invoke($null, @([string[]] @('[heap]', 'x'), $null, $null))
        [object]::ReferenceEquals($x, $z) | Should -BeFalse
    }
}
