using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using SoftDirty.Emulation;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// Runs scenarios on emulated processes and prints them exactly as tests/native/sdscenario.c does on real
/// memory ("scenario", "op N ERRNO" or "op N SEGV" per failure, "check N who" with one
/// "page hex-flags" line per window page, "end"), so the two prints compare line by line. Each scenario
/// gets a fresh process on its own machine, with one backing file of the window's size.
/// </summary>
public sealed class EmulatedScenarioRunner : IScenarioRunner
{
    private const string FileName = "/tmp/sdscenario";
    private const string Self = "self", Parent = "parent", Child = "child";

    /// <summary>Runs on <paramref name="profile"/> (the default profile when null).</summary>
    public EmulatedScenarioRunner(KernelProfile? profile = null) : this(profile, EmulatedFileSystem.Disk) { }

    /// <summary>Runs on <paramref name="profile"/> with the scenarios' file on <paramref name="fileSystem"/> (sdscenario's temporary folder's).</summary>
    public EmulatedScenarioRunner(KernelProfile? profile, EmulatedFileSystem fileSystem)
    {
        Profile = profile ?? KernelProfile.Default;
        FileSystem = fileSystem;
    }

    /// <summary>The kernel profile every scenario's process runs on.</summary>
    public KernelProfile Profile { get; }

    /// <summary>The file system of the scenarios' backing file.</summary>
    public EmulatedFileSystem FileSystem { get; }

    /// <inheritdoc/>
    public IReadOnlyList<string> Run(IReadOnlyList<Scenario> scenarios)
    {
        var prints = new List<string>(scenarios.Count);
        foreach (var s in scenarios) prints.Add(RunOne(s));
        return prints;
    }

    /// <summary>Window alignment: 2 MiB, as sdscenario reserves it, so fault-around matches.</summary>
    public const ulong WindowAlignment = 2UL << 20;

    /// <summary>The window rounded up to whole 2 MiB ranges: its page tables, shared with no other mapping.</summary>
    private static ulong Span(ulong length) => (length + WindowAlignment - 1) & ~(WindowAlignment - 1);

    // PROT_NONE over the span + 2 MiB, then the unaligned head and everything after the window unmapped, as
    // sdscenario does: the window's 2 MiB ranges hold no other mapping.
    private static ulong ReserveAlignedWindow(EmulatedProcess process, ulong length)
    {
        ulong span = Span(length);
        ulong raw = process.Mmap(null, span + WindowAlignment, Protection.None).Start;
        ulong aligned = (raw + WindowAlignment - 1) & ~(WindowAlignment - 1);
        if (aligned > raw) process.Munmap(raw, aligned - raw);
        ulong tail = raw + span + WindowAlignment - (aligned + length);
        if (tail > 0) process.Munmap(aligned + length, tail);
        return aligned;
    }

    private string RunOne(Scenario scenario)
    {
        var run = new ScenarioRun(new EmulatedProcess("sdscenario", Profile));
        run.Output.Append("scenario ").Append(scenario.Name).Append('\n');
        foreach (var op in scenario.Ops)
        {
            run.OpNumber++;
            if (op.Kind == ScenarioOpKind.Reserve)
            {
                run.WindowPages = op.Count;
                run.Window = ReserveAlignedWindow(run.Process, (ulong)op.Count * EmulatedProcess.PageBytes);
                run.Process.SetFileSystem(FileName, FileSystem);
                run.Process.TruncateFile(FileName, (ulong)op.Count * EmulatedProcess.PageBytes);   // sdscenario's file: the window's size
                continue;
            }
            if (op.Kind == ScenarioOpKind.Switch)
            {
                if (run.Child != null) run.CurrentIsChild = !run.CurrentIsChild;
                continue;
            }
            if (op.Kind == ScenarioOpKind.SwapOff)
            {
                // swapoff brings every swapped page of every process back (unuse_pte: soft-dirty and uffd-wp from the entry).
                foreach (var q in new[] { run.Process, run.Child })
                    if (q != null)
                        foreach (var m in q.ReadMappings(withCounters: false))
                            if (m.End > run.Window && m.Start < run.Window + (ulong)run.WindowPages * EmulatedProcess.PageBytes) q.SwapIn(m.Start, m.Size);
                continue;
            }
            if (op.Kind == ScenarioOpKind.Fork)
            {
                if (run.Child != null) run.Print("NESTEDFORK");
                else
                {
                    run.Child = run.Process.Fork();
                    run.CurrentIsChild = true;
                    run.Truth[run.Child] = (bool[])run.TruthOf(run.Process).Clone();   // fork copies the record
                }
                continue;
            }
            if (run.CurrentIsChild) Apply(run, run.Child!, op, Child);
            else Apply(run, run.Process, op, run.Child != null ? Parent : Self);
        }
        run.Output.Append("end\n");
        return run.Output.ToString();
    }

