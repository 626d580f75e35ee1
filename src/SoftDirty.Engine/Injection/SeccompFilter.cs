using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace SoftDirty.Injection;

/// <summary>
/// The seccomp filters of a thread, read with PTRACE_SECCOMP_GET_FILTER (CAP_SYS_ADMIN; the thread in a ptrace
/// stop) and run here as the kernel runs them (classic BPF over struct seccomp_data, kernel/seccomp.c): so that
/// syscall injection never issues a call the filter answers by killing the process (SECCOMP_RET_KILL_*, as
/// systemd's SystemCallFilter= does by default), trapping it (SIGSYS) or waiting for a supervisor
/// (USER_NOTIF). Every filter of the thread runs; the most severe action wins.
/// </summary>
internal sealed unsafe class SeccompFilter
{
    /// <summary>The actions (the top 16 bits of a filter's return value), most severe first (include/uapi/linux/seccomp.h).</summary>
    public enum Action : uint
    {
        KillProcess = 0x80000000,
        KillThread = 0x00000000,
        Trap = 0x00030000,
        Errno = 0x00050000,
        UserNotify = 0x7fc00000,
        Trace = 0x7ff00000,
        Log = 0x7ffc0000,
        Allow = 0x7fff0000,
    }

    private const uint ActionMask = 0xffff0000;
    /// <summary>AUDIT_ARCH_X86_64: seccomp_data.arch of an x86-64 syscall.</summary>
    public const uint ArchX8664 = 0xC000003E;
    /// <summary>PTRACE_SECCOMP_GET_FILTER.</summary>
    private const long GetFilter = 0x420c;
    /// <summary>sizeof(struct seccomp_data): nr, arch, instruction_pointer, args[6].</summary>
    private const int DataSize = 64;
    /// <summary>BPF_MAXINSNS: the kernel refuses longer programs.</summary>
    private const int MaxInstructions = 4096;
    /// <summary>BPF_MEMWORDS: the scratch memory of a classic BPF program.</summary>
    private const int MemoryWords = 16;

    [StructLayout(LayoutKind.Sequential)]
    private struct Instruction { public ushort Code; public byte Jt, Jf; public uint K; }

    private readonly List<Instruction[]> _programs;

    private SeccompFilter(List<Instruction[]> programs) => _programs = programs;

    /// <summary>Filters given as (code, jt, jf, k) instructions, newest first, as the kernel would run them (tests).</summary>
    internal static SeccompFilter FromPrograms(params (ushort Code, byte Jt, byte Jf, uint K)[][] programs)
    {
        var list = new List<Instruction[]>();
        foreach (var p in programs) list.Add(Array.ConvertAll(p, i => new Instruction { Code = i.Code, Jt = i.Jt, Jf = i.Jf, K = i.K }));
        return new SeccompFilter(list);
    }

    /// <summary>How many filters the thread has.</summary>
    public int Count => _programs.Count;

    /// <summary>
    /// The filters of <paramref name="tid"/>, which this thread traces and holds in a ptrace stop; null when the
    /// kernel will not give them (errno in <paramref name="errno"/>: EACCES without CAP_SYS_ADMIN, EINVAL without
    /// CONFIG_CHECKPOINT_RESTORE or for a thread in seccomp strict mode).
    /// </summary>
    public static SeccompFilter? Read(int tid, out int errno)
    {
        errno = 0;
        var programs = new List<Instruction[]>();
        for (int index = 0; ; index++)
        {
            nint count = Ptrace.Call(GetFilter, tid, index, 0);
            if (count < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                if (e == Errno.ENOENT && index > 0) break; // past the oldest filter
                errno = e;
                return null;
            }
            if (count == 0 || count > MaxInstructions) { errno = Errno.EINVAL; return null; }
            var program = new Instruction[count];
            fixed (Instruction* p = program)
                if (Ptrace.Call(GetFilter, tid, index, (nint)p) != count) { errno = Marshal.GetLastPInvokeError(); return null; }
            programs.Add(program);
        }
        return new SeccompFilter(programs);
    }

    /// <summary>What the filters answer for syscall <paramref name="number"/> with <paramref name="args"/> issued at <paramref name="instructionPointer"/>.</summary>
    public Action Decide(long number, ulong instructionPointer, ReadOnlySpan<ulong> args)
    {
        Span<byte> data = stackalloc byte[DataSize];
        data.Clear();
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(data, (int)number);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(data[4..], ArchX8664);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(data[8..], instructionPointer);
        for (int i = 0; i < args.Length && i < 6; i++) System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(data[(16 + 8 * i)..], args[i]);
        var worst = Action.Allow;
        foreach (var program in _programs)
        {
            var action = (Action)(Run(program, data) & ActionMask);
            if (Severity(action) < Severity(worst)) worst = action;
        }
        return worst;
    }

