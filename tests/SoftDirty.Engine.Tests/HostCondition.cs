using System;

namespace SoftDirty.Tests;

/// <summary>
/// Why this host cannot run a test that needs <see cref="HostNeeds"/>: null when it can. Read once per
/// test at discovery (xunit v2 has no skip from inside a test), so a test that cannot run is reported as
/// skipped with this reason instead of returning early as passed.
/// </summary>
public static class HostCondition
{
    public static string? WhyNot(HostNeeds needs)
    {
        if (!OperatingSystem.IsLinux()) return "needs Linux (/proc/PID/pagemap); this is " + Environment.OSVersion.Platform;
        if (needs.HasFlag(HostNeeds.PagemapScan) && !KernelProbe.Current.PagemapScan)
            return "needs PAGEMAP_SCAN: " + KernelProbe.Current.PagemapScanReason;
        if (needs.HasFlag(HostNeeds.UffdWriteProtectAsync) && !KernelProbe.Current.UffdWriteProtectAsync)
            return "needs userfaultfd async write-protect: " + KernelProbe.Current.UffdWriteProtectAsyncReason;
        if (needs.HasFlag(HostNeeds.SyscallInjection))
        {
            if (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
                return "needs syscall injection, implemented for x86-64 only; this is " + System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture;
            if (YamaScope() is int scope && (scope >= 3 || (scope == 2 && Environment.UserName != "root")))
                return $"needs ptrace of a descendant, which Yama's ptrace_scope {scope} forbids here";
        }
        if (needs.HasFlag(HostNeeds.AllProcessesVisible) && SystemStartTimes.Read() is null)
            return "needs every process of the system visible: this runs in a pid namespace other than the host's, or /proc hides some (hidepid, a stat this user may not read)";
        if (needs.HasFlag(HostNeeds.Unprivileged) && SoftDirty.Images.FileNative.Geteuid() == 0)
            return "needs an unprivileged user: root writes where the file modes say no";
        return null;
    }

    private static int? YamaScope()
    {
        try { return int.Parse(System.IO.File.ReadAllText("/proc/sys/kernel/yama/ptrace_scope").Trim(), System.Globalization.CultureInfo.InvariantCulture); }
        catch (System.IO.IOException) { return null; }
        catch (FormatException) { return null; }
    }
}
