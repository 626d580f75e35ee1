using System;
using System.IO;
using System.Linq;
using System.Threading;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Emulation;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Issue 13, fifth attack round (workflows): writes that no bit of the tracked process's page table shows (a
/// shared file mapping written through another mapping or write(2)), chart text a process controls, and trace
/// files that are devices, FIFOs or endless lines. The Pester side is tests/Pester/Security.Round5.Workflows.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed unsafe partial class WorkflowRound5Tests : IDisposable
{
    private const int Pages = 16;
    private static readonly int Ps = Environment.SystemPageSize;
    private readonly string _file = Path.Combine(Path.GetTempPath(), $"sd-r5-{Guid.NewGuid():n}");
    private SafeFileHandle? _handle;
    private nint _tracked, _other;

    /// <summary>
    /// The same file mapped MAP_SHARED twice into this process: the tracked mapping and another one, which stands
    /// for another process sharing the pages (the tracked page table never sees its writes).
    /// </summary>
    private void MapTwice()
    {
        _handle = File.OpenHandle(_file, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite);
        RandomAccess.Write(_handle, new byte[Pages * Ps], 0);
        int fd = (int)_handle.DangerousGetHandle();
        _tracked = Native.Mmap(0, (nuint)(Pages * Ps), Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, fd, 0);
        _other = Native.Mmap(0, (nuint)(Pages * Ps), Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, fd, 0);
        Assert.NotEqual(Native.MAP_FAILED, _tracked);
        Assert.NotEqual(Native.MAP_FAILED, _other);
        for (int i = 0; i < Pages; i++) ((byte*)_tracked)[i * Ps] = (byte)(i + 1); // present in the tracked mapping
    }

    public void Dispose()
    {
        if (_tracked != 0) Native.Munmap(_tracked, (nuint)(Pages * Ps));
        if (_other != 0) Native.Munmap(_other, (nuint)(Pages * Ps));
        _handle?.Dispose();
        File.Delete(_file);
    }

    private bool Tracked(MemoryMapping m) => m.Start == (ulong)_tracked;

    private ulong[] PagesOf(DirtyPageSet set) =>
        set.Ranges.SelectMany(r => Enumerable.Range(0, (int)(r.Size / (ulong)Ps)).Select(i => r.Start + (ulong)i * (ulong)Ps))
            .Where(a => a >= (ulong)_tracked && a < (ulong)_tracked + Pages * (ulong)Ps).Select(a => (a - (ulong)_tracked) / (ulong)Ps).ToArray();

    [HostFact(HostNeeds.UffdWriteProtectAsync)]
    public void WriteProtect_SharedMappingWrittenElsewhere_IsFoundByContent()
    {
        MapTwice();
        using var src = ProcPageSource.Open(Environment.ProcessId);
        using var t = DirtyTracker.Create(src, TrackingMethod.WriteProtect, PageHashAlgorithm.Fast128, Tracked);
        t.Reset();
        ((byte*)_other)[4 * Ps + 7] = 0xEE;                  // another mapping of the same pages
        RandomAccess.Write(_handle!, new byte[] { 0x42 }, 9 * Ps); // write(2) into the page cache
        var set = t.Collect();
        Assert.Equal(TrackingMethod.WriteProtect, set.Method);
        Assert.Equal(new ulong[] { 4, 9 }, PagesOf(set));
        Assert.Empty(PagesOf(t.Collect()));
        ((byte*)_tracked)[2 * Ps] = 0x99; // the process's own write is found as before
        Assert.Equal(new ulong[] { 2 }, PagesOf(t.Collect()));
    }

    [Fact]
    public void ChangeableByOthers_SharedAndFileMappings_NotPrivateAnonymous()
    {
        Assert.True(ContentCheckedTracker.ChangeableByOthers(new MemoryMapping { Shared = true, Kind = MappingKind.SharedAnonymous }));
        Assert.True(ContentCheckedTracker.ChangeableByOthers(new MemoryMapping { Kind = MappingKind.File, Path = "/usr/lib/x.so" }));
        Assert.False(ContentCheckedTracker.ChangeableByOthers(new MemoryMapping { Kind = MappingKind.Anonymous }));
        Assert.False(ContentCheckedTracker.ChangeableByOthers(new MemoryMapping { Kind = MappingKind.Heap }));
    }

    [Fact]
    public void EmulatedProcess_KeepsItsPageTableTracker()
    {
        var e = new EmulatedProcess("r5", KernelProfile.Get(KernelProfile.DefaultName));
        using var t = DirtyTracker.Create(new EmulatedTarget(e), TrackingMethod.SoftDirty);
        Assert.IsType<SoftDirtyTracker>(t);
    }

    [Fact]
    public void WriteProtectPieces_NeverRunPastTheSpan()
    {
        // A stack 16 KiB below the top of the address space (ASLR puts it there now and then): the piece ran to
        // 0x800000200000, and PAGEMAP_SCAN failed with EFAULT (Enable-WriteTracking as the unprivileged user).
        const ulong Top = 0x7ffffffff000, Mib = 1UL << 20;
        var spans = new[] { new PageSpan(Top - 0x4000, Top, null), new PageSpan(0x10000, 0x11000, null), new PageSpan(0x40000000, 0x40000000 + 200 * Mib, null) };
        var pieces = WriteProtectTracker.Pieces(spans);
        Assert.Equal((0, Top - 0x4000, Top), pieces[0]);
        Assert.Equal((1, 0x10000UL, 0x11000UL), pieces[1]);
        var big = pieces.Where(p => p.Span == 2).ToList();
        Assert.Equal(0x40000000UL, big[0].Start);
        Assert.Equal(0x40000000UL + 200 * Mib, big[^1].End);
        for (int i = 1; i < big.Count; i++) Assert.Equal(big[i - 1].End, big[i].Start);
        Assert.All(pieces, p => Assert.True(p.End > p.Start && p.End <= spans[p.Span].End));
    }

    [Theory]
    [InlineData("a\u0001b")]
    [InlineData("x\u0000y")]
    [InlineData("lone \uD800 surrogate")]
    [InlineData("\uFFFE\uFFFF")]
    [InlineData("<script>alert(1)</script>&")]
    public void Chart_TextAProcessControls_IsWellFormedAndEscaped(string name)
    {
        var point = new ChartPoint(1, 5, Ps, new[] { new AddressRange(0x10000, 0x12000) });
        var svg = DirtyChart.Render(new[] { new ChartSeries(name, new[] { point }.ToList()), new ChartSeries("b", new[] { point }.ToList()) }, name);
        var doc = new System.Xml.XmlDocument();
        doc.LoadXml(svg); // throws on a character XML forbids
        Assert.DoesNotContain("<script", svg, StringComparison.Ordinal);
        Assert.Equal("a\uFFFDb", DirtyChart.Escape("a\u0001b"));
        Assert.Equal("\U0001F600", DirtyChart.Escape("\U0001F600")); // a surrogate pair stays
    }

    [Fact]
    public void TraceFile_RegularFile_LinesWithoutBomOrCr()
    {
        File.WriteAllBytes(_file, new byte[] { 0xEF, 0xBB, 0xBF }.Concat("op,address\r\nwrite,0x1000\nread,4096".Select(c => (byte)c)).ToArray());
        using var trace = TraceFile.Open(_file);
        Assert.Equal(new[] { "op,address", "write,0x1000", "read,4096" }, trace.Lines(default).ToArray());
    }

    [Fact]
    public void TraceFile_EndlessLine_IsFormatException()
    {
        File.WriteAllText(_file, new string('w', TraceFile.MaxLineBytes + 1));
        using var trace = TraceFile.Open(_file);
        Assert.Throws<FormatException>(() => trace.Lines(default).ToArray());
    }

    [HostFact]
    public void TraceFile_Device_IsInvalidArgument_AndMissingFile_IsNotFound()
    {
        Assert.Equal(EngineError.InvalidArgument, Assert.Throws<EngineException>(() => TraceFile.Open("/dev/zero")).Error);
        Assert.Equal(EngineError.InvalidArgument, Assert.Throws<EngineException>(() => TraceFile.Open("/")).Error);
        Assert.Throws<FileNotFoundException>(() => TraceFile.Open(_file + ".none"));
    }

    [HostFact]
    public void TraceFile_FifoWithoutWriter_OpensAtOnceAndWaitsUntilCancelled()
    {
        Assert.Equal(0, Mkfifo(_file, 0x180));
        using var trace = TraceFile.Open(_file); // O_NONBLOCK: no writer needed to open
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        Assert.Throws<OperationCanceledException>(() => trace.Lines(cancel.Token).ToArray());
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Mkfifo(string path, uint mode);
}
