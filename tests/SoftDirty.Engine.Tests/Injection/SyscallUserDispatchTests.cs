using System.IO;
using SoftDirty;
using SoftDirty.Injection;
using Xunit;

namespace SoftDirty.Tests.Injection;

/// <summary>
/// Issue 13, round 24 (hostile targets): syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH). A call injected where
/// the target's dispatch would send it to its SIGSYS handler was issued: the kernel forced SIGSYS on a thread with
/// every signal blocked, which reset the process's SIGSYS handler to the default (its next dispatch of its own killed
/// it), and a selector byte the kernel does not know killed the process at once.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class SyscallUserDispatchTests
{
    private const int GetPidSyscall = 39, ReadSyscall = 0;

    [Theory]
    [InlineData(0x1000UL, 0x1000UL, 0x1800UL, (byte)1, true)]    // inside the exempt range: runs whatever the selector
    [InlineData(0x1000UL, 0x1000UL, 0x2000UL, (byte)0, true)]    // outside, selector allow
    [InlineData(0x1000UL, 0x1000UL, 0x2000UL, (byte)1, false)]   // outside, selector block: SIGSYS
    [InlineData(0x1000UL, 0x1000UL, 0x0fffUL, (byte)2, false)]   // a byte the kernel does not know: killed
    [InlineData(0x3000UL, 0xffffffffffffe000UL, 0x4000UL, (byte)1, true)]  // an inclusive range [0x1000, 0x3000), kept inverted: outside runs
    [InlineData(0x3000UL, 0xffffffffffffe000UL, 0x0800UL, (byte)1, true)]
    [InlineData(0x3000UL, 0xffffffffffffe000UL, 0x2000UL, (byte)1, false)] // and inside it is dispatched
    public void Refusal_FollowsTheKernelsRule(ulong offset, ulong length, ulong at, byte selector, bool runs)
    {
        var d = new SyscallUserDispatch(0x7000, offset, length);
        Assert.Equal(runs, d.Refusal(at, selector) is null);
    }

    [Fact]
    public void Refusal_WithoutSelectorOrWithAnUnreadableOne_IsARefusalOutsideTheRange()
    {
        Assert.NotNull(new SyscallUserDispatch(0, 0x1000, 0x1000).Refusal(0x4000, null));
        Assert.Null(new SyscallUserDispatch(0, 0x1000, 0x1000).Refusal(0x1004, null));
        Assert.NotNull(new SyscallUserDispatch(0x7000, 0x1000, 0x1000).Refusal(0x4000, null));
    }

    private static string SigCgt(int pid) =>
        System.Linq.Enumerable.Single(File.ReadAllLines($"/proc/{pid}/status"), l => l.StartsWith("SigCgt:", System.StringComparison.Ordinal))[7..].Trim();

    [HostTheory(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    [InlineData("block")]
    [InlineData("bad")]
    [InlineData("none")]
    [InlineData("unreadable")]
    public void TargetWhoseDispatchWouldTakeTheCall_IsRefusedBeforeAnyCall_AndKeepsItsHandler(string selector)
    {
        using var t = new WtTarget();
        t.Send($"sud {selector}");
        string attrs = string.Join(' ', t.Send("attrs")), caught = SigCgt(t.Pid);
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        {
            var e = Assert.Throws<EngineException>(() => { using var inject = RemoteSyscalls.Attach(src); inject.Call(GetPidSyscall); });
            Assert.Equal(EngineError.SyscallDispatchForbids, e.Error);
        }
        Assert.Equal(caught, SigCgt(t.Pid)); // SIGSYS still caught: its handler was not reset
        Assert.Equal(attrs, string.Join(' ', t.Send("attrs")));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void SelectorSetToBlockBetweenCalls_RefusesTheNextCall_AndAllowRunsIt()
    {
        using var t = new WtTarget();
        ulong selector = System.Convert.ToUInt64(t.Send("sud allow")[0], 16);
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        using (var inject = RemoteSyscalls.Attach(src))
        {
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
            inject.Write(selector, new byte[] { 1 }); // as another thread of the process might, while this one is held
            Assert.Equal(EngineError.SyscallDispatchForbids, Assert.Throws<EngineException>(() => inject.Call(GetPidSyscall)).Error);
            inject.Write(selector, new byte[] { 0 });
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
        }
        Assert.Equal("0", t.Send("sudcall")[0]); // its own dispatch still works and nothing was dispatched
        t.Send("sudsel block");
        Assert.Equal("1", t.Send("sudcall")[0]);
    }
}
