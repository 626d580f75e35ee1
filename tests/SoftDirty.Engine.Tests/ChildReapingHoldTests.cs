using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using SoftDirty.Injection;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 23 (exec): while a child of this process is traced, .NET's reaping of its children is held off (it took a ptrace
/// stop for the child's exit). The hold rests on a private lock of .NET: these cases fail first where a .NET no longer has it.
/// </summary>
[Collection(MemoryMeasurement.Name)]
public sealed class ChildReapingHoldTests
{
    [HostFact]
    public void ThisDotNetHasTheLockAndAHoldKeepsAnExitedChildUnreapedUntilItEnds()
    {
        // The child exits only once the hold is in force (a line on its input): started after, it could not be registered
        // (Process.Start takes the same lock).
        var child = Process.Start(new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", "read line; exit 7" }, RedirectStandardInput = true })!;
        ChildReapingHold.Enter();
        try
        {
            Assert.True(ChildReapingHold.Held, "the hold took .NET's reaping lock (ProcessWaitState.s_childProcessWaitStates)");
            child.StandardInput.WriteLine("go");
            child.StandardInput.Flush();
            // The child exits meanwhile; its SIGCHLD wakes a reaping that waits for the hold, so the child stays a zombie.
            var stat = $"/proc/{child.Id}/stat";
            var clock = Stopwatch.StartNew();
            while (StateOf(stat) != 'Z' && clock.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(5);
            Assert.Equal('Z', StateOf(stat));
            Thread.Sleep(200); // a reaping that was not held off would have taken it by now
            Assert.Equal('Z', StateOf(stat));
        }
        finally { ChildReapingHold.Exit(); }
        Assert.False(ChildReapingHold.Held);
        Assert.True(child.WaitForExit(30000), ".NET reaps again once the hold ends");
        Assert.Equal(7, child.ExitCode); // the real status, not a stop taken for an exit
        child.Dispose();
    }

    [HostFact]
    public void HoldsNestAndTheLastExitLetsGo()
    {
        ChildReapingHold.Enter();
        ChildReapingHold.Enter();
        ChildReapingHold.Exit();
        Assert.True(ChildReapingHold.Held, "an inner hold's end keeps the outer one");
        ChildReapingHold.Exit();
        Assert.False(ChildReapingHold.Held);
        ChildReapingHold.Exit(); // one too many: nothing held, nothing thrown
        Assert.False(ChildReapingHold.Held);
    }

    /// <summary>The state letter of a /proc/PID/stat (after the command's closing parenthesis), or '?' once it is gone.</summary>
    private static char StateOf(string stat)
    {
        try { var s = File.ReadAllText(stat); return s[s.LastIndexOf(')') + 2]; }
        catch (IOException) { return '?'; }
    }
}
