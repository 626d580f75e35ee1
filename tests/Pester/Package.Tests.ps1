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
}
