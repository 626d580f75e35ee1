using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// Writes an image's index (header, then one record per page in address order) and its hash. A full image's
/// records arrive in address order and stream to the file through one small buffer, so the memory a save needs
/// does not grow with the pages it stores; an increment's also include zero records found out of order (pages the
/// parent chain has data for that are gone now), so they are kept and sorted before they are written.
/// </summary>
internal sealed class ImageIndexWriter
{
    private const int BufferRecords = 1024;
    private readonly FileStream _file;
    private readonly Fast128Hasher _hash = new();
    private readonly List<PageRecord>? _held;
    private readonly byte[] _buffer = new byte[BufferRecords * ImageFormat.RecordSize];
    private int _buffered;
    private ulong _last;
    private bool _any;

    /// <param name="file">The index file, empty.</param>
    /// <param name="pageSize">The image's page size (in the header).</param>
    /// <param name="ordered">True when every record is added in address order (streamed); false to sort them at the end.</param>
    public ImageIndexWriter(FileStream file, int pageSize, bool ordered)
    {
        _file = file;
        if (!ordered) _held = new List<PageRecord>();
        Span<byte> header = stackalloc byte[ImageFormat.IndexHeaderSize];
        ImageFormat.IndexMagic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header[ImageFormat.IndexVersionOffset..], ImageFormat.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header[ImageFormat.IndexPageSizeOffset..], (uint)pageSize);
        Write(header);
    }

    /// <summary>Records written (or held) so far.</summary>
    public ulong Count { get; private set; }
    /// <summary>Data records among them.</summary>
    public ulong DataCount { get; private set; }
    /// <summary>The index's size in bytes, after <see cref="Finish"/>.</summary>
    public long Size => (long)_hash.Length;

    /// <summary>Adds a record; when streaming, records must come in ascending address order.</summary>
    public void Add(in PageRecord record)
    {
        Count++;
        if (record.Kind == PageRecordKind.Data) DataCount++;
        if (_held is not null) { _held.Add(record); return; }
        if (_any && record.Address <= _last)
            throw new InvalidOperationException($"Index records out of order: 0x{record.Address:x} after 0x{_last:x}.");
        _any = true;
        _last = record.Address;
        if (_buffered == BufferRecords) Flush();
        record.WriteTo(_buffer.AsSpan(_buffered * ImageFormat.RecordSize, ImageFormat.RecordSize));
        _buffered++;
    }

    /// <summary>Writes what is left (sorted, for held records), fsyncs, and returns the index's hash.</summary>
    public Hash128 Finish()
    {
        if (_held is not null)
        {
            _held.Sort((a, b) => a.Address.CompareTo(b.Address));
            foreach (var r in _held)
            {
                if (_buffered == BufferRecords) Flush();
                r.WriteTo(_buffer.AsSpan(_buffered * ImageFormat.RecordSize, ImageFormat.RecordSize));
                _buffered++;
            }
            _held.Clear();
        }
        Flush();
        _file.Flush(flushToDisk: true);
        return _hash.Finish();
    }

    private void Flush()
    {
        Write(_buffer.AsSpan(0, _buffered * ImageFormat.RecordSize));
        _buffered = 0;
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        _file.Write(bytes);
        _hash.Append(bytes);
    }
}
