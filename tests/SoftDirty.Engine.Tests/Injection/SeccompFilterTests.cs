using SoftDirty.Injection;
using Xunit;
using Action = SoftDirty.Injection.SeccompFilter.Action;

namespace SoftDirty.Tests.Injection;

/// <summary>
/// The classic BPF interpreter that judges injected calls against a target's seccomp filters: the opcodes real
/// filters use (systemd's and container runtimes': arch checks, argument masks, jumps over X), the kernel's
/// precedence across filters, and a refusal of whatever it cannot judge.
/// </summary>
public sealed class SeccompFilterTests
{
    // Opcodes (include/uapi/linux/bpf_common.h).
    private const ushort LdAbs = 0x20, LdImm = 0x00, LdxImm = 0x01, LdMem = 0x60, St = 0x02, Tax = 0x07, Txa = 0x87;
    private const ushort AndK = 0x54, AddX = 0x0c, RshK = 0x74, NegA = 0x84, DivK = 0x34;
    private const ushort Ja = 0x05, JeqK = 0x15, JgtK = 0x25, JgeK = 0x35, JsetK = 0x45, JeqX = 0x1d;
    private const ushort RetK = 0x06, RetA = 0x16;
    private const uint Nr = 0, Arch = 4, Arg1Low = 24, Arg1High = 28;
    private const uint KillProcess = 0x80000000, Allow = 0x7fff0000, ErrnoEperm = 0x00050001, Trap = 0x00030000, Log = 0x7ffc0000;

    private static (ushort, byte, byte, uint) I(ushort code, uint k = 0, byte jt = 0, byte jf = 0) => (code, jt, jf, k);

    private static readonly (ushort, byte, byte, uint)[] KillUserfaultfdOnX8664 =
    {
        I(LdAbs, Arch), I(JeqK, SeccompFilter.ArchX8664, jt: 1), I(RetK, KillProcess),
        I(LdAbs, Nr), I(JeqK, 323, jf: 1), I(RetK, KillProcess), I(RetK, Allow),
    };

    [Fact]
    public void ArchAndNumberChecks_KillOnlyWhatTheyName()
    {
        var f = SeccompFilter.FromPrograms(KillUserfaultfdOnX8664);
        Assert.Equal(Action.KillProcess, f.Decide(323, 0x1000, new ulong[] { 0x80801 }));
        Assert.Equal(Action.Allow, f.Decide(16, 0x1000, new ulong[] { 3, 0xC020AA00, 0x7fff0000 }));
        Assert.False(SeccompFilter.IsHarmless(f.Decide(323, 0, System.Array.Empty<ulong>())));
    }

    [Fact]
    public void ArgumentMasksAndRanges_AreJudgedOnTheCallsArguments()
    {
        // ioctl: kill when the request's low word is UFFDIO_REGISTER and its high word is 0; errno for requests > 0xC0000000 otherwise.
        var f = SeccompFilter.FromPrograms(new[]
        {
            I(LdAbs, Nr), I(JeqK, 16, jf: 5),
            I(LdAbs, Arg1High), I(JeqK, 0, jf: 3),
            I(LdAbs, Arg1Low), I(JeqK, 0xC020AA00, jt: 2), I(JgtK, 0xC0000000, jt: 2),
            I(RetK, Allow), I(RetK, KillProcess), I(RetK, ErrnoEperm),
        });
        Assert.Equal(Action.KillProcess, f.Decide(16, 0, new ulong[] { 5, 0xC020AA00 }));
        Assert.Equal(Action.Errno, f.Decide(16, 0, new ulong[] { 5, 0xC018AA3F }));
        Assert.Equal(Action.Allow, f.Decide(16, 0, new ulong[] { 5, 0x5401 }));
        Assert.Equal(Action.Allow, f.Decide(16, 0, new ulong[] { 5, 0x1_C020AA00 })); // high word set: not the request
        Assert.Equal(Action.Allow, f.Decide(3, 0, new ulong[] { 5 }));
        Assert.True(SeccompFilter.IsHarmless(Action.Errno));
    }

    [Fact]
    public void AluJsetScratchMemoryAndX_AreRunAsTheKernelRunsThem()
    {
        // A = nr; M[0] = A; A &= 0xff; A >>= 4; X = A; A = -A; A += X (0); if A == X... ; JSET on flags in arg0.
        var f = SeccompFilter.FromPrograms(new[]
        {
            I(LdAbs, Nr), I(St, 0), I(AndK, 0xff), I(RshK, 4), I(Tax), I(NegA), I(AddX),   // A = 0
            I(JeqK, 0, jf: 6),
            I(LdMem, 0), I(JgeK, 300, jf: 4),                                                 // nr >= 300
            I(LdAbs, 16), I(JsetK, 0x1, jt: 1), I(Ja, 1), I(RetK, Trap),                      // arg0 & 1: trap
            I(LdxImm, 14), I(Txa), I(LdImm, 14), I(JeqX, 0, jt: 1), I(RetK, KillProcess), I(RetK, Log),
        });
        Assert.Equal(Action.Trap, f.Decide(323, 0, new ulong[] { 0x80801 }));
        Assert.Equal(Action.Log, f.Decide(323, 0, new ulong[] { 0x80800 }));
        Assert.Equal(Action.Log, f.Decide(3, 0, new ulong[] { 1 }));
    }

    [Fact]
    public void SeveralFilters_TheMostSevereActionWins_AndWhatCannotBeJudgedIsRefused()
    {
        var errnoAll = new[] { I(RetK, ErrnoEperm) };
        var allow = new[] { I(RetK, Allow) };
        Assert.Equal(Action.Errno, SeccompFilter.FromPrograms(allow, errnoAll).Decide(3, 0, new ulong[] { 1 }));
        Assert.Equal(Action.KillProcess, SeccompFilter.FromPrograms(errnoAll, KillUserfaultfdOnX8664).Decide(323, 0, System.Array.Empty<ulong>()));
        Assert.Equal(Action.KillThread, SeccompFilter.FromPrograms(new[] { I(RetK, 0) }, allow).Decide(3, 0, System.Array.Empty<ulong>()));
        // A load past seccomp_data, an unknown opcode, falling off the end, a division by zero: never judged harmless.
        Assert.Equal(Action.KillProcess, SeccompFilter.FromPrograms(new[] { I(LdAbs, 64), I(RetK, Allow) }).Decide(3, 0, System.Array.Empty<ulong>()));
        Assert.Equal(Action.KillProcess, SeccompFilter.FromPrograms(new[] { I(0xff), I(RetK, Allow) }).Decide(3, 0, System.Array.Empty<ulong>()));
        Assert.Equal(Action.KillProcess, SeccompFilter.FromPrograms(new[] { I(LdImm, 1) }).Decide(3, 0, System.Array.Empty<ulong>()));
        Assert.False(SeccompFilter.IsHarmless(SeccompFilter.FromPrograms(new[] { I(LdImm, 1), I(DivK, 0), I(RetA) }).Decide(3, 0, System.Array.Empty<ulong>())));
    }
}
