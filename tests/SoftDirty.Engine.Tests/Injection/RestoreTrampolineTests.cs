using System;
using System.Globalization;
using System.IO;
using System.Linq;
using SoftDirty;
using SoftDirty.Injection;
using Xunit;

namespace SoftDirty.Tests.Injection;

/// <summary>
/// The restore trampoline alone: the injecting side lets go of the target at a chosen step without restoring
/// anything (<see cref="RemoteSyscalls.Abandon"/>, what the kernel does when the tracer is killed), and the
/// target must go on exactly as it would have: its interrupted call restarted, its mask and memory as they
/// were, and a userfaultfd made but not yet recorded closed by the target itself.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class RestoreTrampolineTests
{
    private const int ReadSyscall = 0, ClockNanosleepSyscall = 230;

    private static string SigBlk(int pid) =>
        File.ReadAllLines($"/proc/{pid}/task/{pid}/status").Single(l => l.StartsWith("SigBlk:", StringComparison.Ordinal));

    private static int Userfaultfds(int pid) =>
        Directory.GetFileSystemEntries($"/proc/{pid}/fd").Count(f => new FileInfo(f).LinkTarget == "anon_inode:[userfaultfd]");

    public enum AbandonPoint { Parked, UserfaultfdMadeUnrecorded, UserfaultfdRecordedAsUndo, AfterUndoCleared }

    [HostTheory(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    [InlineData(AbandonPoint.Parked)]
    [InlineData(AbandonPoint.UserfaultfdMadeUnrecorded)]
    [InlineData(AbandonPoint.UserfaultfdRecordedAsUndo)]
    [InlineData(AbandonPoint.AfterUndoCleared)]
    public void AbandonedWhileBlockedInRead_TargetRestartsItsReadAndUndoesTheDescriptor(AbandonPoint point)
    {
        using var t = new WtTarget();
        ulong region = t.Map(8);
        t.Send($"write {region:x} 0 8");
        var sum = t.Send("sum")[0];
        var mask = SigBlk(t.Pid);
        t.WaitInSyscall(ReadSyscall);
        long fd = -1;
        using (var src = ProcPageSource.Open(t.Pid))
        {
            var inject = RemoteSyscalls.Attach(src);
            try
            {
                if (point != AbandonPoint.Parked)
                {
                    inject.UndoOnAbort(RestoreTrampoline.UndoResult);
                    fd = inject.Call(InjectionArchitecture.X64.Userfaultfd, (ulong)(Native.O_CLOEXEC | Native.O_NONBLOCK | UffdAbi.UserModeOnly));
                    Assert.True(fd >= 0, $"userfaultfd in the target: {fd}");
                    if (point >= AbandonPoint.UserfaultfdRecordedAsUndo) inject.UndoOnAbort(fd);
                    if (point == AbandonPoint.AfterUndoCleared) inject.UndoOnAbort(-1);
                }
            }
            finally { inject.Abandon(); }
        }
        Assert.Equal(sum, t.Send("sum")[0]); // the read() was restarted by the trampoline and got the whole command
        Assert.Equal(mask, SigBlk(t.Pid));
        Assert.Equal(point == AbandonPoint.AfterUndoCleared ? 1 : 0, Userfaultfds(t.Pid));
        Assert.Equal(new[] { "1" }, t.Send("threads 1")); // it makes threads, signals and all, as before
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void AbandonedDuringNanosleep_SleepIsRestartedThroughRestartSyscallAndKeepsItsEnd()
    {
        using var t = new WtTarget();
        const int ms = 400;
        t.Start($"sleep {ms}");
        t.WaitInSyscall(ClockNanosleepSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        {
            var inject = RemoteSyscalls.Attach(src);
            Assert.True(inject.InterruptedSyscall);
            inject.Abandon();
        }
        var answer = t.Receive("sleep");
        Assert.Equal("0", answer[0]); // restart_syscall, as the kernel would have issued: not EINTR
        Assert.True(long.Parse(answer[2], CultureInfo.InvariantCulture) >= ms * 1_000_000L, $"slept {answer[2]} ns of {ms} ms");
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void AbandonedWhileComputing_RegistersAndFlagsAreRestored()
    {
        using var t = new WtTarget();
        t.Start("crunch 3000");
        System.Threading.Thread.Sleep(100);
        for (int i = 0; i < 20; i++)
        {
            using var src = ProcPageSource.Open(t.Pid);
            RemoteSyscalls.Attach(src).Abandon();
        }
        var answer = t.Receive("crunch");
        Assert.True(long.Parse(answer[0], CultureInfo.InvariantCulture) > 0);
        Assert.Equal("0", answer[1]); // no round's two runs differed
    }

    [Fact]
    public void FindSite_SkipsSharedAndNonElfMappings_AndKeepsClearOfTheImage()
    {
        const ulong start = 0x10000, page = 4096;
        var image = new byte[2 * page];
        // An ELF64 header with one load segment of 0x1234 bytes at 0, section headers (2 x 64 bytes) at 0x1400.
        new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1 }.CopyTo(image, 0);
        BitConverter.GetBytes(64UL).CopyTo(image, 0x20);      // e_phoff
        BitConverter.GetBytes(0x1400UL).CopyTo(image, 0x28);  // e_shoff
        BitConverter.GetBytes((ushort)56).CopyTo(image, 0x36); // e_phentsize
        BitConverter.GetBytes((ushort)1).CopyTo(image, 0x38);  // e_phnum
        BitConverter.GetBytes((ushort)64).CopyTo(image, 0x3A); // e_shentsize
        BitConverter.GetBytes((ushort)2).CopyTo(image, 0x3C);  // e_shnum
        BitConverter.GetBytes(1u).CopyTo(image, 64);           // PT_LOAD
        BitConverter.GetBytes(0x1234UL).CopyTo(image, 64 + 40); // p_memsz
        byte[]? Read(ulong address, int length) =>
            address >= start && address + (ulong)length <= start + (ulong)image.Length ? image.AsSpan((int)(address - start), length).ToArray() : null;
        var vdso = new MemoryMapping { Start = start, End = start + 2 * page, Protection = Protection.Read | Protection.Execute, Kind = MappingKind.Vdso, Path = "[vdso]" };
        var site = RestoreTrampoline.FindSite(new[] { vdso }, Read).Single();
        Assert.True(site >= start + 0x1400 + 128 + 16, $"0x{site:x} overlaps the section headers or their margin");
        Assert.Equal(0UL, site % 16);
        Assert.True(site + (ulong)RestoreTrampoline.Size <= vdso.End);

        var shared = new MemoryMapping { Start = start, End = start + 2 * page, Protection = Protection.Read | Protection.Execute, Shared = true, Kind = MappingKind.Vdso, Path = "[vdso]" };
        Assert.Empty(RestoreTrampoline.FindSite(new[] { shared }, Read));
        image[0] = 0; // no ELF header: nothing is known of what the mapping holds
        Assert.Empty(RestoreTrampoline.FindSite(new[] { vdso }, Read));
    }
}
