using System;
using System.Threading;
using SoftDirty;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 22 (exec): an exec that replaced the memory a source pinned is told from an exit, by the freeze (which used to hold
/// the new program and return as if nothing happened) and by the judgement after a failure on a held thread.
/// </summary>
public sealed class ExecRound22Tests
{
    [HostFact]
    public void AFreezeOfAProcessThatExecdSinceItsMemoryWasPinnedSaysProcessExecuted()
    {
        using var sh = ProcessExecTests.StartExecing();
        try
        {
            using var src = ProcPageSource.Open(sh.Id);
            src.ReadMappings(false); // pins the memory (the pagemap descriptor), as a save does before it freezes
            ProcessExecTests.ExecNow(sh);
            var e = Assert.Throws<EngineException>(() => PtraceFreeze.Freeze(sh.Id, CancellationToken.None, src).Dispose());
            Assert.Equal(EngineError.ProcessExecuted, e.Error);
            Assert.Equal("0", SoftDirty.Injection.InjectionSupport.ReadStatus(sh.Id)!["TracerPid"]); // let go again
        }
        finally { sh.Kill(); sh.WaitForExit(); }
    }

    [HostFact]
    public void AfterAFailureAnExecSaysProcessExecutedAndAKillProcessExited()
    {
        using var sh = ProcessExecTests.StartExecing();
        try
        {
            using var src = ProcPageSource.Open(sh.Id);
            src.ReadMappings(false);
            Assert.Null(src.ExecutedOrExited("a test")); // the same program still: neither (after its bound)
            ProcessExecTests.ExecNow(sh);
            Assert.Equal(EngineError.ProcessExecuted, src.ExecutedOrExited("a test")!.Error);
            sh.Kill();
            sh.WaitForExit();
            Assert.Equal(EngineError.ProcessExited, src.ExecutedOrExited("a test")!.Error);
        }
        finally { if (!sh.HasExited) { sh.Kill(); sh.WaitForExit(); } }
    }
}
