using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// A target that exec()s while it is read keeps its pid but drops its mm: /proc/PID/mem and pagemap opened before
/// the exec read 0 bytes afterwards (the kernel finds the old mm without users). Before the rule, such reads were
/// taken as "nothing there" (an empty read, fewer pagemap entries) or, from PAGEMAP_SCAN, as ProcessExited;
/// now they say ProcessExecuted, and a process that really ended says ProcessExited.
/// </summary>
public sealed class ProcessExecTests
{
    private static readonly int Ps = Environment.SystemPageSize;

    /// <summary>/bin/sh that reads one line and then execs sleep: the exec comes exactly when the test writes the line.</summary>
    internal static Process StartExecing()
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("read line; exec sleep 60");
        return Process.Start(psi)!;
    }

    internal static void ExecNow(Process sh)
    {
        var before = File.ReadAllText($"/proc/{sh.Id}/stat").Split(' ')[1];
        sh.StandardInput.WriteLine("go");
        sh.StandardInput.Flush();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (File.ReadAllText($"/proc/{sh.Id}/comm").Trim() != "sleep")
        {
            Assert.True(DateTime.UtcNow < deadline, $"process {sh.Id} ({before}) did not exec sleep within 30 s");
            System.Threading.Thread.Sleep(5);
        }
    }

    [HostFact]
    public void ReadsOpenedBeforeAnExecSayProcessExecuted()
    {
        using var sh = StartExecing();
        try
        {
            using var src = ProcPageSource.Open(sh.Id);
            var readable = src.ReadMappings(false).First(m => (m.Protection & Protection.Read) != 0 && m.Kind != MappingKind.Vsyscall);
            var page = new byte[Ps];
            Span<PagemapEntry> entry = stackalloc PagemapEntry[1];
            // Both descriptors opened (and working) on the old program.
            Assert.Equal(Ps, src.ReadMemory(readable.Start, page));
            Assert.Equal(1, src.ReadPagemap(readable.Start / (ulong)Ps, entry));

            ExecNow(sh);

            var mem = Assert.Throws<EngineException>(() => src.ReadMemory(readable.Start, page));
            Assert.Equal(EngineError.ProcessExecuted, mem.Error);
            var pagemap = Assert.Throws<EngineException>(() => { Span<PagemapEntry> e = stackalloc PagemapEntry[1]; src.ReadPagemap(readable.Start / (ulong)Ps, e); });
            Assert.Equal(EngineError.ProcessExecuted, pagemap.Error);
            Assert.Contains("exec'd", mem.Message);

            // A source opened after the exec reads the new program.
            using var fresh = ProcPageSource.Open(sh.Id);
            var now = fresh.ReadMappings(false).First(m => (m.Protection & Protection.Read) != 0 && m.Kind != MappingKind.Vsyscall);
            Assert.Equal(Ps, fresh.ReadMemory(now.Start, page));
        }
        finally
        {
            if (!sh.HasExited) sh.Kill();
            sh.WaitForExit();
        }
    }

    [HostFact]
    public void ReadsAfterTheProcessEndedSayProcessExited()
    {
        using var sh = StartExecing();
        using var src = ProcPageSource.Open(sh.Id);
        var readable = src.ReadMappings(false).First(m => (m.Protection & Protection.Read) != 0 && m.Kind != MappingKind.Vsyscall);
        var page = new byte[Ps];
        Assert.Equal(Ps, src.ReadMemory(readable.Start, page));
        sh.Kill();
        sh.WaitForExit();
        var ex = Assert.Throws<EngineException>(() => src.ReadMemory(readable.Start, page));
        Assert.Equal(EngineError.ProcessExited, ex.Error);
    }
}
