# Helpers of the Workflows.*.Tests.ps1 files: the wftarget process (tests/native/wftarget.c) and a PNG reader.
$script:Exe = Join-Path $PSScriptRoot '../native/bin/wftarget'

function Start-WfTarget {
    if (-not (Test-Path $script:Exe)) { throw "wftarget is not built: run ./build.ps1 Native ($script:Exe)" }
    $psi = [System.Diagnostics.ProcessStartInfo]::new($script:Exe)
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $p = [System.Diagnostics.Process]::Start($psi)
    $ready = $p.StandardOutput.ReadLine()
    if ($ready -notmatch '^READY (\d+) (\d+)$') { throw "wftarget said '$ready'" }
    [pscustomobject]@{ Process = $p; Id = [int]$Matches[1]; PageSize = [int]$Matches[2] }
}

function Send-WfTarget($Target, [string] $Command) {
    $Target.Process.StandardInput.WriteLine($Command)
    $line = $Target.Process.StandardOutput.ReadLine()
    if ($line -notlike 'OK*') { throw "wftarget: '$Command' -> '$line'" }
    $line.Substring(2).Trim()
}

# Maps and fills a region; returns its address as a number and as hex for the target's commands.
function New-WfRegion($Target, [int] $Pages, [int] $Seed = 1) {
    $hex = Send-WfTarget $Target "map $Pages"
    $null = Send-WfTarget $Target "fill $hex $Pages $Seed"
    [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = $Pages }
}

function Stop-WfTarget($Target) {
    if (-not $Target) { return }
    try { kill -CONT $Target.Id 2>$null } catch { }
    if (-not $Target.Process.HasExited) { $Target.Process.Kill() }
    $Target.Process.WaitForExit(2000) | Out-Null
}

function Get-ProcessState([int] $Id) {
    $stat = Get-Content "/proc/$Id/stat" -Raw
    $stat.Substring($stat.LastIndexOf(')') + 2, 1)
}

# Decodes an 8-bit RGB or RGBA PNG into @{ Width; Height; Pixel(x, y) -> @(r, g, b) }.
function Read-Png([string] $Path) {
    if (-not ('SdPngUnfilter' -as [type])) {
    Add-Type -TypeDefinition @'
public static class SdPngUnfilter {
    public static int BE32(byte[] b, int i) { return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]; }
    public static void Run(byte[] data, byte[] img, int w, int h, int bpp) {
        int stride = w * bpp;
        for (int y = 0; y < h; y++) {
            int f = data[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride;
            for (int i = 0; i < stride; i++) {
                int a = i >= bpp ? img[dst + i - bpp] : 0, b = y > 0 ? img[dst + i - stride] : 0, c = (i >= bpp && y > 0) ? img[dst + i - stride - bpp] : 0;
                int x = data[src + i], v;
                switch (f) {
                    case 0: v = x; break; case 1: v = x + a; break; case 2: v = x + b; break; case 3: v = x + ((a + b) >> 1); break;
                    default: { int p = a + b - c, pa = System.Math.Abs(p - a), pb = System.Math.Abs(p - b), pc = System.Math.Abs(p - c); v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c); break; }
                }
                img[dst + i] = (byte)v;
            }
        }
    }
}
'@ -ErrorAction SilentlyContinue
    }
    $bytes = [IO.File]::ReadAllBytes($Path)
    $pos = 8; $idat = [IO.MemoryStream]::new(); $w = 0; $h = 0; $ct = 0
    while ($pos -lt $bytes.Length) {
        $len = [SdPngUnfilter]::BE32($bytes, $pos)
        $type = [Text.Encoding]::ASCII.GetString($bytes, $pos + 4, 4)
        if ($type -eq 'IHDR') {
            $w = [SdPngUnfilter]::BE32($bytes, $pos + 8)
            $h = [SdPngUnfilter]::BE32($bytes, $pos + 12)
            if ($bytes[$pos + 16] -ne 8) { throw 'only 8-bit PNGs' }
            $ct = $bytes[$pos + 17]
        } elseif ($type -eq 'IDAT') { $idat.Write($bytes, $pos + 8, $len) }
        $pos += 12 + $len
    }
    $bpp = switch ($ct) { 2 { 3 } 6 { 4 } default { throw "PNG colour type $ct" } }
    $idat.Position = 0
    $z = [IO.Compression.ZLibStream]::new($idat, [IO.Compression.CompressionMode]::Decompress)
    $raw = [IO.MemoryStream]::new(); $z.CopyTo($raw); $data = $raw.ToArray()
    $stride = $w * $bpp
    $img = [byte[]]::new($stride * $h)
    [SdPngUnfilter]::Run($data, $img, $w, $h, $bpp)
    $o = [pscustomobject]@{ Width = $w; Height = $h; Bpp = $bpp; Data = $img }
    $o | Add-Member ScriptMethod Pixel { param($x, $y) $i = ($y * $this.Width + $x) * $this.Bpp; @($this.Data[$i], $this.Data[$i + 1], $this.Data[$i + 2]) }
    $o
}

Export-ModuleMember -Function Start-WfTarget, Send-WfTarget, New-WfRegion, Stop-WfTarget, Get-ProcessState, Read-Png
