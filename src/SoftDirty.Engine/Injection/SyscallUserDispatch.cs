using System;

namespace SoftDirty.Injection;

/// <summary>
/// A thread's syscall user dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH, Linux 5.11; kernel/entry/syscall_user_dispatch.c),
/// as PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG tells a tracer (Linux 6.2). While it is on, a syscall whose return address
/// lies outside the thread's exempt range is not run when the selector byte in its memory says block, or when there is
/// no selector: the kernel forces SIGSYS on the thread instead, which, forced while injection blocks every signal, also
/// resets the process's SIGSYS handler to the default (the next dispatch of its own then kills it). A selector byte
/// that is neither allow nor block kills the process with SIGSYS, one that cannot be read with SIGSEGV. So every
/// injected call, and the restore code's own, is judged here first and never issued where it would be dispatched.
/// </summary>
internal sealed class SyscallUserDispatch
{
    /// <summary>PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG and sizeof(struct ptrace_sud_config) (include/uapi/linux/ptrace.h).</summary>
    public const long GetConfig = 0x4211;
    private const int ConfigSize = 32;
    /// <summary>SYSCALL_DISPATCH_FILTER_ALLOW and _BLOCK: the selector byte's two valid values (include/uapi/linux/prctl.h).</summary>
    public const byte Allow = 0, Block = 1;
    /// <summary>SIGSYS, and the si_code of the SIGSYS a dispatch forces (SYS_USER_DISPATCH).</summary>
    public const int SigSys = 31, DispatchCode = 2;

    /// <summary>The selector's address (0: none, every call outside the range is dispatched).</summary>
    public ulong Selector { get; }
    /// <summary>The exempt range as the kernel keeps it: a call returning to ip runs when (ip - Offset) &lt; Length, unsigned (an inclusive range is kept inverted).</summary>
    public ulong Offset { get; }
    public ulong Length { get; }

    public SyscallUserDispatch(ulong selector, ulong offset, ulong length)
    {
        Selector = selector;
        Offset = offset;
        Length = length;
    }

    /// <summary>
    /// The dispatch of stopped thread <paramref name="tid"/> (this process its tracer): null when it is off, or when the
    /// kernel cannot say (<paramref name="known"/> false: before 6.2, EIO).
    /// </summary>
    public static unsafe SyscallUserDispatch? Read(int tid, out bool known)
    {
        ulong* config = stackalloc ulong[ConfigSize / sizeof(ulong)];
        known = Ptrace.Call(GetConfig, tid, ConfigSize, (nint)config) == 0;
        return known && config[0] != 0 ? new SyscallUserDispatch(config[1], config[2], config[3]) : null;
    }

    /// <summary>Whether a call returning to <paramref name="returnAddress"/> is exempt by the range (never dispatched).</summary>
    public bool Exempt(ulong returnAddress) => unchecked(returnAddress - Offset) < Length;

    /// <summary>
    /// What the kernel does to a call returning to <paramref name="returnAddress"/> when the selector byte is
    /// <paramref name="selectorByte"/> (null: it cannot be read): null when the call runs, else why it is not issued.
    /// </summary>
    public string? Refusal(ulong returnAddress, byte? selectorByte)
    {
        if (Exempt(returnAddress)) return null;
        if (Selector == 0) return "dispatches every syscall outside its exempt range to its SIGSYS handler (no selector)";
        return selectorByte switch
        {
            null => $"has a selector at 0x{Selector:x} that cannot be read, for which the kernel kills the process (SIGSEGV)",
            Allow => null,
            Block => $"has its selector at 0x{Selector:x} set to block: a syscall outside its exempt range goes to its SIGSYS handler, not to the kernel",
            _ => $"has its selector at 0x{Selector:x} set to {selectorByte}, for which the kernel kills the process (SIGSYS)",
        };
    }
}
