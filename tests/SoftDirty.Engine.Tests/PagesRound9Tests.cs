using System;
using System.Threading;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Issue 13, ninth attack round (the page cmdlets): a source opened on one process and the process that later has
/// its pid. Pester's side: tests/Pester/Security.Round9.Pages.Tests.ps1.
/// </summary>
public sealed class PagesRound9Tests
{
    /// <summary>
    /// A source opened on process A (Clear-SoftDirty -Confirm waiting at its prompt, say); A exits and its pid goes to
    /// process B. Before the fix every /proc file was opened by path: the mappings came back as B's under A's name.
    /// </summary>
    [PidChoiceFact]
    public void ASourceNeverReadsTheProcessThatReusedItsPid() => WithReusedPid((source, pid) =>
    {
        var read = Assert.Throws<EngineException>(() => source.ReadMappings(withCounters: false));
        Assert.Equal(EngineError.ProcessExited, read.Error);
    });

    /// <summary>
    /// The same, clearing: before the fix clear_refs was written to B (here type 1, which clears B's referenced
    /// bits: measured in B's smaps_rollup) and success reported. Now it says ProcessExited and B is untouched.
    /// </summary>
    [PidChoiceFact]
    public void ASourceNeverClearsTheProcessThatReusedItsPid() => WithReusedPid((source, pid) =>
    {
        var clear = Assert.Throws<EngineException>(() => source.ClearRefs(ClearRefsType.All));
        Assert.Equal(EngineError.ProcessExited, clear.Error);
        Assert.True(Referenced(pid) > 0, $"the clear_refs meant for the exited process cleared process {pid}'s referenced bits");
    });

    /// <summary>
    /// A source used after its Dispose (a tracker that outlived the source it was given) opens /proc/PID again, and
    /// must find that the process there now is another one (its start time differs): ProcessExited, not B's mappings.
    /// </summary>
    [PidChoiceFact]
    public void ADisposedSourceUsedAgainNeverReadsTheProcessThatReusedItsPid() => WithReusedPid((source, pid) =>
    {
        source.Dispose();
        var read = Assert.Throws<EngineException>(() => source.ReadMappings(withCounters: false));
        Assert.Equal(EngineError.ProcessExited, read.Error);
    });

    /// <summary>And one used after its Dispose while its process lives on still reads that process.</summary>
    [HostFact]
    public void ADisposedSourceUsedAgainStillReadsItsLivingProcess()
    {
        using var a = PidReuse.Start("sleep", "600");
        try
        {
            var source = ProcPageSource.Open(a.Id);
            source.Dispose();
            Assert.NotEmpty(source.ReadMappings(withCounters: false));
            source.Dispose();
        }
        finally { a.Kill(); a.WaitForExit(); }
    }

    /// <summary>Opens a source on a process (sleep), ends it, starts cat under its pid and hands both over.</summary>
    private static void WithReusedPid(Action<ProcPageSource, int> check)
    {
        for (int attempt = 0; attempt < PidReuse.Attempts; attempt++)
        {
            using var a = PidReuse.Start("sleep", "600");
            int pid = a.Id;
            using var source = ProcPageSource.Open(pid);
            using var b = PidReuse.Replace(a, "cat");
            if (b is null) continue; // another process took the pid first on this busy machine: try another
            try
            {
                Assert.True(WaitForReferenced(pid) > 0, $"process {pid} (cat) shows no referenced memory to watch");
                check(source, pid);
                Assert.Equal("cat", File.ReadAllText($"/proc/{pid}/comm").Trim());
                return;
            }
            finally { b.Kill(); b.WaitForExit(); }
        }
        Assert.Fail($"no pid could be reused in {PidReuse.Attempts} attempts");
    }

    /// <summary>The process's referenced memory, once it has run (exec'd and touched its pages).</summary>
    private static long WaitForReferenced(int pid)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30); // a hang guard
        long kb;
        while ((kb = Referenced(pid)) == 0 && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(10);
        return kb;
    }

    /// <summary>Referenced: of /proc/PID/smaps_rollup, in kB.</summary>
    private static long Referenced(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/smaps_rollup").FirstOrDefault(l => l.StartsWith("Referenced:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
}
