using System;
using System.Runtime.InteropServices;

namespace SoftDirty.Injection;

/// <summary>
/// Everything about syscall injection that differs between CPU architectures: the general register set as
/// PTRACE_GETREGSET NT_PRSTATUS returns it (an array of 64-bit words), which words hold the instruction
/// pointer, the syscall number, its arguments and its result, the bytes of the syscall instruction, and the
/// syscall numbers injection uses. x86-64 today; arm64 is one more instance (plus NT_ARM_SYSTEM_CALL to
/// cancel a restart, which x86-64 does through orig_rax).
/// </summary>
internal sealed class InjectionArchitecture
{
    public required string Name { get; init; }
    /// <summary>Words in the register set (x86-64 user_regs_struct: 27).</summary>
    public required int RegisterWords { get; init; }
    public required int InstructionPointer { get; init; }
    /// <summary>The word that carries the syscall number into the kernel.</summary>
    public required int SyscallNumber { get; init; }
    /// <summary>The word the kernel's restart logic reads the interrupted syscall from (orig_rax); -1 where none.</summary>
    public required int InterruptedSyscall { get; init; }
    /// <summary>The stack pointer's word.</summary>
    public required int StackPointer { get; init; }
    /// <summary>The word that returns the result (a negative errno on failure).</summary>
    public required int Result { get; init; }
    /// <summary>The words of the first six syscall arguments, in order.</summary>
    public required int[] Arguments { get; init; }
    /// <summary>The syscall instruction (x86-64: 0F 05, "syscall").</summary>
    public required byte[] SyscallInstruction { get; init; }
    public required long SigProcMask { get; init; }
    public required long Ioctl { get; init; }
    public required long Close { get; init; }
    public required long Userfaultfd { get; init; }

    /// <summary>x86-64 (arch/x86/include/asm/user_64.h, arch/x86/entry/syscalls/syscall_64.tbl).</summary>
    public static readonly InjectionArchitecture X64 = new()
    {
        Name = "x86-64",
        RegisterWords = 27,
        // r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs
        Result = 10,
        SyscallNumber = 10,
        InterruptedSyscall = 15,
        InstructionPointer = 16,
        StackPointer = 19,
        Arguments = new[] { 14, 13, 12, 7, 9, 8 }, // rdi rsi rdx r10 r8 r9
        SyscallInstruction = new byte[] { 0x0F, 0x05 },
        SigProcMask = 14,
        Ioctl = 16,
        Close = 3,
        Userfaultfd = 323,
    };

    /// <summary>This machine's architecture, or null where injection is not implemented.</summary>
    public static InjectionArchitecture? Current => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => X64,
        _ => null,
    };

    /// <summary>A result word as the kernel means it: -4095..-1 is a negative errno.</summary>
    public static bool IsError(ulong result, out int errno)
    {
        long r = (long)result;
        errno = r < 0 && r >= -4095 ? (int)-r : 0;
        return errno != 0;
    }

    /// <summary>restart_syscall, which the kernel issues for a call interrupted with ERESTART_RESTARTBLOCK (x86-64).</summary>
    public const ulong RestartSyscall = 219;

    /// <summary>No syscall to restart: the value the interrupted-syscall word holds outside a syscall.</summary>
    public const ulong NoSyscall = ulong.MaxValue;

    /// <summary>Whether <paramref name="regs"/> show a syscall interrupted with a restart code (the kernel will restart it).</summary>
    /// <remarks>
    /// The kernel-internal restart codes (<see cref="Errno.ERESTARTSYS"/> and its siblings) a syscall interrupted by a signal (or a ptrace stop) leaves in the
    /// result word (include/linux/errno.h). On return to user space without a signal handler to run, the
    /// kernel (arch_do_signal_or_restart) rewinds the instruction pointer over the syscall instruction: for
    /// the first three it re-issues the same call; for RestartBlock it issues restart_syscall, which resumes
    /// from current->restart_block (a nanosleep keeps its absolute end). Injection restores the registers
    /// exactly and lets the kernel do this, as a signal without a handler would; the <see cref="RestoreTrampoline"/>
    /// does the same rewind itself when the tracer died first.
    /// </remarks>
    public bool InterruptedWithRestart(ReadOnlySpan<ulong> regs)
    {
        if (InterruptedSyscall < 0 || (long)regs[InterruptedSyscall] < 0) return false;
        long r = (long)regs[Result];
        return r == -Errno.ERESTARTSYS || r == -Errno.ERESTARTNOINTR || r == -Errno.ERESTARTNOHAND || r == -Errno.ERESTART_RESTARTBLOCK;
    }
}
