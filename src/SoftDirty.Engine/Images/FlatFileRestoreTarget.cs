using System;
using System.Collections.Generic;
using System.IO;
using System.Text.Json;

namespace SoftDirty.Images;

/// <summary>
/// One flat file per mapping, <c>START-END.bin</c> (hex), the mapping's size, absent pages as zeros (sparse), and
/// <c>mappings.json</c>, written last: its presence marks a finished restore. Written into a private folder that
/// replaces the destination (absent or an empty directory of the caller) only when everything is written.
/// </summary>
internal sealed class FlatFileRestoreTarget : IRestoreTarget, IDisposable
{
    public const string MappingsFile = "mappings.json";
    private readonly string _directory;
    private readonly List<(ImageMapping Mapping, FileStream File)> _files = new();
    private PrivateOutput? _output;

    public FlatFileRestoreTarget(string directory) => _directory = System.IO.Path.GetFullPath(directory);

    public IReadOnlyList<(ImageMapping Mapping, string Path, ulong PagesWritten)> Results => _results;
    private readonly List<(ImageMapping, string, ulong)> _results = new();
    private ulong[] _written = Array.Empty<ulong>();
    private IReadOnlyList<ImageMapping> _mappings = Array.Empty<ImageMapping>();

    public static string FileName(ImageMapping m) => $"{m.Start:x12}-{m.End:x12}.bin";

    /// <summary>Checks the destination before anything is read (absent, or an empty directory of the caller, no link).</summary>
    public void CheckDestination() => SafeFiles.CheckDestination(_directory, "The restore destination");

    public void Prepare(IReadOnlyList<ImageMapping> mappings, int pageSize)
    {
        _output = PrivateOutput.Begin(_directory, "The restore destination");
        _mappings = mappings;
        foreach (var m in mappings)
        {
            var fs = _output.Create(FileName(m));
            _files.Add((m, fs));
            fs.SetLength((long)(m.End - m.Start));
        }
        _written = new ulong[_files.Count];
    }

    private int _last;

    public void WritePage(ulong address, ReadOnlySpan<byte> page)
    {
        int i = _last < _files.Count && _files[_last].Mapping.Start <= address && address < _files[_last].Mapping.End ? _last
            : _files.FindIndex(f => f.Mapping.Start <= address && address < f.Mapping.End);
        if (i < 0) return; // outside the latest layout: unmapped since
        _last = i;
        var (m, fs) = _files[i];
        RandomAccess.Write(fs.SafeFileHandle, page, (long)(address - m.Start));
        _written[i]++;
    }

    public void Complete()
    {
        var output = _output ?? throw new InvalidOperationException("Prepare first.");
        for (int i = 0; i < _files.Count; i++)
        {
            _files[i].File.Flush(flushToDisk: true);
            _results.Add((_files[i].Mapping, output.FinalPath(FileName(_files[i].Mapping)), _written[i]));
            _files[i].File.Dispose();
        }
        _files.Clear();
        using (var mf = output.Create(MappingsFile))
        {
            mf.Write(JsonSerializer.SerializeToUtf8Bytes(_mappings, ImageFormat.Json));
            mf.Flush(flushToDisk: true);
        }
        output.Commit();
    }

    /// <summary>Without <see cref="Complete"/>: the partial folder is removed, the destination stays as it was.</summary>
    public void Dispose()
    {
        foreach (var (_, f) in _files) f.Dispose();
        _files.Clear();
        _output?.Dispose();
    }
}