    private sealed class ScenarioRun
    {
        public ScenarioRun(EmulatedProcess process) => Process = process;
        public EmulatedProcess Process { get; }
        public EmulatedProcess? Child;
        public bool CurrentIsChild;
        public int OpNumber;
        public ulong Window;
        public int WindowPages;
        public StringBuilder Output { get; } = new();
        public void Print(string what) => Output.Append("op ").Append(OpNumber).Append(' ').Append(what).Append('\n');
        /// <summary>Per process, the window pages it really wrote since its last clear_refs 4 (sdscenario's "truth" record).</summary>
        public readonly Dictionary<EmulatedProcess, bool[]> Truth = new();
        public bool[] TruthOf(EmulatedProcess p)
        {
            if (!Truth.TryGetValue(p, out var t)) Truth[p] = t = new bool[WindowPages];
            return t;
        }
    }

    private static void Apply(ScenarioRun run, EmulatedProcess p, ScenarioOp op, string who)
    {
        ulong page = EmulatedProcess.PageBytes;
        ulong address = run.Window + (ulong)op.Page * page;
        ulong length = (ulong)op.Count * page;
        var truth = run.TruthOf(p);
        try
        {
            switch (op.Kind)
            {
                case ScenarioOpKind.Map:
                    bool file = op.Mapping is ScenarioMappingKind.File or ScenarioMappingKind.FilePriv;
                    bool shared = op.Mapping is ScenarioMappingKind.File or ScenarioMappingKind.Shared;
                    var flags = MmapFlags.Fixed | (shared ? MmapFlags.Shared : 0) | (op.Mapping == ScenarioMappingKind.Huge ? MmapFlags.HugePage : 0);
                    p.Mmap(address, length, op.Protection, flags, file ? FileName : null,
                        offset: file ? (ulong)op.Page * page : 0);
                    TruthClear(truth, op.Page, op.Count);
                    break;
                case ScenarioOpKind.Unmap:
                    p.Munmap(address, length);
                    TruthClear(truth, op.Page, op.Count);
                    break;
                case ScenarioOpKind.Mremap:
                    // The truth record follows each page that moved: one mapped before and, unless the call
                    // succeeded, not mapped after (a move of several VMAs may stop half-way with EFAULT).
                    var wasMapped = new bool[op.Count];
                    for (int i = 0; i < op.Count; i++) wasMapped[i] = p.IsMapped(address + (ulong)i * page);
                    bool done = false;
                    try
                    {
                        p.Mremap(address, length, run.Window + (ulong)op.Target * page, length);
                        done = true;
                    }
                    finally
                    {
                        var moved = new bool[op.Count];
                        for (int i = 0; i < op.Count; i++) moved[i] = wasMapped[i] && (done || !p.IsMapped(address + (ulong)i * page));
                        var was = new bool[op.Count];
                        for (int i = 0; i < op.Count; i++) was[i] = InWindow(truth, op.Page + i) && truth[op.Page + i];
                        for (int i = 0; i < op.Count; i++) if (moved[i] && InWindow(truth, op.Page + i)) truth[op.Page + i] = false;
                        for (int i = 0; i < op.Count; i++) if (moved[i] && InWindow(truth, op.Target + i)) truth[op.Target + i] = was[i];
                    }
                    break;
                case ScenarioOpKind.Mprotect: p.Mprotect(address, length, op.Protection); break;
                case ScenarioOpKind.DontNeed: p.MadviseDontNeed(address, length); break;
                case ScenarioOpKind.WipeOnFork: p.MadviseWipeOnFork(address, length, wipe: true); break;
                case ScenarioOpKind.KeepOnFork: p.MadviseWipeOnFork(address, length, wipe: false); break;
                case ScenarioOpKind.DontFork: p.MadviseDontFork(address, length, dontFork: true); break;
                case ScenarioOpKind.DoFork: p.MadviseDontFork(address, length, dontFork: false); break;
                case ScenarioOpKind.Seal: p.Mseal(address, length); break;
                case ScenarioOpKind.Truncate: p.TruncateFile(FileName, (ulong)op.Count * page); break;
                case ScenarioOpKind.Clear:
                    p.WriteClearRefs(Encoding.ASCII.GetBytes(op.Count.ToString(CultureInfo.InvariantCulture)));
                    if (op.Count == (int)ClearRefsType.SoftDirty) TruthClear(truth, 0, truth.Length);
                    break;
                case ScenarioOpKind.Read:
                case ScenarioOpKind.Write:
                    Span<byte> one = stackalloc byte[1];
                    for (int i = 0; i < op.Count; i++)
                    {
                        ulong a = address + (ulong)i * page;
                        p.Read(a, 1);                              // (*byte)++ loads first
                        if (op.Kind != ScenarioOpKind.Write) continue;
                        p.ReadMemory(a, one);
                        p.Write(a, 1, unchecked((byte)(one[0] + 1)));
                        if (InWindow(truth, op.Page + i)) truth[op.Page + i] = true;
                    }
                    break;
                case ScenarioOpKind.Fill:
                    p.Write(address, length, (byte)op.Target);
                    for (int i = 0; i < op.Count; i++) if (InWindow(truth, op.Page + i)) truth[op.Page + i] = true;
                    break;
                case ScenarioOpKind.Ksm:
                    p.MadviseMergeable(address, length, mergeable: true);
                    p.KsmScan();
                    break;
                case ScenarioOpKind.Unmerge: p.MadviseMergeable(address, length, mergeable: false); break;
                case ScenarioOpKind.Split: p.SplitHugePages(address, length); break;
                case ScenarioOpKind.Migrate: p.MigratePages(address, length); break;
                case ScenarioOpKind.PageOut: p.SwapOut(address, length); break;
                case ScenarioOpKind.Free: p.MadviseFree(address, length); break;
                case ScenarioOpKind.Cold: break;   // deactivation only: nothing pagemap shows changes
                case ScenarioOpKind.SwapOn: break;
                case ScenarioOpKind.Truth:
                    run.Output.Append("truth ").Append(run.OpNumber).Append(' ').Append(who).Append('\n');
                    for (int i = 0; i < truth.Length;)
                    {
                        if (!truth[i]) { i++; continue; }
                        int j = i;
                        while (j < truth.Length && truth[j]) j++;
                        run.Output.Append(i).Append(' ').Append(j).Append('\n');
                        i = j;
                    }
                    break;
                case ScenarioOpKind.Check:
                    PrintCheck(run, p, who);
                    break;
                case ScenarioOpKind.Scan:
                    PrintScan(run, p, who, "scan", new PagemapScanRequest { ReturnMask = PagemapScanRequest.ValidCategories });
                    break;
                case ScenarioOpKind.Written:
                    PrintScan(run, p, who, "written", new PagemapScanRequest
                    {
                        Flags = PagemapScanFlags.WriteProtectMatching | PagemapScanFlags.CheckWriteProtectAsync,
                        CategoryMask = PageCategory.Written, ReturnMask = PageCategory.Written,
                    });
                    break;
                case ScenarioOpKind.UffdWp:
                    p.RegisterUffdWriteProtectAsync(address, length);
                    p.UffdWriteProtect(address, length);
                    break;
                case ScenarioOpKind.Neighbour:
                    // The last page of the window's last 2 MiB range, outside the window: map, write, unmap.
                    ulong windowBytes = (ulong)run.WindowPages * page;
                    ulong near = run.Window + Span(windowBytes) - page;
                    if (near < run.Window + windowBytes) { run.Print(ErrnoName(Errno.EINVAL)); break; }
                    p.Mmap(near, page, Protection.Read | Protection.Write, MmapFlags.Fixed);
                    p.Write(near, 1, 1);
                    p.Munmap(near, page);
                    break;
            }
        }
        catch (EngineException e) when (e.Error == EngineError.SegmentationFault)
        {
            run.Print("SEGV");
        }
        catch (EngineException e) when (e.Errno != 0)
        {
            run.Print(ErrnoName(e.Errno));
        }
    }

