using System;
using System.IO;
using System.Threading;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// Checks an image's pages against their index records as the records come, in index order: a zero record's hash must
/// be the zero page's, and each data page's bytes in pages.bin must hash to its record's hash. Data records with
/// consecutive offsets are read with one call (up to a chunk); it holds that chunk and its records, nothing per page,
/// so an image is checked while its index is read (<see cref="ImageReader.VerifyPages(OpenedImage, Action{ImageProblem}, CancellationToken)"/>).
/// </summary>
internal sealed class PageVerifier : IDisposable
{
    private readonly OpenedImage _image;
    private readonly int _ps;
    private readonly string _pagesPath, _indexPath;
    private readonly PageHashKey _key;
    private readonly Hash128 _zero;
    private readonly SafeFileHandle _handle;
    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(PageWalk.ChunkBytes);
    private readonly PageRecord[] _run;
    private readonly Action<ImageProblem> _onProblem;
    private readonly CancellationToken _cancel;
    private int _runCount, _runFirst;

    /// <param name="image">The image whose pages.bin is read.</param>
    /// <param name="onProblem">Called for each page that does not check out (file and offset named).</param>
    /// <param name="cancel">Stops the check between runs.</param>
    public PageVerifier(OpenedImage image, Action<ImageProblem> onProblem, CancellationToken cancel)
    {
        _image = image;
        _ps = image.Manifest.PageSize;
        _pagesPath = image.File(ImageFormat.PagesFile);
        _indexPath = image.File(ImageFormat.IndexFile);
        _key = image.PageKey;
        _zero = _key.ZeroPage(_ps);
        _onProblem = onProblem;
        _cancel = cancel;
        _run = new PageRecord[_buffer.Length / _ps];
        _handle = SafeFiles.OpenRegular(image.Folder, ImageFormat.PagesFile);
    }

    /// <summary>The pages checked so far.</summary>
    public ulong Checked { get; private set; }

    /// <summary>Takes record <paramref name="i"/> of the index (records come in index order).</summary>
    public void Add(int i, in PageRecord record)
    {
        if (record.Kind == PageRecordKind.Zero)
        {
            Flush();
            _cancel.ThrowIfCancellationRequested();
            if (record.Hash != _zero)
            {
                long at = ImageFormat.IndexHeaderSize + (long)i * ImageFormat.RecordSize;
                _onProblem(new ImageProblem(EngineError.ImageCorrupt, _indexPath, at,
                    $"{_indexPath} at offset {at}: zero record for page 0x{record.Address:x} carries a hash other than the zero page's."));
            }
            Checked++;
            return;
        }
        if (_runCount > 0 && (record.Offset != _run[0].Offset + (ulong)_runCount * (ulong)_ps || _runCount == _run.Length)) Flush();
        if (_runCount == 0) _runFirst = i;
        _run[_runCount++] = record;
    }

    /// <summary>Checks the run of data records taken and not yet checked (call once the last record is in).</summary>
    public void Flush()
    {
        if (_runCount == 0) return;
        _cancel.ThrowIfCancellationRequested();
        ulong first = _run[0].Offset;
        int got = SafeFiles.ReadFull(_handle, _buffer.AsSpan(0, _runCount * _ps), (long)first, _pagesPath);
        for (int k = 0; k < _runCount; k++)
        {
            long at = (long)_run[k].Offset;
            int bo = k * _ps;
            if (bo + _ps > got)
            {
                _onProblem(new ImageProblem(EngineError.ImageIncomplete, _pagesPath, at, $"{_pagesPath} at offset {at} (0x{at:x}): page 0x{_run[k].Address:x} lies past the end of the file."));
                continue;
            }
            var h = PageHash.Fast128(_buffer.AsSpan(bo, _ps), _key);
            if (h != _run[k].Hash)
                _onProblem(new ImageProblem(EngineError.ImageCorrupt, _pagesPath, at,
                    $"{_pagesPath} at offset {at} (0x{at:x}): page 0x{_run[k].Address:x} does not match its checksum (index.bin record {_runFirst + k})."));
            Checked++;
        }
        _runCount = 0;
    }

    public void Dispose() => _handle.Dispose();
}
