#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 26 (Compat): what this version does with what earlier and later versions of the module left behind.
# Fixtures/Round26Compat holds a chain saved by commit 52f9866 (round 13) with that version's own code, and the SHA-256 of what
# that version restored from it (Fixtures/Round26Compat/README.md). Found: a later format version said "save the image
# again", and a member of a later version said "checksum mismatch: it was edited or damaged" (now: saved by a later
# version); a member added to a manifest without changing its checksum was read as valid (the checksum covers only the
# members this version knows; now refused). The soft-dirty epoch records of versions before round 21 are tested in xunit
# (EpochRound26CompatTests): this machine's kernels need not have soft-dirty.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:fixture = Join-Path $PSScriptRoot 'Fixtures/Round26Compat/52f9866-chain'
    # What commit 52f9866's Restore-MemoryImage wrote for each image (its own code; the README of the fixtures).
    $script:restored52f9866 = @{
        full = @{ '7fffefffc000-7ffff0000000.bin' = '4D2A06199703CBFFFD2AE66EBD06BF41C05D21ED8BDA035A2DE9395687047DF4'; 'mappings.json' = 'C7D69BCFB80A26B16C475356F4F321D9E2498DF21E82A61855EE17734349D82A' }
        inc1 = @{ '7fffefffc000-7ffff0000000.bin' = '94E08574BA40A1AFF6281490626CFCFD912191099729F6528CB1FC3B8B968A39'; 'mappings.json' = 'C7D69BCFB80A26B16C475356F4F321D9E2498DF21E82A61855EE17734349D82A' }
    }
    # A copy of the fixture chain in a new folder of the test's (the checkout's modes are git's, 0644/0755).
    function Copy-Fixture([string] $Name) {
        $to = Join-Path $TestDrive $Name
        $null = New-Item -ItemType Directory $to
        Copy-Item -Recurse (Join-Path $fixture '*') $to
        $to
    }
    # The files a restore wrote, name -> SHA-256.
    function Get-RestoredHashes([string] $Folder) {
        $h = @{}
        Get-ChildItem -LiteralPath $Folder -File | ForEach-Object { $h[$_.Name] = (Get-FileHash -LiteralPath $_.FullName -Algorithm SHA256).Hash }
        $h
    }
    # Rewrites an image's manifest with $Edit (a scriptblock on the parsed object) and, with -Resign, the checksum a writer
    # that knows every member takes (Fast128 of the manifest without it, as ImageFormat.ManifestChecksum): the checksum of
    # the edited manifest as this version reads it is not needed, as the reader refuses before it.
    function Edit-Manifest([string] $Image, [scriptblock] $Edit) {
        $file = Join-Path $Image 'manifest.json'
        $m = Get-Content -Raw -LiteralPath $file | ConvertFrom-Json
        & $Edit $m
        $m | ConvertTo-Json -Depth 8 | Set-Content -LiteralPath $file -NoNewline
    }
    function Get-ErrorId([scriptblock] $Command) {
        try { $null = & $Command; 'none' } catch { $_.FullyQualifiedErrorId -replace ',.*' }
    }
}

Describe 'Round 26 Compat: images of earlier and later versions' -Tag 'Security', 'Round26Compat' {
    It 'a chain saved by commit 52f9866 (no page-hash key) tests valid, reads as it was saved and restores what that version restored, byte for byte' {
        $chain = Copy-Fixture 'old'
        foreach ($image in 'full', 'inc1') {
            Test-MemoryImage -Path "$chain/$image" | Should -BeTrue
            $dest = Join-Path $TestDrive "restored-$image"
            $null = Restore-MemoryImage -Path "$chain/$image" -Destination $dest
            $got = Get-RestoredHashes $dest
            $got.Keys | Sort-Object | Should -Be ($restored52f9866[$image].Keys | Sort-Object)
            foreach ($k in $got.Keys) { $got[$k] | Should -Be $restored52f9866[$image][$k] -Because "$image/$k as commit 52f9866 restored it" }
        }
        $info = Get-MemoryImage -Path "$chain/inc1" | Select-Object -Last 1
        $info.Kind | Should -Be 'Incremental'
        $info.DataPages | Should -Be 1
        $info.ZeroPages | Should -Be 1
    }

    It 'an image of a later format version is refused as a later version''s, by Test, Get and Restore, and nothing is restored' {
        $chain = Copy-Fixture 'v3'
        Edit-Manifest "$chain/full" { param($m) $m.version = 3 }
        $result = Test-MemoryImage -Path "$chain/full" -Detailed
        $result.Valid | Should -BeFalse
        "$($result.Problems)" | Should -Match 'saved by a later version of SoftDirty'
        Get-ErrorId { Get-MemoryImage -Path "$chain/full" -ErrorAction Stop } | Should -Be 'ImageCorrupt'
        Get-ErrorId { Restore-MemoryImage -Path "$chain/full" -Destination "$TestDrive/r-v3" -ErrorAction Stop } | Should -Be 'ImageCorrupt'
        # Its increment: the parent cannot be used, and the message says why.
        $err = $null
        $null = Restore-MemoryImage -Path "$chain/inc1" -Destination "$TestDrive/r-v3-inc" -ErrorAction SilentlyContinue -ErrorVariable err
        ($err | Select-Object -First 1).FullyQualifiedErrorId | Should -BeLike 'ImageParentMismatch,*'
        "$err" | Should -Match 'saved by a later version of SoftDirty'
        "$err" | Should -Not -Match 'save the image again'
        Test-Path "$TestDrive/r-v3", "$TestDrive/r-v3-inc" | Should -Be @($false, $false)
    }

    It 'a member this version does not know (in the manifest, a mapping, a file entry) is refused by name' -ForEach @(
        @{ Where = 'manifest'; Edit = { param($m) $m | Add-Member futureField 1 }; Name = 'futureField' }
        @{ Where = 'mapping'; Edit = { param($m) $m.mappings[0] | Add-Member kind 'guard' }; Name = 'mappings[0].kind' }
        @{ Where = 'file'; Edit = { param($m) $m.files[0] | Add-Member compression 'zstd' }; Name = 'files[0].compression' }
    ) {
        # The checksum is left as it was: this version's leaves out what it does not know, so the edited image read as valid.
        $chain = Copy-Fixture "unknown-$Where"
        Edit-Manifest "$chain/full" $Edit
        $result = Test-MemoryImage -Path "$chain/full" -Detailed
        $result.Valid | Should -BeFalse
        "$($result.Problems)" | Should -Match ([regex]::Escape("'$Name'"))
        Get-ErrorId { Restore-MemoryImage -Path "$chain/full" -Destination "$TestDrive/r-$Where" -ErrorAction Stop } | Should -Be 'ImageCorrupt'
    }
}
