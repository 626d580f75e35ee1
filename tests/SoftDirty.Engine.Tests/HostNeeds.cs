using System;

namespace SoftDirty.Tests;

/// <summary>What a test of the real host needs; <see cref="HostFactAttribute"/> skips, with the reason, where it is missing.</summary>
[Flags]
public enum HostNeeds
{
    /// <summary>Linux's /proc.</summary>
    Linux = 1,
    /// <summary>The PAGEMAP_SCAN ioctl (Linux 6.7+), as KernelProbe measured it.</summary>
    PagemapScan = 2,
    /// <summary>userfaultfd async write-protect (UFFD_FEATURE_WP_ASYNC, Linux 6.7+) on this process, as KernelProbe measured it.</summary>
    UffdWriteProtectAsync = 4,
    /// <summary>Syscall injection into another process (x86-64 only, and ptrace allowed by Yama's ptrace_scope).</summary>
    SyscallInjection = 8,
    /// <summary>Every process of the system visible (the first pid namespace, /proc without hidepid), as <see cref="SystemStartTimes"/> reads them.</summary>
    AllProcessesVisible = 16,
    /// <summary>An unprivileged user (root writes where file modes say no).</summary>
    Unprivileged = 32,
}
