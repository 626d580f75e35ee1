using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Tests.Injection;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Issue 13, eighth attack round (the page cmdlets): what a real process's /proc says while the process changes.
/// Pester's side: tests/Pester/Security.Round8.Pages.Tests.ps1.
/// </summary>
public sealed class PagesRound8Tests
{
    private static readonly int Ps = Environment.SystemPageSize;

    /// <summary>
    /// The mappings read, then an exec, then the first pagemap read: before the fix the pagemap was opened only at
    /// that read, on the new program, and its entries came out under the old program's mappings without an error.
    /// </summary>
    [HostFact]
    public void PagemapReadAfterAnExecThatFollowedTheMapsReadIsProcessExecuted()
    {
        using var sh = ProcessExecTests.StartExecing();
        try
        {
            using var src = ProcPageSource.Open(sh.Id);
            var mapping = src.ReadMappings(false).First(m => m.Kind != MappingKind.Vsyscall);
            ProcessExecTests.ExecNow(sh);
            var e = Assert.Throws<EngineException>(() =>
            {
                Span<PagemapEntry> entries = stackalloc PagemapEntry[1];
                src.ReadPagemap(mapping.Start / (ulong)Ps, entries);
            });
            Assert.Equal(EngineError.ProcessExecuted, e.Error);
            // And the next read of the mappings says so too, rather than giving the new program's as this one's.
            Assert.Equal(EngineError.ProcessExecuted, Assert.Throws<EngineException>(() => src.ReadMappings(true)).Error);
        }
        finally { sh.Kill(); sh.WaitForExit(); }
    }

    /// <summary>
    /// The check after each pagemap read: every mapping of a quiet process (files with a space, a newline and a
    /// deleted one, anonymous memory, the stack, the vDSO) is unchanged at its first and last page; one unmapped, or
    /// replaced by another mapping at the same place, is changed.
    /// </summary>
    [HostFact]
    public void MappingUnchangedAgreesWithMapsAndSeesAReplacement()
    {
        var dir = Directory.CreateTempSubdirectory("r8pages-");
        var t = new SdTarget();
        try
        {
            string spaced = Path.Combine(dir.FullName, "a file with spaces");
            string newline = Path.Combine(dir.FullName, "line\nbreak");
            string deleted = Path.Combine(dir.FullName, "deleted");
            ulong a = t.Map(4, $"file \"{spaced}\"");
            // The line protocol cannot carry a newline: the target maps it through a link (maps shows the file's own name).
            File.WriteAllBytes(newline, new byte[4 * Ps]);
            File.CreateSymbolicLink(Path.Combine(dir.FullName, "nl-link"), newline);
            ulong b = t.Map(4, $"file \"{Path.Combine(dir.FullName, "nl-link")}\"");
            ulong c = t.Map(4, $"file \"{deleted}\"");
            t.Send($"unlink {deleted}");
            ulong anon = t.Map(8, "anon");
            t.Send($"write {anon:x} 0 8");
            using var src = ProcPageSource.Open(t.Pid);
            var mappings = src.ReadMappings(false);
            Assert.Contains(mappings, m => m.Path == spaced);
            Assert.Contains(mappings, m => m.Start == c && m.Deleted);
            Assert.Contains(mappings, m => m.Start == b && m.Path.Contains("\\012", StringComparison.Ordinal));
            foreach (var m in mappings.Where(m => m.Kind != MappingKind.Vsyscall))
            {
                Assert.True(src.MappingUnchanged(m, m.Start, m.End), $"{m.Start:x}-{m.End:x} {m.Path} called changed");
                Assert.True(src.MappingUnchanged(m, m.End - (ulong)Ps, m.End), $"{m.Start:x}-{m.End:x} {m.Path} called changed at its last page");
            }
            var anonMapping = mappings.Single(m => m.Start == anon);
            var fileMapping = mappings.Single(m => m.Start == a);
            // A replacement at the same place: the file mapping becomes anonymous memory of the same size.
            t.Send($"unmap {a:x} 4");
            Assert.False(src.MappingUnchanged(fileMapping, a, a + (ulong)Ps));
            t.Map(4, "anon"); // may land anywhere; the old address stays changed
            Assert.False(src.MappingUnchanged(fileMapping, a, a + (ulong)Ps));
            // Part of a mapping made read-only splits it: its pages keep their owner (the same memory); a hole does not.
            t.Send($"mprotect {anon:x} 2 ro");
            Assert.True(src.MappingUnchanged(anonMapping, anon, anon + 8 * (ulong)Ps));
            t.Send($"unmap {anon + 3 * (ulong)Ps:x} 1");
            Assert.False(src.MappingUnchanged(anonMapping, anon, anon + 8 * (ulong)Ps));
            Assert.True(src.MappingUnchanged(anonMapping, anon + 4 * (ulong)Ps, anon + 8 * (ulong)Ps));
        }
        finally
        {
            t.Dispose();
            dir.Delete(true);
        }
    }

