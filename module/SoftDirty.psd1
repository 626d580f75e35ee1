@{
    # The module's manifest, the one source of its metadata (version, exports, files). build.ps1 copies it
    # as it is into out/SoftDirty beside the DLLs and help, so its paths are local to that folder; it passes
    # ModuleVersion to the compiler. (The SoftDirty.psd1 at the repository root only points at the staged copy.)
    ModuleVersion          = '0.1.0'
    GUID                   = '5d1e7a3c-9b1f-4c6e-8a2d-3f0b7c4e9a61'
    RootModule             = 'SoftDirty.dll'
    Author                 = 'SoftDirty engineers'
    CompanyName            = 'SoftDirty'
    Copyright              = '(c) 2026 the SoftDirty engineers. MIT License (LICENSE).'
    Description            = 'Which memory pages did a process write to since I last looked? Linux soft-dirty bits, pagemap, clear_refs, smaps and PAGEMAP_SCAN in the PowerShell pipeline, with an emulator of the kernel''s page tables for kernels and platforms without them.'
    PowerShellVersion      = '7.4'
    CompatiblePSEditions   = @('Core')
    FormatsToProcess       = @('SoftDirty.format.ps1xml')
    CmdletsToExport        = @(
        'Get-PageMap'
        'Clear-SoftDirty'
        'Clear-PageReference'
        'Enable-WriteTracking'
        'Disable-WriteTracking'
        'Get-MemoryMapping'
        'Get-SoftDirtySupport'
        'Search-PageMap'
        'New-EmulatedProcess'
        'Add-EmulatedMapping'
        'Remove-EmulatedMapping'
        'Move-EmulatedMapping'
        'Set-EmulatedProtection'
        'Write-EmulatedMemory'
        'Read-EmulatedMemory'
        'Copy-EmulatedProcess'
        'Invoke-EmulatedMadvise'
        'Register-EmulatedWriteProtect'
        'Invoke-EmulatedWorkload'
        'Watch-DirtyPage'
        'Save-MemoryImage'
        'Get-MemoryImage'
        'Test-MemoryImage'
        'Restore-MemoryImage'
        'Invoke-PreCopyMigration'
        'Export-DirtyPageChart'
        'Receive-MemoryImage'
    )
    FunctionsToExport      = @()
    VariablesToExport      = @()
    AliasesToExport        = @()
    PrivateData            = @{
        PSData = @{
            Tags         = @('Linux', 'PSEdition_Core', 'SoftDirty', 'pagemap', 'memory', 'CRIU', 'checkpoint', 'migration')
            ReleaseNotes = '0.1.0: Get-PageMap, Search-PageMap (PAGEMAP_SCAN), Get-MemoryMapping, Clear-SoftDirty, Clear-PageReference and Get-SoftDirtySupport over /proc; an emulator of the kernel page-table rules (New-EmulatedProcess and the *-Emulated* cmdlets); workflows: Watch-DirtyPage, Save/Get/Test/Restore-MemoryImage, Invoke-PreCopyMigration and Export-DirtyPageChart (charts of samples from jobs and remote sessions too). Piped mappings and ranges select their own pages; page addresses are the Start property; a bare /proc cmdlet prompts for -Id. MIT licensed (LICENSE).'
        }
    }
}