    /// <summary>Whether the action lets an injected call run or fail harmlessly: it neither kills, traps nor waits for a supervisor.</summary>
    public static bool IsHarmless(Action action) => action is Action.Allow or Action.Log or Action.Errno or Action.Trace;

    /// <summary>The kernel's precedence (kernel/seccomp.c): KILL_PROCESS first, then the values in ascending order; unknown values count as KILL_PROCESS.</summary>
    private static long Severity(Action action) => action switch
    {
        Action.KillProcess => -1,
        Action.KillThread or Action.Trap or Action.Errno or Action.UserNotify or Action.Trace or Action.Log or Action.Allow => (long)action,
        _ => -1,
    };

    // The classic BPF opcodes a seccomp program may hold (include/uapi/linux/bpf_common.h; kernel/seccomp.c
    // seccomp_check_filter): class | size | mode, class | op | source.
    private const ushort LdAbsW = 0x20, LdLenW = 0x80, LdImm = 0x00, LdMem = 0x60, LdxImm = 0x01, LdxMem = 0x61, LdxLenW = 0x81;
    private const ushort St = 0x02, Stx = 0x03, RetK = 0x06, RetA = 0x16, Tax = 0x07, Txa = 0x87, Ja = 0x05, AluNeg = 0x84;
    private const int ClassAlu = 0x04, ClassJmp = 0x05, SourceX = 0x08;
    private const int AluAdd = 0x00, AluSub = 0x10, AluMul = 0x20, AluDiv = 0x30, AluOr = 0x40, AluAnd = 0x50, AluLsh = 0x60, AluRsh = 0x70, AluMod = 0x90, AluXor = 0xa0;
    private const int JumpEq = 0x10, JumpGt = 0x20, JumpGe = 0x30, JumpSet = 0x40;

    /// <summary>
    /// Runs one program (the kernel checked it when it was loaded: jumps go forward, loads stay inside
    /// seccomp_data). Anything this interpreter does not know reads as KILL_PROCESS: never run what cannot be judged.
    /// </summary>
    private static uint Run(Instruction[] program, ReadOnlySpan<byte> data)
    {
        const uint Refuse = (uint)Action.KillProcess;
        uint a = 0, x = 0;
        Span<uint> memory = stackalloc uint[MemoryWords];
        memory.Clear();
        for (int pc = 0; pc < program.Length; pc++)
        {
            var ins = program[pc];
            int code = ins.Code;
            bool inMemory = ins.K < MemoryWords;
            switch (code)
            {
                case LdAbsW when ins.K <= DataSize - 4 && ins.K % 4 == 0: a = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[(int)ins.K..]); continue;
                case LdLenW: a = DataSize; continue;
                case LdImm: a = ins.K; continue;
                case LdMem when inMemory: a = memory[(int)ins.K]; continue;
                case LdxLenW: x = DataSize; continue;
                case LdxImm: x = ins.K; continue;
                case LdxMem when inMemory: x = memory[(int)ins.K]; continue;
                case St when inMemory: memory[(int)ins.K] = a; continue;
                case Stx when inMemory: memory[(int)ins.K] = x; continue;
                case RetK: return ins.K;
                case RetA: return a;
                case Tax: x = a; continue;
                case Txa: a = x; continue;
                case Ja: pc += (int)ins.K; continue;
                case AluNeg: a = (uint)-(int)a; continue;
            }
            uint operand = (code & SourceX) != 0 ? x : ins.K;
            int op = code & 0xf0;
            if ((code & ~(0xf0 | SourceX)) == ClassAlu)
            {
                switch (op)
                {
                    case AluAdd: a += operand; break;
                    case AluSub: a -= operand; break;
                    case AluMul: a *= operand; break;
                    case AluDiv: if (operand == 0) return 0; a /= operand; break; // the kernel's program returns 0 (KILL_THREAD)
                    case AluMod: if (operand == 0) return 0; a %= operand; break;
                    case AluOr: a |= operand; break;
                    case AluAnd: a &= operand; break;
                    case AluLsh: a = operand >= 32 ? 0 : a << (int)operand; break;
                    case AluRsh: a = operand >= 32 ? 0 : a >> (int)operand; break;
                    case AluXor: a ^= operand; break;
                    default: return Refuse;
                }
                continue;
            }
            if ((code & ~(0xf0 | SourceX)) == ClassJmp && op is JumpEq or JumpGt or JumpGe or JumpSet)
            {
                bool taken = op switch
                {
                    JumpEq => a == operand,
                    JumpGt => a > operand,
                    JumpGe => a >= operand,
                    _ => (a & operand) != 0,
                };
                pc += taken ? ins.Jt : ins.Jf;
                continue;
            }
            return Refuse;
        }
        return Refuse; // fell off the end: the kernel never loads such a program
    }
}
