using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>Creates trackers; resolves Auto to the best method the target supports.</summary>
public static class DirtyTracker
{
    /// <summary>
    /// The method Auto picks: SoftDirty where the kernel sets bit 55; else WriteProtect where the target is
    /// this process, an emulated one that supports it, or another process this one may inject into; else Hash. <paramref name="reason"/> says why.
    /// </summary>
    public static TrackingMethod Resolve(IPageSource source, TrackingMethod method, out string reason)
    {
        switch (method)
        {
            case TrackingMethod.SoftDirty:
                reason = "SoftDirty (asked for): clear_refs \"4\" and bit 55 of pagemap.";
                return method;
            case TrackingMethod.WriteProtect:
                reason = "WriteProtect (asked for): userfaultfd async write-protect and PAGEMAP_SCAN WRITTEN.";
                return method;
            case TrackingMethod.Hash:
                reason = "Hash (asked for): present pages hashed through /proc/PID/mem.";
                return method;
        }
        if (source.Features.SoftDirty)
        {
            reason = "Auto chose SoftDirty: the kernel sets the soft-dirty bit.";
            return TrackingMethod.SoftDirty;
        }
        if (WriteProtectTracker.IsSupported(source, out var refused))
        {
            reason = $"Auto chose WriteProtect: no soft-dirty here ({source.Features.SoftDirtyReason}), and process {source.ProcessId} can be registered for async write-protect.";
            return TrackingMethod.WriteProtect;
        }
        reason = $"Auto chose Hash: no soft-dirty here ({source.Features.SoftDirtyReason ?? "not supported"}), and async write-protect cannot be used: {refused}";
        return TrackingMethod.Hash;
    }

    public static IDirtyTracker Create(IPageSource source, TrackingMethod method, PageHashAlgorithm algorithm = PageHashAlgorithm.Fast128, Func<MemoryMapping, bool>? selector = null)
    {
        var resolved = Resolve(source, method, out var reason);
        return resolved switch
        {
            TrackingMethod.SoftDirty => new SoftDirtyTracker(source, selector) { Description = reason },
            TrackingMethod.WriteProtect => new WriteProtectTracker(source, selector) { Description = reason },
            _ => new HashTracker(source, algorithm, selector) { Description = reason },
        };
    }
}

/// <summary>Stops a process for a consistent read (SIGSTOP) and always resumes it (SIGCONT).</summary>
public sealed class ProcessFreeze : IDisposable
{
    private const int SIGCONT = 18, SIGSTOP = 19;
    private readonly IPageSource _source;
    private bool _frozen;

    private ProcessFreeze(IPageSource source) => _source = source;

    /// <summary>Freezes <paramref name="source"/>: an <see cref="IFreezable"/> itself, a real process by SIGSTOP (waiting until it has stopped).</summary>
    public static ProcessFreeze Freeze(IPageSource source, CancellationToken cancel = default)
    {
        var f = new ProcessFreeze(source);
        if (source is IFreezable freezable) { freezable.Freeze(); f._frozen = true; return f; }
        if (source.ProcessId == Environment.ProcessId)
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument, "A process cannot freeze itself: -Freeze needs another process.", source.ProcessId);
        if (Native.Kill(source.ProcessId, SIGSTOP) != 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw new SoftDirtyException(e == Errno.ESRCH ? SoftDirtyError.ProcessExited : SoftDirtyError.PermissionDenied,
                $"SIGSTOP to process {source.ProcessId} failed: {Errno.Describe(e)}", source.ProcessId, e);
        }
        f._frozen = true;
        // Wait until every thread has stopped (state T in /proc/PID/task/*/stat), at most 2 s.
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (DateTime.UtcNow < deadline && !AllStopped(source.ProcessId)) { cancel.ThrowIfCancellationRequested(); Thread.Sleep(1); }
        return f;
    }

    private static bool AllStopped(int pid)
    {
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                var stat = File.ReadAllText(Path.Combine(task, "stat"));
                int close = stat.LastIndexOf(')');
                char state = close > 0 && close + 2 < stat.Length ? stat[close + 2] : '?';
                if (state != 'T' && state != 't' && state != 'Z' && state != 'X') return false;
            }
            return true;
        }
        catch (IOException) { return true; }
        catch (UnauthorizedAccessException) { return true; }
    }

    public void Dispose()
    {
        if (!_frozen) return;
        _frozen = false;
        if (_source is IFreezable freezable) freezable.Thaw();
        else Native.Kill(_source.ProcessId, SIGCONT);
    }
}
