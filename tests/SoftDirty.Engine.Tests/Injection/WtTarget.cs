using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Xunit;

namespace SoftDirty.Tests.Injection;

/// <summary>The native write-tracking target (tests/native/wttarget.c) and its line protocol.</summary>
public sealed class WtTarget : IDisposable
{
    private readonly Process _process;

    public WtTarget()
    {
        // Through a shell, as its child: these tests track a process that is not a child of this one (the usual
        // case). A direct child works too (ChildStopGuard keeps its ptrace stops from .NET's reaping); the child
        // tests start their targets directly.
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("exec 3<&0; \"$0\" <&3 3<&- & wait $!"); // stdin through fd 3: a background job would read /dev/null
        psi.ArgumentList.Add(PathOf("wttarget"));
        _process = Process.Start(psi)!;
        var ready = _process.StandardOutput.ReadLine() ?? throw new InvalidOperationException("wttarget printed nothing");
        var parts = ready.Split(' ');
        Assert.Equal("READY", parts[0]);
        Pid = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        PageSize = int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture);
    }

    public int Pid { get; }
    public int PageSize { get; }

    /// <summary>The built native program (build.ps1 Native compiles every tests/native/*.c).</summary>
    public static string PathOf(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "native", "bin", name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException($"tests/native/bin/{name} is missing: run ./build.ps1 Native first.");
    }

    /// <summary>Sends one command; returns the words after "OK".</summary>
    public string[] Send(string command)
    {
        _process.StandardInput.WriteLine(command);
        _process.StandardInput.Flush();
        return Receive(command);
    }

    /// <summary>Sends a command without waiting for its answer (the target will block in it).</summary>
    public void Start(string command)
    {
        _process.StandardInput.WriteLine(command);
        _process.StandardInput.Flush();
    }

    public string[] Receive(string command)
    {
        var line = _process.StandardOutput.ReadLine() ?? throw new InvalidOperationException($"wttarget exited during '{command}'");
        Assert.True(line.StartsWith("OK", StringComparison.Ordinal), $"'{command}' answered '{line}'");
        return line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).ToArray();
    }

    public ulong Map(int pages) => Convert.ToUInt64(Send($"map {pages}")[0], 16);

    /// <summary>Waits until the main thread sits in syscall <paramref name="number"/> (/proc/PID/syscall).</summary>
    public void WaitInSyscall(int number)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var text = File.ReadAllText($"/proc/{Pid}/syscall").Split(' ')[0];
                if (int.TryParse(text, out int n) && n == number) return;
            }
            catch (IOException) { }
            System.Threading.Thread.Sleep(1);
        }
        throw new TimeoutException($"process {Pid} never entered syscall {number}");
    }

    public int[] OpenDescriptors() =>
        Directory.GetFileSystemEntries($"/proc/{Pid}/fd").Select(f => int.Parse(Path.GetFileName(f), System.Globalization.CultureInfo.InvariantCulture)).OrderBy(x => x).ToArray();

    public void Dispose()
    {
        // By pid: a traced child's stops reach .NET's SIGCHLD handler too, and Process may believe it exited.
        if (Directory.Exists($"/proc/{Pid}")) SoftDirty.Native.Kill(Pid, SoftDirty.Signal.SIGKILL);
        try { _process.WaitForExit(5000); }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