    /// <summary>
    /// Get-PageMap's reader over a span whose mapping was unmapped after the maps read: it reads the rest again under
    /// the mappings there now (none: nothing), instead of giving absent pages under the old mapping's name.
    /// </summary>
    [HostFact]
    public void AReadOfASpanWhoseMappingWentAwayGivesNoPageOfIt()
    {
        var t = new SdTarget();
        try
        {
            ulong anon = t.Map(16, "anon");
            t.Send($"write {anon:x} 0 16");
            using var src = ProcPageSource.Open(t.Pid);
            var mappings = src.ReadMappings(false);
            var spans = PageMapReader.SpansOf(mappings, m => m.Start == anon);
            Assert.Single(spans);
            t.Send($"unmap {anon:x} 16");
            var hits = new PageMapReader(src).Read(spans, new PageFilter(), PageReadMethod.Pread).ToList();
            Assert.Empty(hits);
        }
        finally { t.Dispose(); }
    }

    /// <summary>
    /// mmap MAP_FIXED past the task size: the kernel answers ENOMEM (mm/mmap.c __get_unmapped_area, before the
    /// alignment check; measured on this kernel: 0x7ffffffff000, 2^64-4096 and 0x7ffffffff001 all ENOMEM). The
    /// emulator said EINVAL (InvalidArgument). Inside the address space an unaligned address stays EINVAL.
    /// </summary>
    [Theory]
    [InlineData(0x7ffffffff000UL, EngineError.EmulatorNotMapped, Errno.ENOMEM)]
    [InlineData(0x7ffffffff001UL, EngineError.EmulatorNotMapped, Errno.ENOMEM)]
    [InlineData(0xfffffffffffff000UL, EngineError.EmulatorNotMapped, Errno.ENOMEM)]
    [InlineData(0x10000001UL, EngineError.InvalidArgument, Errno.EINVAL)]
    public void MmapFixedPastTheTaskSizeIsEnomemAsTheKernelSays(ulong address, EngineError error, int errno)
    {
        var p = new EmulatedProcess("round8", KernelProfile.Get("6.18"));
        var before = p.ReadMappings(false).Count;
        var e = Assert.Throws<EngineException>(() => p.Mmap(address, (ulong)Ps, Protection.Read, MmapFlags.Fixed));
        Assert.Equal(error, e.Error);
        Assert.Equal(errno, e.Errno);
        Assert.Equal(before, p.ReadMappings(false).Count);
        // The last page below the task size maps.
        Assert.Equal(0x7fffffffe000UL, p.Mmap(0x7fffffffe000UL, (ulong)Ps, Protection.Read, MmapFlags.Fixed).Start);
    }

    /// <summary>tests/native/sdtarget.c through its line protocol.</summary>
    private sealed class SdTarget : IDisposable
    {
        private readonly Process _process;

        public SdTarget()
        {
            var psi = new ProcessStartInfo(WtTarget.PathOf("sdtarget")) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            _process = Process.Start(psi)!;
            var ready = (_process.StandardOutput.ReadLine() ?? "").Split(' ');
            Assert.Equal("READY", ready[0]);
            Pid = int.Parse(ready[1], System.Globalization.CultureInfo.InvariantCulture);
        }

        public int Pid { get; }

        public string Send(string command)
        {
            _process.StandardInput.WriteLine(command);
            _process.StandardInput.Flush();
            var line = _process.StandardOutput.ReadLine() ?? throw new InvalidOperationException($"sdtarget exited during '{command}'");
            Assert.True(line.StartsWith("OK", StringComparison.Ordinal), $"'{command}' answered '{line}'");
            return line.Length > 2 ? line[3..] : "";
        }

        public ulong Map(int pages, string how) => Convert.ToUInt64(Send($"map {pages} {how}"), 16);

        public void Dispose()
        {
            try { _process.Kill(); _process.WaitForExit(); } catch (InvalidOperationException) { }
            _process.Dispose();
        }
    }
}