    private static bool InWindow(bool[] truth, int page) => page >= 0 && page < truth.Length;

    private static void TruthClear(bool[] truth, int page, int count)
    {
        for (int i = page; i < page + count; i++) if (InWindow(truth, i)) truth[i] = false;
    }

    private static void PrintCheck(ScenarioRun run, EmulatedProcess p, string who)
    {
        var entries = new PagemapEntry[run.WindowPages];
        int n = p.ReadPagemap(run.Window >> EmulatedProcess.PageShift, entries);
        run.Output.Append("check ").Append(run.OpNumber).Append(' ').Append(who).Append('\n');
        for (int i = 0; i < n; i++)
            run.Output.Append(i).Append(' ').Append((entries[i].Raw & PagemapEntry.FlagMask).ToString("x16", CultureInfo.InvariantCulture)).Append('\n');
    }

    // PAGEMAP_SCAN over the window; the print is sdscenario's: "<who-line>" then "<first> <end> <hex categories>"
    // per region, pages relative to the window. Throws as the ioctl fails (ENOTTY, EPERM), printing nothing.
    private static void PrintScan(ScenarioRun run, EmulatedProcess p, string who, string verb, PagemapScanRequest request)
    {
        request.Start = run.Window;
        request.End = run.Window + (ulong)run.WindowPages * EmulatedProcess.PageBytes;
        var regions = new PageRegion[Math.Max(1, run.WindowPages)];
        int n = p.ScanPagemap(ref request, regions);
        run.Output.Append(verb).Append(' ').Append(run.OpNumber).Append(' ').Append(who).Append('\n');
        for (int i = 0; i < n; i++)
            run.Output.Append((regions[i].Start - run.Window) >> EmulatedProcess.PageShift).Append(' ')
                .Append((regions[i].End - run.Window) >> EmulatedProcess.PageShift).Append(' ')
                .Append(((ulong)regions[i].Categories).ToString("x", CultureInfo.InvariantCulture)).Append('\n');
    }

    /// <summary>sdscenario's errno names: the engine's, "EOTHER" for one it does not name.</summary>
    private static string ErrnoName(int errno)
    {
        var name = Errno.Name(errno);
        return name.StartsWith('E') ? name : "EOTHER";
    }
}
