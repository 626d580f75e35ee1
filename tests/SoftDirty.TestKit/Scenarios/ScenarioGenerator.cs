using System;
using System.Collections.Generic;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// Random scenarios from a seed: a small window, every operation of the language, mostly valid
/// arguments (faults and errors included on purpose: they are compared too). The write-tracking ops
/// (scan, uffdwp, written: PAGEMAP_SCAN and userfaultfd, 6.7+) come only with
/// <c>allowWriteTracking</c>; without it a seed gives the same scenarios as before they existed. The same for the
/// fork advice and seals (wipeonfork, keeponfork, dontfork, dofork, seal; with file mappings, truncate too: round 33),
/// which only <c>allowForkAdvice</c> draws: the kernel matrix's recorded prints have none.
/// </summary>
public sealed class ScenarioGenerator
{
    private readonly Random _random;
    private readonly bool _allowFile;
    private readonly bool _allowWriteTracking;
    private readonly bool _allowForkAdvice;

    /// <summary>The scenarios of <paramref name="seed"/>; file mappings, write tracking and fork advice with seals as allowed.</summary>
    public ScenarioGenerator(int seed, bool allowFileMappings = true, bool allowWriteTracking = false, bool allowForkAdvice = false)
    {
        _random = new Random(seed);
        _allowFile = allowFileMappings;
        _allowWriteTracking = allowWriteTracking;
        _allowForkAdvice = allowForkAdvice;
    }

    /// <summary>The next scenario: a window of 4 to 16 pages and <paramref name="minOps"/> to <paramref name="maxOps"/> random ops.</summary>
    public Scenario Next(string name, int minOps = 6, int maxOps = 30)
    {
        int window = _random.Next(4, 17);
        var ops = new List<ScenarioOp> { new(ScenarioOpKind.Reserve, Count: window) };
        int n = _random.Next(minOps, maxOps + 1);
        bool forked = false;
        // Start with a mapping so most scenarios do something.
        ops.Add(new ScenarioOp(ScenarioOpKind.Map, 0, Math.Max(1, window / 2), Protection: Protection.Read | Protection.Write, Mapping: ScenarioMappingKind.Anon));
        for (int i = 0; i < n; i++)
        {
            int page = _random.Next(window);
            int count = _random.Next(1, Math.Min(4, window - page) + 1);
            var kind = Pick();
            switch (kind)
            {
                case ScenarioOpKind.Map:
                    ops.Add(new ScenarioOp(kind, page, count, Protection: RandomProtection(), Mapping: RandomMappingKind()));
                    break;
                case ScenarioOpKind.Mprotect:
                    ops.Add(new ScenarioOp(kind, page, count, Protection: RandomProtection()));
                    break;
                case ScenarioOpKind.Mremap:
                    int target = _random.Next(window - count + 1);
                    if (target == page) target = (target + count) % (window - count + 1);
                    if (Math.Abs(target - page) < count) target = page; // overlapping moves are EINVAL; keep a few
                    ops.Add(new ScenarioOp(kind, page, count, target));
                    break;
                case ScenarioOpKind.Clear:
                    ops.Add(new ScenarioOp(kind, Count: _random.Next(4) == 0 ? _random.Next(1, 6) : (int)ClearRefsType.SoftDirty));
                    break;
                case ScenarioOpKind.Fork:
                    if (forked) goto case ScenarioOpKind.Switch;
                    forked = true;
                    ops.Add(new ScenarioOp(kind));
                    break;
                case ScenarioOpKind.Switch:
                    ops.Add(forked ? new ScenarioOp(ScenarioOpKind.Switch) : new ScenarioOp(ScenarioOpKind.Check));
                    break;
                case ScenarioOpKind.Check:
                case ScenarioOpKind.Scan:
                case ScenarioOpKind.Written:
                case ScenarioOpKind.Neighbour:
                    ops.Add(new ScenarioOp(kind));
                    break;
                case ScenarioOpKind.Truncate:
                    if (!_allowFile) goto case ScenarioOpKind.Check;
                    ops.Add(new ScenarioOp(kind, Count: _random.Next(window + 1)));
                    break;
                case ScenarioOpKind.UffdWp:
                    // Mostly the whole window, so that "written" finds every VMA registered.
                    ops.Add(_random.Next(2) == 0 ? new ScenarioOp(kind, 0, window) : new ScenarioOp(kind, page, count));
                    break;
                default:
                    ops.Add(new ScenarioOp(kind, page, count));
                    break;
            }
        }
        ops.Add(new ScenarioOp(ScenarioOpKind.Check));
        return new Scenario(name, ops);
    }

    private ScenarioOpKind Pick()
    {
        int tracking = _allowWriteTracking ? 120 : 100;
        int r = _random.Next(_allowForkAdvice ? tracking + 18 : tracking);
        if (r >= tracking)
            return (r - tracking) switch
            {
                < 4 => ScenarioOpKind.WipeOnFork,
                < 6 => ScenarioOpKind.KeepOnFork,
                < 10 => ScenarioOpKind.DontFork,
                < 12 => ScenarioOpKind.DoFork,
                < 15 => ScenarioOpKind.Seal,
                _ => ScenarioOpKind.Truncate,
            };
        return r switch
        {
            >= 115 => ScenarioOpKind.Neighbour,
            >= 110 => ScenarioOpKind.Written,
            >= 105 => ScenarioOpKind.UffdWp,
            >= 100 => ScenarioOpKind.Scan,
            < 28 => ScenarioOpKind.Write,
            < 38 => ScenarioOpKind.Read,
            < 50 => ScenarioOpKind.Clear,
            < 58 => ScenarioOpKind.Map,
            < 63 => ScenarioOpKind.Unmap,
            < 70 => ScenarioOpKind.Mprotect,
            < 75 => ScenarioOpKind.Mremap,
            < 80 => ScenarioOpKind.DontNeed,
            < 83 => ScenarioOpKind.Fork,
            < 87 => ScenarioOpKind.Switch,
            _ => ScenarioOpKind.Check,
        };
    }

    private Protection RandomProtection() => _random.Next(10) switch
    {
        0 => Protection.None,
        < 3 => Protection.Read,
        9 => Protection.Read | Protection.Write | Protection.Execute,
        _ => Protection.Read | Protection.Write,
    };

    private ScenarioMappingKind RandomMappingKind()
    {
        int r = _random.Next(_allowFile ? 10 : 7);
        return r switch { < 5 => ScenarioMappingKind.Anon, < 7 => ScenarioMappingKind.Shared, < 9 => ScenarioMappingKind.File, _ => ScenarioMappingKind.FilePriv };
    }
}
