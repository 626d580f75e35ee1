#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds, tests, documents, benchmarks and packages the SoftDirty module.
.DESCRIPTION
    Tasks (run in the order given; dependencies run first):
      Build     compile the engine and cmdlets and stage the module in out/SoftDirty: module/* (manifest,
                views, types), LICENSE and the DLLs copied, the help compiled (Docs). Writes only under out/
      Docs      turn docs/*.md into out/SoftDirty/en-US/SoftDirty.dll-Help.xml and about_*.help.txt
                (tests/Tools/HelpCompiler.ps1)
      Native    compile the native test target (tests/native) with cc
      Test      xunit (engine) and Pester (cmdlets) suites; results in tests/results/. Run as root, the
                Pester suite runs again as a throwaway unprivileged user (Invoke-PesterUnprivileged)
      KernelTest  the Pester tests tagged Kernel inside a qemu VM running Debian's 6.1 kernel
                (soft-dirty on): tests/vm/setup.sh, then tests/vm/run.sh tests/vm/kernel-tests.sh;
                then KernelMatrix
      KernelMatrix  the emulator against every kernel of tests/vm/kernels.list (Debian 6.1 to 7.3,
                amd64 and arm64), each booted with sdscenario alone: tests/Pester/KernelMatrix.Tests.ps1;
                and each booted again with THP always, with and without the huge zero page:
                tests/Pester/Security.Round21.Kernel.Tests.ps1
      Demo      the main job: a real process's mappings, page map and soft-dirty tracking on this kernel
      Bench     one JSON object of speed ratios measured in one run, each with its baseline and spread, and
                a noise summary (load average, noisy ratios); -Quick for small sizes and few repetitions
      Package   publish the staged module to a local PSResourceGet repository, install it from there and
                uninstall it again (a check that it installs; Install is the task that installs)
      Install   copy the staged module to the current user's module folder (or -InstallPath), where
                Import-Module SoftDirty finds it
      Clean     remove build output
.EXAMPLE
    dotnet tool restore; dotnet pwsh -NoProfile -File ./build.ps1 Test
#>
[CmdletBinding()]
param(
    # One or more tasks; "Test,KernelTest" works too (pwsh -File passes it as one string).
    [Parameter(Position = 0)]
    [ArgumentCompleter({ param($c, $p, $word) 'Build', 'Docs', 'Native', 'Test', 'KernelTest', 'KernelMatrix', 'Demo', 'Bench', 'Package', 'Install', 'Clean' | Where-Object { $_ -like "$word*" } })]
    [string[]] $Task = 'Build',
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',
    # Pester tags to run or skip (Test task).
    [string[]] $Tag,
    [string[]] $ExcludeTag,
    # Install task: the modules folder to install into (default: the current user's, on PSModulePath).
    [string] $InstallPath,
    # Install task: copy the module staged in out/SoftDirty as it is, without building first.
    [switch] $NoBuild,
    # Bench task: small sizes and few repetitions (passed to each bench script that has -Quick), for trying it out.
    [switch] $Quick
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$Root = $PSScriptRoot
$ModuleDir = Join-Path $Root 'module'
$StageDir = Join-Path $Root 'out/SoftDirty'
$ResultsDir = Join-Path $Root 'tests/results'
$NativeDir = Join-Path $Root 'tests/native'
$Version = (Import-PowerShellDataFile (Join-Path $ModuleDir 'SoftDirty.psd1')).ModuleVersion
$PesterVersion = '5.7.1'

function Invoke-Native([string] $What, [scriptblock] $Command) {
    Write-Host "==> $What" -ForegroundColor Cyan
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

# A dotnet build or restore, with TMPDIR in a folder of its own that is removed afterwards: the dotnet CLI leaves two
# empty 0700 folders (six random letters) in the temp folder at every command, and NuGet its scratch folder, so a
# machine that builds all day filled /tmp with thousands. Not for `dotnet test`: its tests use the temp folder.
function Invoke-DotnetBuild([string] $What, [scriptblock] $Command) {
    $private = [IO.Directory]::CreateTempSubdirectory('dotnet-build-').FullName
    $saved = $env:TMPDIR
    $env:TMPDIR = $private
    try { Invoke-Native $What $Command }
    finally {
        $env:TMPDIR = $saved
        Remove-Item -LiteralPath $private -Recurse -Force -ErrorAction SilentlyContinue
    }
}

# The pwsh to run children with: this one's apphost ($PSHOME/pwsh), also under `dotnet pwsh`.
function Get-ChildPwsh {
    foreach ($name in 'pwsh', 'pwsh.exe') {
        $p = Join-Path $PSHOME $name
        if (Test-Path $p) { return $p }
    }
    (Get-Process -Id $PID).Path
}

function Invoke-Build {
    Invoke-DotnetBuild 'dotnet build src/SoftDirty' {
        dotnet build (Join-Path $Root 'src/SoftDirty/SoftDirty.csproj') -c $Configuration -p:Version=$Version --nologo -v:q -clp:ErrorsOnly
    }
    # The staged module is copied, never edited: module/ (the manifest, whose paths are local to its folder,
    # the views and types), LICENSE, the two DLLs; then the help compiled into its en-US/.
    $pointer = (Import-PowerShellDataFile (Join-Path $Root 'SoftDirty.psd1')).ModuleVersion
    if ($pointer -ne $Version) { throw "SoftDirty.psd1 says ModuleVersion $pointer, module/SoftDirty.psd1 says ${Version}: make them equal." }
    Remove-Item $StageDir -Recurse -Force -ErrorAction SilentlyContinue
    $null = New-Item -ItemType Directory $StageDir -Force
    Copy-Item (Join-Path $ModuleDir '*') $StageDir -Include '*.psd1', '*.ps1xml'   # not what an older build left there
    Copy-Item (Join-Path $Root 'LICENSE') $StageDir
    $bin = Join-Path $Root "src/SoftDirty/bin/$Configuration/net8.0"
    Copy-Item (Join-Path $bin 'SoftDirty.dll'), (Join-Path $bin 'SoftDirty.Engine.dll') $StageDir
    Invoke-Docs
    Write-Host "    staged $StageDir"
}

function Invoke-Docs {
    # Get-Help looks for a binary module's cmdlet help under its ModuleBase (the manifest's folder), not beside
    # the DLL; the root SoftDirty.psd1 loads the staged manifest, so its ModuleBase is out/SoftDirty too.
    Write-Host '==> help: docs/*.md -> out/SoftDirty/en-US' -ForegroundColor Cyan
    & (Join-Path $Root 'tests/Tools/HelpCompiler.ps1') -DocsPath (Join-Path $Root 'docs') -OutputPath (Join-Path $StageDir 'en-US') `
        -ManifestPath (Join-Path $ModuleDir 'SoftDirty.psd1')
}

function Invoke-NativeBuild {
    $cc = Get-Command cc, gcc -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if (-not $cc) {
        if ((Get-Command apt-get -ErrorAction SilentlyContinue) -and (id -u) -eq '0') {
            Invoke-Native 'apt-get install gcc libc6-dev' { apt-get update -qq; apt-get install -y -qq --no-install-recommends gcc libc6-dev }
            $cc = Get-Command gcc -CommandType Application
        } else { throw 'No C compiler (cc or gcc) found: install gcc to build the native test target.' }
    }
    $out = Join-Path $NativeDir 'bin'
    $null = New-Item -ItemType Directory $out -Force
    foreach ($src in Get-ChildItem (Join-Path $NativeDir '*.c')) {
        $exe = Join-Path $out $src.BaseName
        Invoke-Native "cc $($src.Name)" { & $cc.Source -O2 -Wall -o $exe $src.FullName }
    }
}

# The test kit (tests/SoftDirty.TestKit: the scenario harness and the benchmarks), for the suites that load it
# (Pester's differential and kernel matrix, Bench): its DLL alone in out/testkit, beside the staged module, built
# against the same engine version; they load it after the module, whose engine it uses.
function Invoke-TestKitBuild {
    Invoke-DotnetBuild 'dotnet build tests/SoftDirty.TestKit' {
        dotnet build (Join-Path $Root 'tests/SoftDirty.TestKit/SoftDirty.TestKit.csproj') -c $Configuration -p:Version=$Version --nologo -v:q -clp:ErrorsOnly
    }
    $bin = Join-Path $Root "tests/SoftDirty.TestKit/bin/$Configuration/net8.0"
    $out = Join-Path $Root 'out/testkit'
    $null = New-Item -ItemType Directory $out -Force
    foreach ($f in 'SoftDirty.TestKit.dll', 'SoftDirty.TestKit.pdb') { Copy-Item (Join-Path $bin $f) $out -Force }
    Write-Host "    test kit in $out"
}

function Get-PesterModulePath {
    $have = Get-Module -ListAvailable Pester | Where-Object Version -ge ([version]'5.7') | Sort-Object Version -Descending | Select-Object -First 1
    if ($have) { return $have.Path }
    # The PowerShell Gallery is out of reach: restore Pester from NuGet (its tools/ folder is the module).
    $nugetRoot = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages' }
    $psd1 = Join-Path $nugetRoot "pester/$PesterVersion/tools/Pester.psd1"
    if (-not (Test-Path $psd1)) {
        Invoke-DotnetBuild "NuGet restore Pester $PesterVersion" {
            dotnet restore (Join-Path $Root 'tests/Tools/Tools.csproj') --nologo -v:q
        }
    }
    if (-not (Test-Path $psd1)) { throw "Pester $PesterVersion was restored but $psd1 is missing" }
    $psd1
}

function Invoke-Test {
    Invoke-Build
    Invoke-TestKitBuild
    Invoke-NativeBuild
    $null = New-Item -ItemType Directory $ResultsDir -Force
    # Every suite runs even when an earlier one failed, so one run shows every failure; the task fails at the end.
    Write-Host '==> xunit: tests/SoftDirty.Engine.Tests' -ForegroundColor Cyan
    dotnet test (Join-Path $Root 'tests/SoftDirty.Engine.Tests') -c $Configuration --nologo -v:q `
        --logger "junit;LogFilePath=$ResultsDir/xunit.junit.xml" --logger 'console;verbosity=minimal'
    $xunitExit = $LASTEXITCODE
    $pester = Get-PesterModulePath
    Write-Host "==> Pester $pester (in a child pwsh)" -ForegroundColor Cyan
    $suiteArgs = @()
    if ($Tag) { $suiteArgs += @('-Tag', ($Tag -join ',')) }
    if ($ExcludeTag) { $suiteArgs += @('-ExcludeTag', ($ExcludeTag -join ',')) }
    $runs = @(Invoke-PesterRun -Who (Get-UserName) -Pwsh (Get-ChildPwsh) -Root $Root -PesterPath $pester `
        -ModulePath (Join-Path $StageDir 'SoftDirty.psd1') -ResultsPath $ResultsDir -ResultName 'pester' -SuiteArgs $suiteArgs)
    $runs += @(Invoke-PesterUnprivileged -PesterPath $pester -SuiteArgs $suiteArgs)
    # The closing line CI reads: every run's counts, and one total.
    foreach ($r in $runs) {
        Write-Host ('    Pester as {0}: {1} passed, {2} failed, {3} skipped (exit code {4})' -f $r.Who, $r.Passed, $r.Failed, $r.Skipped, $r.ExitCode)
        foreach ($l in $r.Failures) { Write-Host "      $l" -ForegroundColor Red }
    }
    $failed = @($runs | Where-Object { $_.ExitCode -ne 0 })
    $line = 'Pester, {0} run(s): {1} passed, {2} failed, {3} skipped' -f $runs.Count, ($runs | Measure-Object Passed -Sum).Sum,
        ($runs | Measure-Object Failed -Sum).Sum, ($runs | Measure-Object Skipped -Sum).Sum
    Write-Host $line -ForegroundColor ($failed ? 'Red' : 'Green')
    $problems = @(if ($xunitExit -ne 0) { "xunit failed (exit code $xunitExit)" }
                  if ($failed) { "Pester failed as $(($failed | ForEach-Object Who) -join ' and ')" })
    if ($problems) { throw ($problems -join '; ') }
}

function Get-UserName { if ($IsWindows) { [Environment]::UserName } else { (id -un) } }

# One run of tests/Invoke-PesterSuite.ps1 in a child pwsh; its counts come from the suite's closing line.
function Invoke-PesterRun([string] $Who, [string[]] $Pwsh, [string] $Root, [string] $PesterPath, [string] $ModulePath,
                          [string] $ResultsPath, [string] $ResultName, [string[]] $SuiteArgs) {
    $run = [pscustomobject]@{ Who = $Who; Passed = 0; Failed = 0; Skipped = 0; ExitCode = -1; Failures = [Collections.Generic.List[string]]::new() }
    $argsList = @('-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'tests/Invoke-PesterSuite.ps1'), '-PesterPath', $PesterPath,
                  '-ModulePath', $ModulePath, '-ResultsPath', $ResultsPath, '-ResultName', $ResultName) + $SuiteArgs
    $command = $Pwsh[0]
    $before = @($Pwsh | Select-Object -Skip 1)
    & $command @before @argsList 2>&1 | ForEach-Object {
        $text = "$_"
        if ($text -match '^Pester: (\d+) passed, (\d+) failed, (\d+) skipped') {
            $run.Passed = [int] $Matches[1]; $run.Failed = [int] $Matches[2]; $run.Skipped = [int] $Matches[3]
        }
        elseif ($text -match '^(FAILED TEST: |    \| )') { $run.Failures.Add($text) }
        Write-Host $text
    }
    $run.ExitCode = $LASTEXITCODE
    if ($run.ExitCode -ne 0 -and $run.Failed -eq 0) { $run.Failed = 1 }   # a run that died before its closing line
    $run
}

# Real users are not root. Run as root, the host Pester suite runs a second time as a system user made for
# it (removed afterwards, also on failure), with its own HOME and TMPDIR. Everything it runs is copied into
# one 0755 temp folder (the dotnet runtime, pwsh, Pester, the staged module, tests/, docs/, module/),
# because the local tool and Pester live under the 0700 home of root; the folder goes with the user.
function Invoke-PesterUnprivileged([string] $PesterPath, [string[]] $SuiteArgs) {
    $why = if (-not $IsLinux) { 'not Linux' }
           elseif ((id -u) -ne '0') { 'this run is not root, so it already is the unprivileged run' }
           else {
               $missing = @('useradd', 'userdel', 'setpriv' | Where-Object { -not (Get-Command $_ -CommandType Application -ErrorAction SilentlyContinue) })
               if ($missing) { "$($missing -join ', ') not found (util-linux, passwd)" }
           }
    if ($why) { Write-Host "==> Pester as an unprivileged user: SKIPPED, $why" -ForegroundColor Yellow; return }
    $user = 'sdtest-' + [guid]::NewGuid().ToString('N').Substring(0, 12)
    $work = Join-Path ([IO.Path]::GetTempPath()) "softdirty-$user"
    Write-Host "==> Pester as unprivileged user $user (copies in $work)" -ForegroundColor Cyan
    $made = $false
    try {
        $null = New-Item -ItemType Directory $work
        chmod 0755 $work
        # The runtime this pwsh runs on, pwsh itself, Pester.
        # (A self-contained pwsh carries its runtime in $PSHOME; a framework-dependent one, the local tool, does not.)
        $fx = [System.Runtime.InteropServices.RuntimeEnvironment]::GetRuntimeDirectory().TrimEnd('/')
        $dotnet = Join-Path $work 'dotnet'
        $selfContained = $fx -eq $PSHOME.TrimEnd('/')
        if (-not $selfContained) {
            $dotnetRoot = Split-Path (Split-Path (Split-Path $fx))
            $null = New-Item -ItemType Directory (Join-Path $dotnet 'shared/Microsoft.NETCore.App') -Force
            Copy-Item (Join-Path $dotnetRoot 'dotnet') $dotnet
            Copy-Item (Join-Path $dotnetRoot 'host') $dotnet -Recurse
            Copy-Item $fx (Join-Path $dotnet 'shared/Microsoft.NETCore.App') -Recurse
        }
        Copy-Item $PSHOME (Join-Path $work 'pwsh') -Recurse
        Copy-Item (Split-Path $PesterPath) (Join-Path $work 'Pester') -Recurse
        # The repository parts the suite reads, in the same layout.
        $repo = Join-Path $work 'repo'
        foreach ($d in 'out/SoftDirty', 'docs', 'module', 'tests/Pester', 'tests/Tools/HelpCompiler.ps1', 'tests/native', 'tests/scenarios', 'tests/vm') {
            $null = New-Item -ItemType Directory (Split-Path (Join-Path $repo $d)) -Force
            Copy-Item (Join-Path $Root $d) (Join-Path $repo $d) -Recurse
        }
        Copy-Item (Join-Path $Root 'out/testkit') (Join-Path $repo 'out/testkit') -Recurse   # the test kit (Invoke-TestKitBuild)
        Copy-Item (Join-Path $Root 'tests/*.ps1') (Join-Path $repo 'tests')
        Copy-Item (Join-Path $Root 'SoftDirty.psd1'), (Join-Path $Root 'build.ps1') $repo
        chmod -R 'a+rX' $work
        chmod 0755 (Join-Path $work 'pwsh/pwsh')
        if (-not $selfContained) { chmod 0755 (Join-Path $dotnet 'dotnet') }

        $home_ = Join-Path $work 'home'
        useradd --system --user-group --no-create-home --home-dir $home_ --shell /bin/sh $user
        if ($LASTEXITCODE -ne 0) { throw "useradd $user failed (exit code $LASTEXITCODE)" }
        $made = $true
        $uid = (id -u $user); $gid = (id -g $user)
        $tmp = Join-Path $work 'tmp'
        $results = Join-Path $work 'results'
        foreach ($d in $home_, $tmp, $results) {
            $null = New-Item -ItemType Directory $d
            chown "${uid}:${gid}" $d
            chmod 0700 $d
        }
        $env_ = @("HOME=$home_", "TMPDIR=$tmp", "USER=$user", "LOGNAME=$user",
                  "PATH=$(Join-Path $work 'pwsh'):${dotnet}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  'DOTNET_CLI_TELEMETRY_OPTOUT=1', 'DOTNET_NOLOGO=1', 'POWERSHELL_TELEMETRY_OPTOUT=1', 'POWERSHELL_UPDATECHECK=Off', 'LANG=C.UTF-8')
        if (-not $selfContained) { $env_ += "DOTNET_ROOT=$dotnet" }
        $runAs = @('setpriv', "--reuid=$uid", "--regid=$gid", '--clear-groups', '--', 'env', '-i') + $env_ + @((Join-Path $work 'pwsh/pwsh'))
        Push-Location $repo
        try {
            $run = Invoke-PesterRun -Who "unprivileged user $user" -Pwsh $runAs -Root $repo -PesterPath (Join-Path $work 'Pester/Pester.psd1') `
                -ModulePath (Join-Path $repo 'out/SoftDirty/SoftDirty.psd1') -ResultsPath $results -ResultName 'pester-unprivileged' -SuiteArgs $SuiteArgs
        } finally { Pop-Location }
        Copy-Item (Join-Path $results 'pester-unprivileged.*.xml') $ResultsDir -ErrorAction SilentlyContinue
        $run
    } finally {
        if ($made) {
            # Whatever the run left behind as that user (all started by this run), then the user and its group.
            foreach ($status in Get-ChildItem /proc -Directory -ErrorAction SilentlyContinue | Where-Object Name -match '^\d+$') {
                $uidLine = Get-Content (Join-Path $status.FullName 'status') -ErrorAction SilentlyContinue | Where-Object { $_ -like 'Uid:*' }
                if ($uidLine -and ($uidLine -split '\s+')[1] -eq $uid) { Stop-Process -Id ([int] $status.Name) -Force -ErrorAction SilentlyContinue }
            }
            userdel $user
            if ($LASTEXITCODE -ne 0) { Write-Warning "userdel $user failed (exit code $LASTEXITCODE): remove the user by hand" }
            # Its soft-dirty epoch folder (/tmp/softdirty-epochs-UID: chosen from the uid, not from its TMPDIR).
            Remove-Item "/tmp/softdirty-epochs-$uid" -Recurse -Force -ErrorAction SilentlyContinue
            if (Get-Command groupdel -CommandType Application -ErrorAction SilentlyContinue) {
                if (getent group $user) { groupdel $user }
            }
        }
        Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
    }
}

# The Kernel-tagged Pester tests on a kernel with soft-dirty: a qemu VM boots Debian's 6.1 kernel with
# this machine's / shared read-only and the repository read-write, and ONE pwsh runs the tests there.
function Invoke-KernelTest {
    Invoke-Build
    Invoke-TestKitBuild
    Invoke-NativeBuild
    $vm = Join-Path $Root 'tests/vm'
    Invoke-Native 'tests/vm/setup.sh (qemu, busybox-static, Debian 6.1 kernel, initrd; cached)' { bash (Join-Path $vm 'setup.sh') }
    $null = New-Item -ItemType Directory $ResultsDir -Force
    # The guest runs this machine's pwsh and Pester (run.sh passes SOFTDIRTY_* variables in).
    $env:SOFTDIRTY_PWSH = Get-ChildPwsh
    $env:SOFTDIRTY_PESTER = Get-PesterModulePath
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    Invoke-Native 'tests/vm/run.sh tests/vm/kernel-tests.sh (Pester -Tag Kernel in the VM)' {
        bash (Join-Path $vm 'run.sh') (Join-Path $vm 'kernel-tests.sh')
    }
    Write-Host ('    VM step passed in {0:n0} s' -f $watch.Elapsed.TotalSeconds)
    Invoke-KernelMatrix -Built
}

# The emulator against every kernel of tests/vm/kernels.list: each boots under qemu (tests/vm/matrix.sh)
# with sdscenario alone, one after another; a child pwsh runs tests/Pester/KernelMatrix.Tests.ps1, which
# generates the scenarios, boots each kernel and compares its recorded prints with the emulator, and round 21's
# kernel file, which boots each again with THP always (with and without the huge zero page).
function Invoke-KernelMatrix([switch] $Built) {
    if (-not $Built) { Invoke-Build }
    if (-not $Built) { Invoke-TestKitBuild }
    $null = New-Item -ItemType Directory $ResultsDir -Force
    $env:SOFTDIRTY_KERNEL_MATRIX = '1'
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    try {
        $files = 'KernelMatrix.Tests.ps1', 'Security.Round21.Kernel.Tests.ps1' | ForEach-Object { Join-Path $Root "tests/Pester/$_" }
        Invoke-Native 'Pester tests/Pester/KernelMatrix.Tests.ps1 and Security.Round21.Kernel.Tests.ps1 (each kernel of tests/vm/kernels.list under qemu)' {
            & (Get-ChildPwsh) -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Invoke-PesterSuite.ps1') -PesterPath (Get-PesterModulePath) `
                -ModulePath (Join-Path $StageDir 'SoftDirty.psd1') -ResultsPath $ResultsDir -ResultName 'pester-kernel-matrix' `
                -Path ($files -join ',')
        }
    } finally { Remove-Item Env:SOFTDIRTY_KERNEL_MATRIX }
    Write-Host ('    kernel matrix passed in {0:n0} s' -f $watch.Elapsed.TotalSeconds)
}

function Invoke-Package {
    Invoke-Build
    $pwsh = Get-ChildPwsh
    & $pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Publish-LocalRepository.ps1') -StagePath $StageDir -OutputPath (Join-Path $Root 'out/repository')
    if ($LASTEXITCODE -ne 0) { throw "Package failed (exit code $LASTEXITCODE)" }
}

function Invoke-Install {
    if (-not $NoBuild) { Invoke-Build }
    if (-not (Test-Path (Join-Path $StageDir 'SoftDirty.psd1'))) { throw "Nothing staged in ${StageDir}: run the Build task first." }
    # The current user's module folder: ~/.local/share/powershell/Modules on Linux, on PSModulePath by default.
    $modules = if ($InstallPath) { $InstallPath } else { Join-Path ([Environment]::GetFolderPath('LocalApplicationData')) 'powershell/Modules' }
    $target = Join-Path $modules "SoftDirty/$Version"
    Remove-Item $target -Recurse -Force -ErrorAction SilentlyContinue
    $null = New-Item -ItemType Directory $target -Force
    Copy-Item (Join-Path $StageDir '*') $target -Recurse -Force
    Write-Host "    installed SoftDirty $Version in $target (Import-Module SoftDirty; remove the folder to uninstall)"
}

function Invoke-Demo {
    Invoke-Build
    Invoke-NativeBuild
    $pwsh = Get-ChildPwsh
    & $pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Demo.ps1') -ModulePath (Join-Path $StageDir 'SoftDirty.psd1') -TargetPath (Join-Path $NativeDir 'bin/sdtarget')
    if ($LASTEXITCODE -ne 0) { throw "Demo failed (exit code $LASTEXITCODE)" }
}

function Invoke-Bench {
    Invoke-Build
    Invoke-TestKitBuild
    Invoke-NativeBuild
    $pwsh = Get-ChildPwsh
    $module = Join-Path $StageDir 'SoftDirty.psd1'
    # Each script prints one JSON report (tests/BenchSupport.psm1: its ratios with baseline and spread, its run's
    # load average); -Quick goes to those that take it.
    $scripts = [ordered]@{
        pagemap   = @{ Path = 'tests/Bench.ps1'; Arguments = @('-TargetPath', (Join-Path $NativeDir 'bin/sdtarget')) }
        scaling   = @{ Path = 'tests/BenchScaling.ps1'; Arguments = @() }
        workflows = @{ Path = 'tests/BenchWorkflows.ps1'; Arguments = @() }
        writeTracking = @{ Path = 'tests/BenchWriteTracking.ps1'; Arguments = @() }
    }
    # Anything a script wrote before its JSON (progress lines) is shown, not parsed.
    function Read-Json([string[]] $Lines) {
        $at = [array]::FindIndex($Lines, [Predicate[string]] { param($l) $l -match '^\s*\{' })
        if ($at -lt 0) { throw "no JSON in: $($Lines -join "`n")" }
        if ($at -gt 0) { $Lines[0..($at - 1)] | Write-Host }
        ($Lines[$at..($Lines.Count - 1)] -join "`n") | ConvertFrom-Json
    }
    $reports = [ordered]@{}
    foreach ($name in $scripts.Keys) {
        $path = Join-Path $Root $scripts[$name].Path
        $arguments = @('-ModulePath', $module) + $scripts[$name].Arguments
        if ($Quick -and (Get-Command $path).Parameters.ContainsKey('Quick')) { $arguments += '-Quick' }
        Write-Host "==> $($scripts[$name].Path) $($arguments -join ' ')" -ForegroundColor Cyan
        $lines = & $pwsh -NoProfile -NonInteractive -File $path @arguments
        if ($LASTEXITCODE -ne 0) { throw "$($scripts[$name].Path) failed (exit code $LASTEXITCODE)" }
        $reports[$name] = Read-Json $lines
    }
    # The CRIU comparison in the soft-dirty VM (tests/vm/bench-criu.sh; {"skipped": why} where it cannot run).
    $criuJson = Join-Path $ResultsDir 'bench-criu.report.json'
    $null = New-Item -ItemType Directory $ResultsDir -Force
    $env:SOFTDIRTY_PWSH = $pwsh
    Write-Host "==> tests/vm/bench-criu.sh $criuJson" -ForegroundColor Cyan
    bash (Join-Path $Root 'tests/vm/bench-criu.sh') $criuJson
    if ($LASTEXITCODE -ne 0) { throw "bench-criu.sh failed (exit code $LASTEXITCODE)" }
    $reports['criu'] = Get-Content -LiteralPath $criuJson -Raw | ConvertFrom-Json
    # The run's noise, over every report that carries ratios: each noisy ratio and each unmet target named.
    $noisy = [Collections.Generic.List[string]]::new()
    $unmet = [Collections.Generic.List[string]]::new()
    $loads = [Collections.Generic.List[double]]::new()
    foreach ($name in $reports.Keys) {
        $r = $reports[$name]
        if ($r.PSObject.Properties['ratios']) {
            foreach ($x in @($r.ratios)) {
                if ($x.PSObject.Properties['noisy'] -and $x.noisy) { $noisy.Add("$name`: $($x.name) (spread $($x.spreadPercent)%)") }
                if ($x.PSObject.Properties['met'] -and $x.met -eq $false) { $unmet.Add("$name`: $($x.name) ($($x.ratio) vs target $($x.target))") }
            }
        }
        if ($r.PSObject.Properties['noise']) { foreach ($l in $r.noise.loadBefore, $r.noise.loadAfter) { if ($l) { $loads.Add([double]$l.one) } } }
    }
    $summary = [ordered]@{
        quick          = [bool]$Quick
        cores          = [Environment]::ProcessorCount
        loadOneMinute  = $(if ($loads.Count) { [ordered]@{ min = ($loads | Measure-Object -Minimum).Minimum; max = ($loads | Measure-Object -Maximum).Maximum } } else { $null })
        noisy          = [bool]($noisy.Count -gt 0)
        noisyRatios    = $noisy
        targetsNotMet  = $unmet
    }
    $all = [ordered]@{ noise = $summary }
    foreach ($name in $reports.Keys) { $all[$name] = $reports[$name] }
    $all | ConvertTo-Json -Depth 8
}

function Invoke-Clean {
    foreach ($d in 'out', 'tests/results', 'tests/native/bin', 'src/SoftDirty/bin', 'src/SoftDirty/obj', 'src/SoftDirty.Engine/bin', 'src/SoftDirty.Engine/obj',
                   'tests/SoftDirty.Engine.Tests/bin', 'tests/SoftDirty.Engine.Tests/obj', 'tests/SoftDirty.TestKit/bin', 'tests/SoftDirty.TestKit/obj', 'tests/Tools/obj') {
        Remove-Item (Join-Path $Root $d) -Recurse -Force -ErrorAction SilentlyContinue
    }
    # What builds before the out/-only layout wrote into the tree (module/*.dll, module/en-US, en-US/).
    Remove-Item (Join-Path $ModuleDir '*.dll'), (Join-Path $ModuleDir '*.pdb'), (Join-Path $ModuleDir 'en-US'), (Join-Path $Root 'en-US') -Recurse -Force -ErrorAction SilentlyContinue
}

$Tasks = 'Build', 'Docs', 'Native', 'Test', 'KernelTest', 'KernelMatrix', 'Demo', 'Bench', 'Package', 'Install', 'Clean'
$Task = @($Task -split ',' | ForEach-Object Trim | Where-Object { $_ })
foreach ($t in $Task) {
    if ($t -notin $Tasks) { throw "Unknown task '$t'; tasks: $($Tasks -join ', ')." }
}
foreach ($t in $Task) {
    switch ($t) {
        'Build' { Invoke-Build }
        'Docs' { Invoke-Docs }
        'Native' { Invoke-NativeBuild }
        'Test' { Invoke-Test }
        'KernelTest' { Invoke-KernelTest }
        'KernelMatrix' { Invoke-KernelMatrix }
        'Demo' { Invoke-Demo }
        'Bench' { Invoke-Bench }
        'Package' { Invoke-Package }
        'Install' { Invoke-Install }
        'Clean' { Invoke-Clean }
    }
}
