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

/// <summary>Stops a process for a consistent read and resumes what it stopped (an emulated one directly, a real one with <see cref="PtraceFreeze"/>).</summary>
public sealed class ProcessFreeze : IDisposable
{
    private readonly IPageSource _source;
    private bool _frozen;

    private ProcessFreeze(IPageSource source) => _source = source;

    private PtraceFreeze? _ptrace;

    /// <summary>Freezes <paramref name="source"/>: an <see cref="IFreezable"/> itself, a real process with <see cref="PtraceFreeze"/> (resumed by the kernel if this process dies; left alone if it was stopped already).</summary>
    public static ProcessFreeze Freeze(IPageSource source, CancellationToken cancel = default)
    {
        var f = new ProcessFreeze(source);
        if (source is IFreezable freezable) { freezable.Freeze(); f._frozen = true; return f; }
        f._ptrace = PtraceFreeze.Freeze(source.ProcessId, cancel);
        f._frozen = true;
        return f;
    }

    /// <summary>The state letter of a /proc/.../stat file (R, S, D, T, t, Z...); null where it cannot be read (gone).</summary>
    internal static char? ThreadState(string statPath)
    {
        try
        {
            var stat = File.ReadAllText(statPath);
            int close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length ? stat[close + 2] : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Every thread of the process is stopped (state T or t), or gone.</summary>
    internal static bool AllStopped(int pid)
    {
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                var state = ThreadState(Path.Combine(task, "stat"));
                if (state is not (null or 'T' or 't' or 'Z' or 'X')) return false;
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
        else _ptrace?.Dispose();
    }
}
