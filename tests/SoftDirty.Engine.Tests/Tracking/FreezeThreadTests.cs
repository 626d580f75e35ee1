using System;
using System.Diagnostics;
using System.Threading;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// A freeze run on a thread that is not this process's main thread (a PowerShell pipeline's): the kernel names the tracing
/// thread in TracerPid, not its process, and whether this process traces a thread must say so whichever thread froze it.
/// </summary>
public sealed class FreezeThreadTests
{
    /// <summary>
    /// Before, PtraceFreeze.TracedHere compared TracerPid with this process's id: false for a freeze made on any other
    /// thread, so a leader killed while frozen was taken for untraced and never handed on to its parent (round 17's kill
    /// test, 3 of 12 -Freeze saves: the parent waited as long as the freezing PowerShell ran).
    /// </summary>
    [HostFact(HostNeeds.Linux | HostNeeds.SyscallInjection)]
    public void AFreezeMadeOnAnotherThreadIsTracedHere()
    {
        using var child = Process.Start(new ProcessStartInfo("sleep", "600") { UseShellExecute = false })!;
        try
        {
            bool duringFreeze = false, afterFreeze = true;
            int tracerThread = 0;
            Exception? failure = null;
            var other = new Thread(() =>
            {
                try
                {
                    using (PtraceFreeze.Freeze(child.Id, CancellationToken.None))
                    {
                        duringFreeze = PtraceFreeze.TracedHere(child.Id);
                        tracerThread = int.Parse(SoftDirty.Injection.InjectionSupport.ReadStatus(child.Id)!["TracerPid"], System.Globalization.CultureInfo.InvariantCulture);
                    }
                    afterFreeze = PtraceFreeze.TracedHere(child.Id);
                }
                catch (Exception ex) { failure = ex; }
            });
            other.Start();
            other.Join();
            Assert.Null(failure);
            Assert.NotEqual(Environment.ProcessId, tracerThread); // TracerPid names the freezing thread, not this process
            Assert.True(duringFreeze, "the freeze's thread traces the child");
            Assert.False(afterFreeze, "let go after the freeze");
        }
        finally { child.Kill(); child.WaitForExit(); }
    }
}
