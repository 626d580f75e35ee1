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

    It 'is staged by copying: the manifest and views are module/''s files unchanged, the root manifest has the same version' {
        $repoRoot = Join-Path $PSScriptRoot '../..'
        foreach ($f in 'SoftDirty.psd1', 'SoftDirty.format.ps1xml') {
            (Get-FileHash (Join-Path $stage $f)).Hash | Should -Be (Get-FileHash (Join-Path $repoRoot "module/$f")).Hash -Because "build.ps1 copies module/$f as it is"
        }
        (Import-PowerShellDataFile (Join-Path $repoRoot 'SoftDirty.psd1')).ModuleVersion | Should -Be (Import-PowerShellDataFile $env:SOFTDIRTY_MODULE).ModuleVersion
        Test-Path (Join-Path $stage 'en-US/SoftDirty.dll-Help.xml') | Should -BeTrue
    }

    It 'imports a second copy of itself with Import-Module -Force, and every runspace that imports it writes ranges as strings' {
        # A types.ps1xml made this fail with FormatXmlUpdateException ("The member SerializationMethod is already
        # present"): the type data is set on each import instead (src/SoftDirty/Infrastructure/ModuleTypeData.cs).
        $copy = Join-Path $TestDrive 'second-copy/SoftDirty'
        New-Item -ItemType Directory -Force -Path (Split-Path $copy) | Out-Null
        Copy-Item -Recurse -LiteralPath $stage -Destination $copy
        $probe = {
            param($First, $Second)
            $ErrorActionPreference = 'Stop'
            $range = '<S N="Value">0x1000-0x3000</S>'
            function Test-String { [Management.Automation.PSSerializer]::Serialize(@{ a = [SoftDirty.Tracking.AddressRange]::new(0x1000, 0x3000) }) -match $range }
            Import-Module $First
            'first={0}' -f (Test-String)
            try { Import-Module $Second -Force; 'second=ok' } catch { 'second=' + $_.FullyQualifiedErrorId }
            'after={0}' -f (Test-String)
            $ps = [powershell]::Create()
            try {
                'runspace={0}' -f @($ps.AddScript("Import-Module '$First'; [Management.Automation.PSSerializer]::Serialize(@{ a = [SoftDirty.Tracking.AddressRange]::new(0x1000, 0x3000) }) -match '$range'").Invoke())[0]
            } finally { $ps.Dispose() }
        }
        $out = & $pwsh -NoProfile -NonInteractive -Command "& { $probe } '$env:SOFTDIRTY_MODULE' '$(Join-Path $copy 'SoftDirty.psd1')'"
        $out | Should -Be @('first=True', 'second=ok', 'after=True', 'runspace=True')
    }

    It 'has a LICENSE (MIT) and release notes in the manifest' {
        $manifest = Import-PowerShellDataFile $env:SOFTDIRTY_MODULE
        $manifest.PrivateData.PSData.ReleaseNotes | Should -Match ([regex]::Escape($manifest.ModuleVersion))
        Get-Content -Raw (Join-Path (Split-Path $env:SOFTDIRTY_MODULE) 'LICENSE') | Should -Match 'MIT License'
        $manifest.Copyright | Should -Match 'the SoftDirty engineers'
    }
}
