<#
.SYNOPSIS
    Publishes the staged module to a local PSResourceGet repository (a folder), installs it from there
    into a private scope, imports it and runs a cmdlet: the module installs as a user would install it.
#>
param(
    [Parameter(Mandatory)] [string] $StagePath,
    [Parameter(Mandatory)] [string] $OutputPath,
    # Leave the installed module in place (by default it is uninstalled again at the end).
    [switch] $Keep
)
$ErrorActionPreference = 'Stop'
Import-Module Microsoft.PowerShell.PSResourceGet
# NuGet keeps its settings under the ApplicationData folder (~/.config on Linux), which .NET reports as ""
# while it does not exist: a fresh user would get ./NuGet/NuGet.Config in the current folder. Make it.
$appData = [Environment]::GetFolderPath('ApplicationData', 'DoNotVerify')
if ($appData) { $null = New-Item -ItemType Directory $appData -Force }
$repoName = 'SoftDirtyLocal'
$null = New-Item -ItemType Directory $OutputPath -Force
Get-ChildItem $OutputPath -Filter 'softdirty.*.nupkg' | Remove-Item -Force
if (Get-PSResourceRepository -Name $repoName -ErrorAction SilentlyContinue) { Unregister-PSResourceRepository -Name $repoName }
Register-PSResourceRepository -Name $repoName -Uri (Resolve-Path $OutputPath).Path -Trusted
try {
    Publish-PSResource -Path $StagePath -Repository $repoName
    $nupkg = Get-ChildItem $OutputPath -Filter '*.nupkg' | Select-Object -First 1
    Write-Host "published $($nupkg.FullName)"
    $version = (Import-PowerShellDataFile (Join-Path $StagePath 'SoftDirty.psd1')).ModuleVersion
    Install-PSResource -Name SoftDirty -Version $version -Repository $repoName -Scope CurrentUser -TrustRepository -Reinstall
    $installed = Get-InstalledPSResource -Name SoftDirty -Version $version -Scope CurrentUser
    Write-Host "installed $($installed.Name) $($installed.Version) in $($installed.InstalledLocation)"
    $m = Import-Module SoftDirty -RequiredVersion $version -Force -PassThru
    Write-Host "imported SoftDirty $($m.Version) from $($m.ModuleBase) with $($m.ExportedCmdlets.Count) cmdlets"
    $support = Get-SoftDirtySupport
    [pscustomobject]@{ Package = $nupkg.FullName; ModuleBase = $m.ModuleBase; Version = $m.Version.ToString(); Cmdlets = @($m.ExportedCmdlets.Keys); KernelRelease = $support.KernelRelease }
}
finally {
    Remove-Module SoftDirty -ErrorAction SilentlyContinue
    if (-not $Keep) { Uninstall-PSResource -Name SoftDirty -Scope CurrentUser -ErrorAction SilentlyContinue }
    Unregister-PSResourceRepository -Name $repoName -ErrorAction SilentlyContinue
}
