using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Threading;

namespace SoftDirty.Tests;

/// <summary>
/// Gives a process's pid to a new process once it has ended (a pid reused), for tests of code that must never act on
/// the process that took a pid it remembers. Needs <see cref="PidChoiceFactAttribute"/>.
/// </summary>
internal static class PidReuse
{
    public const int Attempts = 50;

    public static Process Start(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardInput = true, UseShellExecute = false };
        foreach (var arg in args) psi.ArgumentList.Add(arg);
        return Process.Start(psi) ?? throw new InvalidOperationException(file + " did not start");
    }

    /// <summary>Ends <paramref name="old"/> and starts <paramref name="file"/> under its pid; null where another process took the pid first.</summary>
    public static Process? Replace(Process old, string file)
    {
        int pid = old.Id;
        old.Kill();
        old.WaitForExit();
        // A start time (stat field 22) counts clock ticks (10 ms): reusing a pid within one tick takes a privileged
        // choice of pid, as here; without this pause the new process could start in the old one's tick and pass as it.
        Thread.Sleep(TimeSpan.FromMilliseconds(50));
        return StartWithPid(pid, file);
    }

    /// <summary>Starts <paramref name="file"/> as pid <paramref name="pid"/>, or null where another process took it.</summary>
    public static Process? StartWithPid(int pid, string file)
    {
        for (int i = 0; i < Attempts; i++)
        {
            File.WriteAllText(PidChoiceFactAttribute.LastPidFile, (pid - 1).ToString(CultureInfo.InvariantCulture));
            var p = Start(file);
            if (p.Id == pid) return p;
            p.Kill();
            p.WaitForExit();
            p.Dispose();
            if (Directory.Exists($"/proc/{pid}")) return null;
        }
        return null;
    }
}
