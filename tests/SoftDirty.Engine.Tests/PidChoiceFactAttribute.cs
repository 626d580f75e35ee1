using System;
using System.Globalization;
using System.IO;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// A fact that gives a new process a chosen pid (it writes /proc/sys/kernel/ns_last_pid, which needs CAP_SYS_ADMIN
/// or CAP_CHECKPOINT_RESTORE): skipped, with the reason, where the kernel refuses that write.
/// </summary>
public sealed class PidChoiceFactAttribute : FactAttribute
{
    public const string LastPidFile = "/proc/sys/kernel/ns_last_pid";

    public PidChoiceFactAttribute(HostNeeds needs = HostNeeds.Linux) => Skip = HostCondition.WhyNot(needs | HostNeeds.Linux) ?? WhyNot();

    private static string? WhyNot()
    {
        try
        {
            // Writing back the value just read changes nothing a fork would notice (the kernel skips pids in use).
            var last = File.ReadAllText(LastPidFile).Trim();
            File.WriteAllText(LastPidFile, last);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return string.Create(CultureInfo.InvariantCulture, $"needs to choose the next pid ({LastPidFile}, CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE): {e.Message}");
        }
    }
}
