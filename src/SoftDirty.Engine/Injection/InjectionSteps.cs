using System;
using System.Collections.Generic;
using System.Diagnostics;

namespace SoftDirty.Injection;

/// <summary>
/// The time each step of an injection took (ptrace attach, each injected syscall, the state file...), summed
/// per step name, for the bench's split of Enable-WriteTracking (tests/BenchWriteTracking.ps1). Off (null)
/// unless a caller sets <see cref="Current"/> on its thread; a step costs one null check then.
/// </summary>
internal sealed class InjectionSteps
{
    [ThreadStatic] private static InjectionSteps? _current;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private double _last;

    /// <summary>The recorder of this thread, or null (the default: nothing is recorded).</summary>
    public static InjectionSteps? Current { get => _current; set => _current = value; }

    /// <summary>Milliseconds per step, in the order the steps first ended.</summary>
    public Dictionary<string, double> Milliseconds { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Called with each step's name as it ends (tests: an exception thrown here stands for a Ctrl+C or a kill at
    /// that point of the command).
    /// </summary>
    public Action<string>? OnStep { get; init; }

    /// <summary>Ends step <paramref name="name"/> on this thread's recorder, if any: the time since the previous mark is added to it.</summary>
    public static void Mark(string name)
    {
        var s = _current;
        if (s is null) return;
        double now = s._clock.Elapsed.TotalMilliseconds;
        s.Milliseconds[name] = s.Milliseconds.GetValueOrDefault(name) + (now - s._last);
        s._last = now;
        s.OnStep?.Invoke(name);
    }
}
