using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>Completes -Id with the pids under /proc, showing each process's name.</summary>
public sealed class ProcessIdCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        if (!OperatingSystem.IsLinux()) yield break;
        foreach (var dir in Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).OrderBy(d => d?.Length).ThenBy(d => d, StringComparer.Ordinal))
        {
            if (dir is null || !int.TryParse(dir, out _) || !dir.StartsWith(wordToComplete, StringComparison.Ordinal)) continue;
            string name;
            try { name = File.ReadAllText($"/proc/{dir}/comm").TrimEnd('\n'); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            yield return new CompletionResult(dir, $"{dir} {name}", CompletionResultType.ParameterValue, $"{dir}: {name}");
        }
    }
}

/// <summary>
/// Completes -Address with the start of each mapping of the target (hex, with its name as the tooltip), and
/// never with file names: an address is not a path.
/// </summary>
public sealed class AddressCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var results = new List<CompletionResult>();
        foreach (var source in MappingNameCompleter.Sources(fakeBoundParameters))
        {
            try
            {
                using (source)
                    foreach (var m in source.ReadMappings(withCounters: false))
                    {
                        var text = $"0x{m.Start:x}";
                        if (text.StartsWith(wordToComplete, StringComparison.OrdinalIgnoreCase))
                            results.Add(new CompletionResult(text, $"{text} {m.DisplayName}", CompletionResultType.ParameterValue, m.ToString()));
                    }
            }
            catch (SoftDirtyException) { }
        }
        // A class completer's empty answer ends completion there: PowerShell does not fall back to file names.
        return results;
    }
}

/// <summary>Completes -Mapping with the paths and pseudo-names in the target's maps.</summary>
public sealed class MappingNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var source in Sources(fakeBoundParameters))
        {
            try
            {
                using (source)
                    foreach (var m in source.ReadMappings(withCounters: false))
                        if (m.Path.Length != 0) names.Add(m.Path);
            }
            catch (SoftDirtyException) { }
        }
        foreach (var n in names)
            if (n.StartsWith(word, StringComparison.OrdinalIgnoreCase) || Path.GetFileName(n).StartsWith(word, StringComparison.OrdinalIgnoreCase))
                yield return new CompletionResult("'" + n.Replace("'", "''") + "'", n, CompletionResultType.ParameterValue, n);
    }

    internal static IEnumerable<IPageSource> Sources(IDictionary bound)
    {
        if (bound["Emulator"] is { } emu && LanguagePrimitives.ConvertTo<object>(emu) is IPageSource emulated)
        {
            yield return new BorrowedSource(emulated);
            yield break;
        }
        if (!OperatingSystem.IsLinux() || bound["Id"] is not { } ids) yield break;
        foreach (var id in LanguagePrimitives.ConvertTo<int[]>(ids))
        {
            IPageSource? s = null;
            try { s = ProcPageSource.Open(id); } catch (SoftDirtyException) { }
            if (s is not null) yield return s;
        }
    }
}

/// <summary>Wraps a source the caller does not own, so disposing it does nothing.</summary>
internal sealed class BorrowedSource : IPageSource, SoftDirty.Tracking.IPageSourceWrapper
{
    private readonly IPageSource _inner;
    public BorrowedSource(IPageSource inner) => _inner = inner;
    /// <summary>The source itself (an emulated process passes through as itself).</summary>
    public IPageSource Inner => _inner;
    public int ProcessId => _inner.ProcessId;
    public string Name => _inner.Name;
    public int PageSize => _inner.PageSize;
    public KernelFeatures Features => _inner.Features;
    public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => _inner.ReadMappings(withCounters);
    public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination) => _inner.ReadPagemap(firstPage, destination);
    public int ReadMemory(ulong address, Span<byte> destination) => _inner.ReadMemory(address, destination);
    public int WriteClearRefs(ReadOnlySpan<byte> text) => _inner.WriteClearRefs(text);
    public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) => _inner.ScanPagemap(ref request, regions);
    public void Dispose() { }
}
