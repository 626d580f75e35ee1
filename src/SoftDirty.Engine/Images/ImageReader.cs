using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>Opens, verifies and resolves memory image chains.</summary>
internal static class ImageReader
{
    private static ImageException Problem(EngineError e, string file, long? offset, string what) =>
        new ImageException(e, offset is { } o ? $"{file} at offset {o} (0x{o:x}): {what}" : $"{file}: {what}", file, offset);

    /// <summary>Reads and checks one manifest (checksum and every structural invariant); throws ImageIncomplete, ImageCorrupt with the file and offset.</summary>
    public static OpenedImage Open(string path)
    {
        path = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(path));
        var folder = SafeDirectory.OpenForReading(path, out int errno);
        if (folder is null)
        {
            if (errno is Errno.EACCES or Errno.EPERM)
                throw new EngineException(EngineError.PermissionDenied, $"{path}: {Errno.Describe(errno)} (an image of another user?).", path, errno);
            if (Errno.IsResourceLimit(errno)) throw SafeDirectory.ResourceLimit(path, errno);
            // The disk under it failed (it was "not a directory", round 25).
            if (errno == Errno.EIO) throw new EngineException(EngineError.ImageReadError, $"{path}: {Errno.Describe(errno)} (the disk under it). Check the disk, then test the image again.", path, errno);
            throw new EngineException(EngineError.ImageIncomplete, FileNative.Lstat(path, out _) switch
            {
                null => $"{path}: no such image directory.",
                { Type: FileNative.S_IFLNK } => $"{path}: a symbolic link that leads to no directory (dangling, or a loop of links).",
                _ => $"{path}: not a directory, so not a memory image.",
            }, path);
        }
        try { return Open(path, folder); }
        catch
        {
            folder.Dispose();
            throw;
        }
    }

    private static OpenedImage Open(string path, SafeDirectory folder)
    {
        var manifestPath = System.IO.Path.Combine(path, ImageFormat.ManifestFile);
        byte[] bytes;
        try { bytes = SafeFiles.ReadRegular(folder, ImageFormat.ManifestFile, SafeFiles.MaxManifestBytes); }
        catch (FileNotFoundException)
        {
            throw new EngineException(EngineError.ImageIncomplete,
                $"{manifestPath}: missing, so the image in {path} is incomplete (a save that was interrupted, or not a memory image).", path);
        }
        ImageManifest? m;
        try { m = JsonSerializer.Deserialize<ImageManifest>(bytes, ImageFormat.Json); }
        catch (JsonException ex)
        {
            throw Problem(EngineError.ImageCorrupt, manifestPath, ex.BytePositionInLine is { } b ? LineOffset(bytes, ex.LineNumber ?? 0, b) : null,
                "not a valid manifest: " + ex.Message.Split(" Path:")[0]);
        }
        catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            throw Problem(EngineError.ImageCorrupt, manifestPath, null, "not a valid manifest: " + ex.Message);
        }
        if (m is null || m.Format != ImageFormat.FormatName)
            throw Problem(EngineError.ImageCorrupt, manifestPath, 0, $"the format is not {ImageFormat.FormatName}.");
        if (m.Version > ImageFormat.Version)
            throw Problem(EngineError.ImageCorrupt, manifestPath, 0, $"format version {m.Version} is newer than this module reads ({ImageFormat.Version}): the image was saved by a later version of SoftDirty; read it with that version or a later one.");
        if (m.Version != ImageFormat.Version)
            throw Problem(EngineError.ImageCorrupt, manifestPath, 0, $"format version {m.Version} is not supported (this module reads {ImageFormat.Version}; save the image again).");
        // A member this version does not know is a later version's (or an edit): what it means is unknown here, and the checksum,
        // taken over the members this version knows, does not cover it. A later version that adds one bumps the version too.
        if (UnknownMember(m) is { } unknown)
            throw Problem(EngineError.ImageCorrupt, manifestPath, null, $"has the member '{unknown}', which this version of SoftDirty does not know (format version {ImageFormat.Version}): saved by a later version, or edited.");
        Validate(m, manifestPath);
        return new OpenedImage(path, m, folder);
    }

    /// <summary>The first member of <paramref name="m"/> (its parent link, mappings and files included) this version does not know, as a JSON path; null where none.</summary>
    private static string? UnknownMember(ImageManifest m)
    {
        static string? First(System.Collections.Generic.Dictionary<string, JsonElement>? unknown, string at) =>
            unknown is { Count: > 0 } ? at + unknown.Keys.First() : null;
        if ((First(m.Unknown, "") ?? First(m.Parent?.Unknown, "parent.")) is { } found) return found;
        for (int i = 0; m.Mappings is not null && i < m.Mappings.Count; i++)
            if (First(m.Mappings[i]?.Unknown, $"mappings[{i}].") is { } inMapping) return inMapping;
        for (int i = 0; m.Files is not null && i < m.Files.Count; i++)
            if (First(m.Files[i]?.Unknown, $"files[{i}].") is { } inFile) return inFile;
        return null;
    }

    /// <summary>Every invariant a manifest must keep, in work bounded by its (size-limited) content.</summary>
    private static void Validate(ImageManifest m, string file)
    {
        EngineException Bad(string what) => Problem(EngineError.ImageCorrupt, file, null, what);
        if (m.Checksum is null) throw Bad("has no checksum.");
        var actual = ImageFormat.ManifestChecksum(m);
        if (actual != m.Checksum) throw Bad($"checksum mismatch (manifest hash {actual}, the manifest says {m.Checksum}): it was edited or damaged.");
        if (m.PageSize < ImageFormat.MinPageSize || m.PageSize > ImageFormat.MaxPageSize || (m.PageSize & (m.PageSize - 1)) != 0)
            throw Bad($"page size {m.PageSize} is not a Linux base page size (a power of two from {ImageFormat.MinPageSize} to {ImageFormat.MaxPageSize}).");
        if (m.Depth < 0 || m.Depth > ImageFormat.MaxDepth) throw Bad($"depth {m.Depth} is out of range (0 to {ImageFormat.MaxDepth}).");
        if ((m.Parent is null) != (m.Depth == 0)) throw Bad($"depth {m.Depth} does not match {(m.Parent is null ? "having no parent" : "having a parent")}.");
        if (m.Parent is { } link && (string.IsNullOrEmpty(link.Path) || link.Id == Guid.Empty || link.Checksum is null))
            throw Bad("the parent link lacks its path, id or checksum.");
        if (m.ProcessName is null || m.Kernel is null) throw Bad("lacks the process name or kernel.");
        if (m.PageKey is { } key && (key.Length != PageHashKey.KeyBytes * 2 || !key.All(char.IsAsciiHexDigitLower)))
            throw Bad($"its page-hash key is not {PageHashKey.KeyBytes * 2} lower-case hexadecimal digits.");
        if (m.Mappings is null) throw Bad("has no mappings list.");
        if (m.Mappings.Count > ImageFormat.MaxMappings) throw Bad($"lists {m.Mappings.Count} mappings, more than {ImageFormat.MaxMappings}.");
        ulong ps = (ulong)m.PageSize, prevEnd = 0;
        for (int i = 0; i < m.Mappings.Count; i++)
        {
            var map = m.Mappings[i];
            if (map is null || map.Permissions is null || map.Path is null) throw Bad($"mapping {i} is null or lacks its permissions or path.");
            // The four letters of maps' permission column ("rw-p"), as every save writes them: the column is the image
            // author's text otherwise, shown in Restore-MemoryImage's table and written to mappings.json (round 20).
            var (protection, shared) = MemoryMapping.ParsePermissions(map.Permissions);
            if (!string.Equals(MemoryMapping.FormatPermissions(protection, shared), map.Permissions, StringComparison.Ordinal))
                throw Bad($"mapping {i} has the permissions '{map.Permissions}', not the four letters of maps' permission column (such as rw-p).");
            if (map.Start >= map.End) throw Bad($"mapping {i} ({map}) ends at or before its start.");
            if (map.End - map.Start > long.MaxValue) throw Bad($"mapping {i} ({map}) is longer than any address space (and than a file can be).");
            if (map.Start % ps != 0 || map.End % ps != 0) throw Bad($"mapping {i} ({map}) is not page-aligned.");
            if (i > 0 && map.Start < prevEnd) throw Bad($"mapping {i} ({map}) overlaps or precedes the mapping before it.");
            prevEnd = map.End;
            // Guard regions (round 30): page-aligned, ascending, within the mapping.
            ulong guardEnd = map.Start;
            foreach (var g in map.Guards ?? [])
                if (g.Start < guardEnd || g.End <= g.Start || g.End > map.End || g.Start % ps != 0 || g.End % ps != 0)
                    throw Bad($"mapping {i} ({map}) lists the guard region {g}, which is not a page-aligned range within it after the one before.");
                else guardEnd = g.End;
        }
        if (m.Files is null || m.Files.Any(f => f is null || f.Name is null || f.Size < 0)) throw Bad("the files list is missing or has an entry without a name or with a negative size.");
        foreach (var name in new[] { ImageFormat.PagesFile, ImageFormat.IndexFile })
            if (m.Files.Count(f => f.Name == name) != 1) throw Bad($"must list {name} exactly once.");
        // Only the format's own files, by their plain names: a name with a path ("../x", "/etc/x") would point outside the folder.
        if (m.Files.FirstOrDefault(f => f.Name is not (ImageFormat.PagesFile or ImageFormat.IndexFile)) is { } extra)
            throw Bad($"lists '{extra.Name}', which is no file of the format (only {ImageFormat.PagesFile} and {ImageFormat.IndexFile}, inside the image folder).");
        if (m.Files.First(f => f.Name == ImageFormat.IndexFile).Hash is null) throw Bad("lists index.bin without its hash.");
        if (m.DataPages > (ulong)long.MaxValue / ps || m.DataPages * ps != (ulong)m.Files.First(f => f.Name == ImageFormat.PagesFile).Size)
            throw Bad($"says {m.DataPages} data pages but pages.bin is {m.Files.First(f => f.Name == ImageFormat.PagesFile).Size} bytes.");
        if (m.DataPages + m.ZeroPages < m.DataPages
            || m.DataPages + m.ZeroPages > (ulong)(long.MaxValue - ImageFormat.IndexHeaderSize) / ImageFormat.RecordSize // the product below must not wrap
            || (ulong)m.Files.First(f => f.Name == ImageFormat.IndexFile).Size != (ulong)ImageFormat.IndexHeaderSize + (m.DataPages + m.ZeroPages) * ImageFormat.RecordSize)
            throw Bad("its page counts do not match the size of index.bin.");
    }

    private static long LineOffset(byte[] bytes, long line, long column)
    {
        long offset = 0;
        for (long l = 0; l < line && offset < bytes.Length; offset++) if (bytes[offset] == '\n') l++;
        return offset + column;
    }

    /// <summary>The chain from the full image (first) to <paramref name="path"/> (last), parent links checked.</summary>
    public static ImageChain Chain(string path)
    {
        var chain = new ImageChain();
        var seen = new HashSet<string>();
        var image = Open(path);
        OpenedImage? pending = null; // a parent opened and not yet checked
        try
        {
        while (true)
        {
            if (!seen.Add(image.Path))
                throw new EngineException(EngineError.ImageParentMismatch, $"{image.File(ImageFormat.ManifestFile)}: its parent chain loops back to {image.Path}.", image.Path);
            chain.Add(image);
            var link = image.Manifest.Parent;
            if (link is null)
            {
                if (image.Manifest.Depth != 0)
                    throw Problem(EngineError.ImageCorrupt, image.File(ImageFormat.ManifestFile), null, $"depth {image.Manifest.Depth} but no parent.");
                break;
            }
            var parentPath = System.IO.Path.GetFullPath(System.IO.Path.Combine(image.RealPath, link.Path));
            OpenedImage parent;
            try { parent = pending = Open(parentPath); }
            // A limit of this process, or a read the disk failed (EIO), says nothing of the parent: as it is, never "the parent is
            // not the image this one was taken against" (round 29: EIO reading the parent's manifest said ImageParentMismatch).
            catch (EngineException ex) when (ex.Error is not (EngineError.ResourceLimit or EngineError.ImageReadError))
            {
                throw new EngineException(EngineError.ImageParentMismatch,
                    $"{image.File(ImageFormat.ManifestFile)}: the parent image {parentPath} cannot be used: {ex.Message}", image.Path, 0, ex);
            }
            if (parent.Manifest.Id != link.Id)
                throw new EngineException(EngineError.ImageParentMismatch,
                    $"{image.File(ImageFormat.ManifestFile)}: names parent {link.Id} in {parentPath}, but {parent.File(ImageFormat.ManifestFile)} holds image {parent.Manifest.Id}: not the image this one was taken against.", image.Path);
            if (parent.Manifest.Checksum != link.Checksum)
                throw new EngineException(EngineError.ImageParentMismatch,
                    $"{image.File(ImageFormat.ManifestFile)}: the parent {parentPath} has changed since this image was taken against it (its manifest checksum differs).", image.Path);
            if (parent.Manifest.ProcessIdentity != image.Manifest.ProcessIdentity)
                throw new EngineException(EngineError.ImageParentMismatch,
                    $"{image.File(ImageFormat.ManifestFile)}: the parent {parentPath} is an image of another process ({parent.Manifest.ProcessIdentity}, this one {image.Manifest.ProcessIdentity}).", image.Path);
            if (parent.Manifest.PageKey != image.Manifest.PageKey)
                throw new EngineException(EngineError.ImageParentMismatch,
                    $"{image.File(ImageFormat.ManifestFile)}: its page-hash key is not the one of its parent {parentPath}: its pages were not compared with the parent's.", image.Path);
            if (parent.Manifest.PageSize != image.Manifest.PageSize || parent.Manifest.Depth != image.Manifest.Depth - 1)
                throw new EngineException(EngineError.ImageParentMismatch,
                    $"{image.File(ImageFormat.ManifestFile)}: page size or depth does not follow from the parent {parentPath}.", image.Path);
            image = parent;
            pending = null;
        }
        }
        catch
        {
            // What was opened is closed: a parent that failed its checks, an image not yet in the chain, the chain.
            pending?.Dispose();
            if (!chain.Contains(image)) image.Dispose();
            chain.Dispose();
            throw;
        }
        chain.Reverse();
        return chain;
    }

    /// <summary>The manifest of the image at <paramref name="path"/> (opened, read and closed).</summary>
    public static ImageManifest ReadManifest(string path)
    {
        using var image = Open(path);
        return image.Manifest;
    }

    /// <summary>What Get-MemoryImage shows of the image at <paramref name="path"/> (opened, read and closed).</summary>
    public static MemoryImageInfo Describe(string path, double? saveSeconds = null)
    {
        using var image = Open(path);
        return MemoryImageInfo.From(image, saveSeconds);
    }

    /// <summary>Checks the files' sizes and the index (header, order, offsets, its hash); returns the records.</summary>
    public static PageRecord[] ReadIndex(OpenedImage image) => ReadIndex(image, default);

    /// <summary><see cref="ReadIndex(OpenedImage)"/> that <paramref name="cancel"/> stops between chunks.</summary>
    public static PageRecord[] ReadIndex(OpenedImage image, System.Threading.CancellationToken cancel)
    {
        var sink = new RecordArray();
        ReadIndex(image, ref sink, cancel);
        return sink.Records;
    }

    /// <summary>Receives the records of an index as <see cref="ReadIndex{TSink}"/> checks them, in address order.</summary>
    public interface IRecordSink
    {
        /// <summary>The number of records, before the first.</summary>
        void Begin(int count);
        void Add(int i, in PageRecord record);
    }

    private struct RecordArray : IRecordSink
    {
        public PageRecord[] Records;
        public void Begin(int count) => Records = new PageRecord[count];
        public void Add(int i, in PageRecord record) => Records[i] = record;
    }

    /// <summary>Records an index is read in at a time (640 KiB): what reading an index holds besides its sink.</summary>
    private const int IndexChunkRecords = 16_384;

    /// <summary>
    /// <see cref="ReadIndex(OpenedImage)"/> into a sink (a struct: the loop is compiled for it). The file is read twice in
    /// chunks, never whole: once to check everything (header, hash, every record, the counts), keeping nothing, and once
    /// to give the sink the records, whose hash must be the first pass's (else ImageIncomplete: the file changed). So the
    /// memory it takes is the sink's alone, made only for an index that checked out: an index.bin that claims a huge size
    /// (a sparse file costs its owner nothing) is refused at its header or by its hash before anything is made for it.
    /// An index.bin larger than an array can be (2 GiB: 53 million records) is refused as before, so that the time
    /// reading one takes stays bounded too; <paramref name="cancel"/> stops it between chunks.
    /// </summary>
    public static void ReadIndex<TSink>(OpenedImage image, ref TSink sink, System.Threading.CancellationToken cancel = default) where TSink : struct, IRecordSink
    {
        string indexPath = image.File(ImageFormat.IndexFile);
        long pagesSize = CheckFile(image, ImageFormat.PagesFile);
        long indexSize = CheckFile(image, ImageFormat.IndexFile);
        SafeFileHandle handle;
        FileNative.PathStatus st;
        try { handle = image.Folder.OpenRegular(ImageFormat.IndexFile, out st); }
        catch (FileNotFoundException) { throw Problem(EngineError.ImageIncomplete, indexPath, null, "missing."); }
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(IndexChunkRecords * ImageFormat.RecordSize);
        try
        {
            if (st.Size > (ulong)indexSize || indexSize > Array.MaxLength)
                throw new EngineException(EngineError.ImageCorrupt, $"{indexPath} is {st.Size} bytes, more than the {Math.Min(indexSize, Array.MaxLength)} this file can have.", indexPath);
            var counted = new NoRecords();
            var checkedHash = ScanIndex(image, handle, indexSize, pagesSize, buffer, ref counted, cancel);
            sink.Begin(counted.Count);
            var readHash = ScanIndex(image, handle, indexSize, pagesSize, buffer, ref sink, cancel);
            if (readHash != checkedHash) throw Problem(EngineError.ImageIncomplete, indexPath, null, "changed while being read.");
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            handle.Dispose();
        }
    }

    /// <summary>A sink that keeps nothing: the first pass of <see cref="ReadIndex{TSink}"/>, which counts.</summary>
    private struct NoRecords : IRecordSink
    {
        public int Count;
        public void Begin(int count) { }
        public void Add(int i, in PageRecord record) => Count = i + 1;
    }

    /// <summary>
    /// One pass over an index: checks it as a whole (what is wrong is thrown in this order: a file that changed size, no
    /// header, a hash other than the manifest's naming the first record that cannot be right, a partial last record, the
    /// first bad record, counts other than the manifest's) and gives each good record to the sink as it goes, before the
    /// pass is over (the caller keeps what it made only once the pass returns). Returns the hash of the bytes read.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // a loop over every record
    private static Hash128 ScanIndex<TSink>(OpenedImage image, SafeFileHandle handle, long indexSize, long pagesSize, byte[] buffer, ref TSink sink,
        System.Threading.CancellationToken cancel) where TSink : struct, IRecordSink
    {
        var m = image.Manifest;
        string indexPath = image.File(ImageFormat.IndexFile), pagesPath = image.File(ImageFormat.PagesFile);
        const int rs = ImageFormat.RecordSize;
        var hash = new Fast128Hasher();
        var header = buffer.AsSpan(0, (int)Math.Min(indexSize, ImageFormat.IndexHeaderSize));
        ReadWhole(handle, 0, header, hash, indexPath);
        if (header.Length < ImageFormat.IndexHeaderSize || !header[..8].SequenceEqual(ImageFormat.IndexMagic))
            throw Problem(EngineError.ImageCorrupt, indexPath, 0, "no SDIMGIDX header.");
        // The header repeats the format version and the page size: one that says other than the manifest is an edited or mixed-up index.
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[ImageFormat.IndexVersionOffset..]), pageSize = BinaryPrimitives.ReadUInt32LittleEndian(header[ImageFormat.IndexPageSizeOffset..]);
        if (version != (uint)ImageFormat.Version || pageSize != (uint)m.PageSize)
            throw Problem(EngineError.ImageCorrupt, indexPath, 0,
                $"its header says format version {version} and page size {pageSize}; the manifest says version {ImageFormat.Version} and page size {m.PageSize}: the index is edited or belongs to another image.");
        ulong prev = 0, data = 0, zero = 0, badPrev = 0;
        int mapping = 0;
        long bad = -1; // the first record that cannot be right, as a hash mismatch names it
        ImageException? problem = null; // the first bad record, thrown once the hash is known good
        long off = ImageFormat.IndexHeaderSize;
        int i = 0;
        while (off < indexSize)
        {
            cancel.ThrowIfCancellationRequested();
            int length = (int)Math.Min(IndexChunkRecords * rs, indexSize - off); // (not the rented buffer's length: whole records)
            var chunk = buffer.AsSpan(0, length);
            ReadWhole(handle, off, chunk, hash, indexPath);
            for (int at = 0; at + rs <= length; at += rs, off += rs, i++)
            {
                var r = PageRecord.ReadFrom(chunk.Slice(at, rs));
                bool kindKnown = r.Kind is PageRecordKind.Data or PageRecordKind.Zero;
                bool aligned = r.Address % (ulong)m.PageSize == 0;
                bool inPages = (ulong)pagesSize >= (ulong)m.PageSize && r.Offset <= (ulong)pagesSize - (ulong)m.PageSize;
                if (bad < 0)
                {
                    if (!kindKnown || !aligned || (i > 0 && r.Address <= badPrev) || (r.Kind == PageRecordKind.Data && !inPages)) bad = off;
                    badPrev = r.Address;
                }
                if (problem is not null) continue;
                if (i > 0 && r.Address <= prev)
                    problem = Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i} (page 0x{r.Address:x}) is out of address order.");
                else if (!aligned)
                    problem = Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i}: address 0x{r.Address:x} is not page-aligned.");
                else
                {
                    while (mapping < m.Mappings.Count && m.Mappings[mapping].End <= r.Address) mapping++;
                    if (mapping == m.Mappings.Count || r.Address < m.Mappings[mapping].Start)
                        problem = Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i}: page 0x{r.Address:x} lies outside every mapping of the manifest.");
                    else if (r.Kind == PageRecordKind.Data)
                    {
                        if (r.Offset % (ulong)m.PageSize != 0 || !inPages)
                            problem = Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i} (page 0x{r.Address:x}) points at pages.bin offset {r.Offset}, outside its {pagesSize} bytes.");
                        else data++;
                    }
                    else if (r.Kind == PageRecordKind.Zero) zero++;
                    else problem = Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i} has unknown kind {(uint)r.Kind}.");
                }
                if (problem is not null) continue;
                sink.Add(i, r);
                prev = r.Address;
            }
            off += length % rs; // a partial last record (the last chunk only: the buffer holds whole records)
        }
        var actual = hash.Finish();
        var info = m.Files.First(f => f.Name == ImageFormat.IndexFile); // Open checked it is listed once
        if (info.Hash is { } expected && actual.ToString() != expected)
            throw Problem(EngineError.ImageCorrupt, indexPath, bad >= 0 ? bad : null, $"checksum mismatch (index.bin hash {actual}, manifest says {expected}).");
        if ((indexSize - ImageFormat.IndexHeaderSize) % rs != 0)
            throw Problem(EngineError.ImageCorrupt, indexPath, indexSize, "ends inside a record.");
        if (problem is not null) throw problem;
        if (data != m.DataPages || zero != m.ZeroPages)
            throw Problem(EngineError.ImageCorrupt, indexPath, null, $"holds {data} data and {zero} zero records; the manifest says {m.DataPages} and {m.ZeroPages}.");
        if ((ulong)pagesSize != data * (ulong)m.PageSize)
            throw Problem(EngineError.ImageCorrupt, pagesPath, Math.Min(pagesSize, (long)(data * (ulong)m.PageSize)), $"is {pagesSize} bytes for {data} pages of {m.PageSize}.");
        return actual;
    }

    /// <summary>Reads <paramref name="into"/> whole from <paramref name="at"/> and hashes it: a short read is a file that changed while being read.</summary>
    private static void ReadWhole(SafeFileHandle handle, long at, Span<byte> into, Fast128Hasher hash, string path)
    {
        int got = SafeFiles.ReadFull(handle, into, at, path);
        if (got < into.Length) throw Problem(EngineError.ImageIncomplete, path, at + got, "changed while being read.");
        hash.Append(into);
    }

    private static long CheckFile(OpenedImage image, string name)
    {
        var path = image.File(name);
        var info = image.Manifest.Files.FirstOrDefault(f => f.Name == name)
            ?? throw Problem(EngineError.ImageCorrupt, image.File(ImageFormat.ManifestFile), null, $"does not list {name}.");
        var st = image.Folder.Lstat(name, out int errno);
        if (st is null)
        {
            if (errno is Errno.EACCES or Errno.EPERM) throw new EngineException(EngineError.PermissionDenied, $"{path}: {Errno.Describe(errno)}", path, errno);
            if (Errno.IsResourceLimit(errno)) throw SafeDirectory.ResourceLimit(path, errno);
            // A stat the disk failed (EIO) says nothing of the file: it was "missing", an image said incomplete (round 29).
            if (errno != Errno.ENOENT)
                throw new EngineException(EngineError.ImageReadError, $"{path}: {Errno.Describe(errno)} (the disk under it). Check the disk, then test the image again.", path, errno);
            throw Problem(EngineError.ImageIncomplete, path, null, "missing.");
        }
        if (st.Value.Type != FileNative.S_IFREG) throw Problem(EngineError.ImageCorrupt, path, null, "not a regular file (a link, FIFO, device or directory).");
        long length = (long)st.Value.Size;
        if (length < info.Size)
            throw Problem(EngineError.ImageIncomplete, path, length, $"truncated: {length} bytes, the manifest says {info.Size}.");
        if (length > info.Size)
            throw Problem(EngineError.ImageCorrupt, path, info.Size, $"{length} bytes, longer than the {info.Size} the manifest says.");
        return length;
    }

    /// <summary>
    /// Checks every page of <paramref name="image"/> against its checksum; calls <paramref name="onProblem"/>
    /// for each mismatch (file pages.bin, its offset) and returns the pages checked.
    /// </summary>
    public static ulong VerifyPages(OpenedImage image, PageRecord[] records, Action<ImageProblem> onProblem, System.Threading.CancellationToken cancel = default)
    {
        using var verifier = new PageVerifier(image, onProblem, cancel);
        for (int i = 0; i < records.Length; i++) verifier.Add(i, records[i]);
        verifier.Flush();
        return verifier.Checked;
    }

    /// <summary>
    /// As <see cref="VerifyPages(OpenedImage, PageRecord[], Action{ImageProblem}, System.Threading.CancellationToken)"/> while
    /// the index is read (<see cref="ReadIndex{TSink}"/>, which throws what is wrong with the index): no record is kept, so
    /// checking an image holds nothing per page. A problem of the index found on its second pass (it changed) is thrown after
    /// the pages before it were checked.
    /// </summary>
    public static ulong VerifyPages(OpenedImage image, Action<ImageProblem> onProblem, System.Threading.CancellationToken cancel = default)
    {
        using var verifier = new PageVerifier(image, onProblem, cancel);
        var sink = new Verifying { Verifier = verifier };
        ReadIndex(image, ref sink, cancel);
        verifier.Flush();
        return verifier.Checked;
    }

    private struct Verifying : IRecordSink
    {
        public PageVerifier Verifier;
        public void Begin(int count) { }
        public void Add(int i, in PageRecord record) => Verifier.Add(i, record);
    }

    /// <summary>
    /// The pages of a chain's latest state, ascending, each with the image of the chain that holds it, its offset there and
    /// its hash (data pages only: a page whose newest record is a zero record is left out). A merge of the chain's indexes
    /// (each ascending) by a heap of one cursor per image, the newer image first at the same address: it holds nothing per
    /// page besides the indexes (a sorted dictionary of every page held about 160 bytes a page more).
    /// </summary>
    public static IEnumerable<(ulong Address, int Image, ulong Offset, Hash128 Hash)> Resolve(IReadOnlyList<PageRecord[]> indexes)
    {
        var next = new int[indexes.Count];
        var heap = new PriorityQueue<int, (ulong Address, int Newer)>(indexes.Count);
        for (int c = 0; c < indexes.Count; c++)
            if (indexes[c].Length > 0) heap.Enqueue(c, (indexes[c][0].Address, -c));
        void Advance(int c)
        {
            if (++next[c] < indexes[c].Length) heap.Enqueue(c, (indexes[c][next[c]].Address, -c));
        }
        while (heap.TryDequeue(out int c, out _))
        {
            var r = indexes[c][next[c]];
            Advance(c);
            // The older images' records of this page: replaced by the newest.
            while (heap.TryPeek(out int older, out var key) && key.Address == r.Address)
            {
                heap.Dequeue();
                Advance(older);
            }
            if (r.Kind == PageRecordKind.Data) yield return (r.Address, c, r.Offset, r.Hash);
        }
    }
}
