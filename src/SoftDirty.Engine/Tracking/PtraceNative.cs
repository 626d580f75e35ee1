using System.Runtime.InteropServices;

namespace SoftDirty.Tracking;

/// <summary>The ptrace calls of <see cref="PtraceFreeze"/> (linux/ptrace.h). Linux only.</summary>
internal static unsafe partial class PtraceNative
{
    private const string Libc = "libc";
    public const int PTRACE_DETACH = 17, PTRACE_GETSIGINFO = 0x4202, PTRACE_SEIZE = 0x4206, PTRACE_INTERRUPT = 0x4207;
    public const int WNOHANG = 1;
    /// <summary>waitpid: wait for any child or tracee, thread or not.</summary>
    public const int __WALL = 0x40000000;
    /// <summary>The event of a PTRACE_INTERRUPT (or group) stop of a seized tracee, in bits 16-23 of the wait status.</summary>
    public const int PTRACE_EVENT_STOP = 128;

    [LibraryImport(Libc, EntryPoint = "ptrace", SetLastError = true)]
    public static partial nint Ptrace(nint request, int pid, nint addr, nint data);

    [LibraryImport(Libc, EntryPoint = "waitpid", SetLastError = true)]
    public static partial int Waitpid(int pid, int* status, int options);
}
