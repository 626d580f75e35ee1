using System;
using System.Collections.Generic;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>How the pages a process changed are found.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum TrackingMethod
{
    /// <summary>The best the target supports: SoftDirty, else WriteProtect (own or emulated process), else Hash.</summary>
    Auto,
    /// <summary>clear_refs "4" and bit 55 of pagemap (PAGE_IS_SOFT_DIRTY with PAGEMAP_SCAN); needs CONFIG_MEM_SOFT_DIRTY.</summary>
    SoftDirty,
    /// <summary>userfaultfd async write-protect and PAGEMAP_SCAN WRITTEN: this process, an emulated one, or another real one registered from outside by syscall injection (Linux 6.7+).</summary>
    WriteProtect,
    /// <summary>Hash every present page through /proc/PID/mem and compare with the last snapshot; works on any kernel.</summary>
    Hash,
}

/// <summary>The page hash of the Hash method and of memory image checksums.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PageHashAlgorithm
{
    /// <summary>A fast non-cryptographic 128-bit hash (<see cref="PageHash"/>).</summary>
    Fast128,
    /// <summary>SHA-256, truncated to its first 128 bits (16 bytes a page).</summary>
    Sha256,
}

/// <summary>An address range [Start, End).</summary>
public readonly record struct AddressRange(ulong Start, ulong End)
{
    /// <summary>Bytes in the range (named Size, as on PageRange and MemoryMapping: an array's own Length would hide a Length property from $ranges.Size member enumeration).</summary>
    public ulong Size => End - Start;
    /// <summary>Size, for engine code written before the rename; internal so PowerShell never sees it.</summary>
    internal ulong Length => Size;
    public override string ToString() => $"0x{Start:x}-0x{End:x}";

    /// <summary>Reads the string form ToString writes ("0x1000-0x3000"), as a range comes back from a job or a remote session.</summary>
    public static bool TryParse(string? text, out AddressRange range)
    {
        range = default;
        var parts = text?.Trim().Split('-');
        if (parts is not { Length: 2 }) return false;
        static bool Hex(string s, out ulong v)
        {
            v = 0;
            return s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                && ulong.TryParse(s.AsSpan(2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out v);
        }
        if (!Hex(parts[0], out var start) || !Hex(parts[1], out var end) || end < start) return false;
        range = new AddressRange(start, end);
        return true;
    }
}

/// <summary>What a tracker found changed since its last reset.</summary>
public sealed class DirtyPageSet
{
    public DirtyPageSet(TrackingMethod method, int pageSize, IReadOnlyList<AddressRange> ranges, ulong pagesScanned, TimeSpan collectTime)
    {
        Method = method;
        PageSize = pageSize;
        Ranges = ranges;
        PagesScanned = pagesScanned;
        CollectTime = collectTime;
        ulong n = 0;
        foreach (var r in ranges) n += r.Size / (ulong)pageSize;
        PageCount = n;
    }

    public TrackingMethod Method { get; }
    public int PageSize { get; }
    /// <summary>The changed pages as sorted, merged address ranges.</summary>
    public IReadOnlyList<AddressRange> Ranges { get; }
    public ulong PageCount { get; }
    public ulong ByteCount => PageCount * (ulong)PageSize;
    /// <summary>Pages the tracker looked at (present pages for Hash, span pages for the others).</summary>
    public ulong PagesScanned { get; }
    public TimeSpan CollectTime { get; }
    /// <summary>
    /// Of <see cref="Ranges"/>, the pages of mappings that appeared since the last collection (not yet
    /// write-protected, so all their present pages count as written, once). WriteProtect of another process only.
    /// </summary>
    public IReadOnlyList<AddressRange> NewMappingRanges { get; init; } = Array.Empty<AddressRange>();

    public bool Contains(ulong address)
    {
        int lo = 0, hi = Ranges.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            var r = Ranges[mid];
            if (address < r.Start) hi = mid - 1;
            else if (address >= r.End) lo = mid + 1;
            else return true;
        }
        return false;
    }
}

/// <summary>Builds sorted, merged ranges from pages or ranges given in ascending order.</summary>
public sealed class RangeListBuilder
{
    private readonly List<AddressRange> _ranges = new();
    private ulong _start, _end;
    private bool _open;

    public void Add(ulong start, ulong end)
    {
        if (end <= start) return;
        if (_open && start <= _end && start >= _start) { if (end > _end) _end = end; return; }
        if (_open) _ranges.Add(new AddressRange(_start, _end));
        _start = start; _end = end; _open = true;
    }

    public List<AddressRange> Build()
    {
        if (_open) { _ranges.Add(new AddressRange(_start, _end)); _open = false; }
        return _ranges;
    }
}

/// <summary>
/// Which pages changed since the last reset. A tracker is armed by <see cref="Reset"/>; <see cref="Collect"/>
/// returns the pages changed since then and, with rearm, starts the next interval at once.
/// </summary>
public interface IDirtyTracker : IDisposable
{
    TrackingMethod Method { get; }
    IPageSource Source { get; }
    /// <summary>Why this method was chosen (for Auto) or what it relies on.</summary>
    string Description { get; }
    /// <summary>Starts an interval: what is in memory now counts as clean.</summary>
    void Reset(CancellationToken cancel = default);
    /// <summary>The pages changed since the last reset; with <paramref name="rearm"/> the next interval starts now.</summary>
    DirtyPageSet Collect(bool rearm = true, CancellationToken cancel = default);
}

/// <summary>
/// A page source that drives its own workload in emulated time (the emulator). Watch-DirtyPage and
/// Invoke-PreCopyMigration advance it between samples and rounds instead of sleeping; a real process lacks it.
/// </summary>
public interface IWorkloadDriver
{
    /// <summary>Runs the workload for <paramref name="interval"/> of emulated time.</summary>
    void Advance(TimeSpan interval, CancellationToken cancel);
}

/// <summary>
/// A page source that can register its own memory for async write-protect (what userfaultfd's
/// UFFDIO_REGISTER MODE_WP with WP_ASYNC does for the calling process): the emulator. After registering,
/// PAGEMAP_SCAN with WriteProtectMatching|CheckWriteProtectAsync and mask = return = Written gets and resets.
/// </summary>
public interface IAsyncWriteProtectSource
{
    /// <summary>Registers [start, end) for async write-protect; disposing the result unregisters it.</summary>
    IDisposable RegisterAsyncWriteProtect(ulong start, ulong end);
}

/// <summary>A page source that can be stopped and resumed (what ptrace freezing does to a real process).</summary>
public interface IFreezable
{
    void Freeze();
    void Thaw();
}
