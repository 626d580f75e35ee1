using System;
using System.Collections.Generic;
using System.IO;
using System.Text.Json;

namespace SoftDirty.Images;

/// <summary>
/// One flat file per mapping, <c>START-END.bin</c> (hex), the mapping's size, absent pages as zeros (sparse), and
/// <c>mappings.json</c>, written last: its presence marks a finished restore. Written into a private folder that
/// replaces the destination (absent or an empty directory of the caller) only when everything is written. The files
/// are made in address order as the pages arrive (ascending), one open at a time: a process of more mappings than
/// the open-file limit (RLIMIT_NOFILE) restores like any other.
/// </summary>
internal sealed class FlatFileRestoreTarget : IRestoreTarget, IDisposable
{
    public const string MappingsFile = "mappings.json";
    private readonly string _directory;
    private PrivateOutput? _output;

    public FlatFileRestoreTarget(string directory) => _directory = System.IO.Path.GetFullPath(directory);

    public IReadOnlyList<(ImageMapping Mapping, string Path, ulong PagesWritten)> Results => _results;
    private readonly List<(ImageMapping, string, ulong)> _results = new();
    private IReadOnlyList<ImageMapping> _mappings = Array.Empty<ImageMapping>();
    // The mapping whose file is open (-1: none) and its file, and the pages written into it.
    private int _open = -1;
    private FileStream? _file;
    private ulong _written;

    public static string FileName(ImageMapping m) => $"{m.Start:x12}-{m.End:x12}.bin";

    /// <summary>Checks the destination before anything is read (absent, or an empty directory of the caller, no link).</summary>
    public void CheckDestination() => SafeFiles.CheckDestination(_directory, "The restore destination", _madeFolders);

    // The folders above the destination that the check created: taken back when the restore is not put in place.
    private readonly List<string> _madeFolders = new();
    private bool _committed;

    public void Prepare(IReadOnlyList<ImageMapping> mappings, int pageSize)
    {
        _output = PrivateOutput.Begin(_directory, "The restore destination");
        _mappings = mappings;
    }

    public void WritePage(ulong address, ReadOnlySpan<byte> page)
    {
        int i = _open >= 0 && _mappings[_open].Start <= address && address < _mappings[_open].End ? _open : Find(address);
        if (i < 0) return; // outside the latest layout: unmapped since
        if (i < _open) throw new InvalidOperationException("Restore pages in ascending address order.");
        OpenUpTo(i);
        RandomAccess.Write(_file!.SafeFileHandle, page, (long)(address - _mappings[i].Start));
        _written++;
    }

    /// <summary>The mapping that holds <paramref name="address"/> (the manifest's mappings are sorted and disjoint), or -1.</summary>
    private int Find(ulong address)
    {
        int lo = 0, hi = _mappings.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (address < _mappings[mid].Start) hi = mid - 1;
            else if (address >= _mappings[mid].End) lo = mid + 1;
            else return mid;
        }
        return -1;
    }

    /// <summary>Finishes the open file and makes the files of the mappings up to <paramref name="last"/>, leaving that one open.</summary>
    private void OpenUpTo(int last)
    {
        var output = _output ?? throw new InvalidOperationException("Prepare first.");
        while (_open < last)
        {
            CloseFile(output);
            _open++;
            var m = _mappings[_open];
            _file = output.Create(FileName(m));
            _file.SetLength((long)(m.End - m.Start));
        }
    }

    private void CloseFile(PrivateOutput output)
    {
        if (_file is null) return;
        _file.Flush(flushToDisk: true);
        _file.Dispose();
        _file = null;
        _results.Add((_mappings[_open], output.FinalPath(FileName(_mappings[_open])), _written));
        _written = 0;
    }

    public void Complete()
    {
        var output = _output ?? throw new InvalidOperationException("Prepare first.");
        OpenUpTo(_mappings.Count - 1);
        CloseFile(output);
        using (var mf = output.Create(MappingsFile))
        {
            mf.Write(JsonSerializer.SerializeToUtf8Bytes(_mappings, ImageFormat.Json));
            mf.Flush(flushToDisk: true);
        }
        output.Commit();
        _committed = true;
    }

    /// <summary>
    /// A failure of the restore: the partial folder is removed now; where it stays (a disk gone read-only), the error names
    /// it (<see cref="PrivateOutput.Abandoned"/>). A failure to write is ImageWriteError, as the cmdlet says it.
    /// </summary>
    public Exception Abandoned(Exception error)
    {
        _file?.Dispose();
        _file = null;
        if (_output is null) return error;
        var engine = error as EngineException ?? new EngineException(
            error is UnauthorizedAccessException ? EngineError.PermissionDenied : EngineError.ImageWriteError,
            $"Restoring into {_directory} failed: {error.Message}", _directory, error is UnauthorizedAccessException ? Errno.EACCES : error.HResult & 0xFFFF, error);
        var named = _output.Abandoned(engine);
        return ReferenceEquals(named, engine) ? error : named;
    }

    /// <summary>Without <see cref="Complete"/>: the partial folder is removed, the destination stays as it was (folders the check made, removed).</summary>
    public void Dispose()
    {
        _file?.Dispose();
        _file = null;
        _output?.Dispose();
        if (!_committed) SafeDirectory.RemoveMade(_madeFolders, "The restore destination");
        _madeFolders.Clear();
    }
}
