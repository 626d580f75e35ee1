@{
    # Import-Module ./SoftDirty.psd1 from the repository root, after ./build.ps1 Build: this manifest only
    # points at the staged module, whose manifest (a copy of module/SoftDirty.psd1, the one source of the
    # module's metadata) loads the DLLs, views and help from out/SoftDirty. PowerShell reads cmdlet help under
    # the module's folder, so loading the staged manifest is what makes Get-Help work from here.
    # PowerShell requires a version here too: build.ps1 Build fails unless it equals module/SoftDirty.psd1's.
    ModuleVersion = '0.1.0'
    RootModule    = 'out/SoftDirty/SoftDirty.psd1'
}
