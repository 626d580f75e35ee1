# The staged module installs as a user installs it: published to a local PSResourceGet repository
# (a folder) and installed from there with Install-PSResource, then imported and used.
Describe 'Package' -Tag 'Package' {
    BeforeAll {
        $stage = Split-Path $env:SOFTDIRTY_MODULE -Parent
        $repo = Join-Path $TestDrive 'repository'
        $pwsh = Join-Path $PSHOME 'pwsh'
        $script = Join-Path $PSScriptRoot '../Publish-LocalRepository.ps1'
        $json = & $pwsh -NoProfile -NonInteractive -Command "& '$script' -StagePath '$stage' -OutputPath '$repo' | ConvertTo-Json -Depth 3"
        $exit = $LASTEXITCODE
        $result = ($json | Where-Object { $_ -match '^\s*[\{\}"\[\]]' }) -join "`n" | ConvertFrom-Json
    }
    It 'publishes a nupkg to the local repository' {
        $exit | Should -Be 0
        Test-Path $result.Package | Should -BeTrue
        $result.Package | Should -BeLike '*SoftDirty.*.nupkg'
    }
    It 'installs with Install-PSResource and imports the installed copy' {
        $result.ModuleBase | Should -Not -BeLike "$stage*"
        $result.Version | Should -Be (Import-PowerShellDataFile $env:SOFTDIRTY_MODULE).ModuleVersion
    }
    It 'exports every cmdlet of the manifest and runs one' {
        $expected = (Import-PowerShellDataFile $env:SOFTDIRTY_MODULE).CmdletsToExport
        @($result.Cmdlets | Sort-Object) | Should -Be @($expected | Sort-Object)
        $result.KernelRelease | Should -Be (Get-Content /proc/sys/kernel/osrelease).Trim()
    }

    It 'build.ps1 Install copies the module where Import-Module finds it, with its LICENSE, and leaves it installed' {
        $modules = Join-Path $TestDrive 'modules'
        $build = Join-Path $PSScriptRoot '../../build.ps1'
        & $pwsh -NoProfile -NonInteractive -File $build Install -NoBuild -InstallPath $modules | Out-Null
        $LASTEXITCODE | Should -Be 0
        $version = (Import-PowerShellDataFile $env:SOFTDIRTY_MODULE).ModuleVersion
        Test-Path (Join-Path $modules "SoftDirty/$version/LICENSE") | Should -BeTrue
        $env:PSModulePath = $modules + [IO.Path]::PathSeparator + $env:PSModulePath
        try {
            $out = & $pwsh -NoProfile -NonInteractive -Command 'Import-Module SoftDirty; (Get-Module SoftDirty).ModuleBase; (Get-SoftDirtySupport).KernelRelease'
        } finally { $env:PSModulePath = $env:PSModulePath.Substring($modules.Length + 1) }
        $out[0] | Should -Be (Join-Path $modules "SoftDirty/$version")
        $out[1] | Should -Be (Get-Content /proc/sys/kernel/osrelease).Trim()
    }

    It 'is staged by copying: the manifest, views and types are module/''s files unchanged, the root manifest has the same version' {
        $repoRoot = Join-Path $PSScriptRoot '../..'
        foreach ($f in 'SoftDirty.psd1', 'SoftDirty.format.ps1xml', 'SoftDirty.types.ps1xml') {
            (Get-FileHash (Join-Path $stage $f)).Hash | Should -Be (Get-FileHash (Join-Path $repoRoot "module/$f")).Hash -Because "build.ps1 copies module/$f as it is"
        }
        (Import-PowerShellDataFile (Join-Path $repoRoot 'SoftDirty.psd1')).ModuleVersion | Should -Be (Import-PowerShellDataFile $env:SOFTDIRTY_MODULE).ModuleVersion
        Test-Path (Join-Path $stage 'en-US/SoftDirty.dll-Help.xml') | Should -BeTrue
    }

    It 'has a LICENSE (MIT) and release notes in the manifest' {
        $manifest = Import-PowerShellDataFile $env:SOFTDIRTY_MODULE
        $manifest.PrivateData.PSData.ReleaseNotes | Should -Match ([regex]::Escape($manifest.ModuleVersion))
        Get-Content -Raw (Join-Path (Split-Path $env:SOFTDIRTY_MODULE) 'LICENSE') | Should -Match 'MIT License'
        $manifest.Copyright | Should -Match 'the SoftDirty engineers'
    }
}
