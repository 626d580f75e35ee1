using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
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
        if (m.Version != ImageFormat.Version)
            throw Problem(EngineError.ImageCorrupt, manifestPath, 0, $"format version {m.Version} is not supported (this module reads {ImageFormat.Version}; save the image again).");
        Validate(m, manifestPath);
        return new OpenedImage(path, m, folder);
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
            catch (EngineException ex) when (ex.Error != EngineError.ResourceLimit) // a limit of this process says nothing of the parent
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
    public static PageRecord[] ReadIndex(OpenedImage image)
    {
        var sink = new RecordArray();
        ReadIndex(image, ref sink);
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

    /// <summary>
    /// <see cref="ReadIndex(OpenedImage)"/> into a sink (a struct: the loop is compiled for it). The file is read into
    /// a pooled buffer, so that reading an index leaves no large array behind for the collector.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // a loop over every record, called once an image
    public static void ReadIndex<TSink>(OpenedImage image, ref TSink sink) where TSink : struct, IRecordSink
    {
        var m = image.Manifest;
        string indexPath = image.File(ImageFormat.IndexFile), pagesPath = image.File(ImageFormat.PagesFile);
        long pagesSize = CheckFile(image, ImageFormat.PagesFile);
        long indexSize = CheckFile(image, ImageFormat.IndexFile);
        byte[] rented;
        int length;
        try { rented = SafeFiles.ReadRegularPooled(image.Folder, ImageFormat.IndexFile, indexSize, out length); }
        catch (FileNotFoundException) { throw Problem(EngineError.ImageIncomplete, indexPath, null, "missing."); }
        try
        {
            var bytes = new ReadOnlySpan<byte>(rented, 0, length);
            if (bytes.Length != indexSize)
                throw Problem(EngineError.ImageIncomplete, indexPath, Math.Min(bytes.Length, indexSize), "changed while being read.");
            if (bytes.Length < ImageFormat.IndexHeaderSize || !bytes[..8].SequenceEqual(ImageFormat.IndexMagic))
                throw Problem(EngineError.ImageCorrupt, indexPath, 0, "no SDIMGIDX header.");
            var info = m.Files.First(f => f.Name == ImageFormat.IndexFile); // Open checked it is listed once
            if (info.Hash is { } expected)
            {
                var actual = PageHash.Fast128(bytes).ToString();
                if (actual != expected)
                {
                    // Name the first record that cannot be right, else the file as a whole.
                    long bad = FirstBadRecord(bytes, m.PageSize, pagesSize);
                    throw Problem(EngineError.ImageCorrupt, indexPath, bad >= 0 ? bad : null, $"checksum mismatch (index.bin hash {actual}, manifest says {expected}).");
                }
            }
            if ((bytes.Length - ImageFormat.IndexHeaderSize) % ImageFormat.RecordSize != 0)
                throw Problem(EngineError.ImageCorrupt, indexPath, bytes.Length, "ends inside a record.");
            int n = (bytes.Length - ImageFormat.IndexHeaderSize) / ImageFormat.RecordSize;
            sink.Begin(n);
            ulong prev = 0, data = 0, zero = 0;
            int mapping = 0;
            for (int i = 0; i < n; i++)
            {
                long off = ImageFormat.IndexHeaderSize + (long)i * ImageFormat.RecordSize;
                var r = PageRecord.ReadFrom(bytes.Slice((int)off, ImageFormat.RecordSize));
                if (i > 0 && r.Address <= prev)
                    throw Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i} (page 0x{r.Address:x}) is out of address order.");
                if (r.Address % (ulong)m.PageSize != 0)
                    throw Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i}: address 0x{r.Address:x} is not page-aligned.");
                while (mapping < m.Mappings.Count && m.Mappings[mapping].End <= r.Address) mapping++;
                if (mapping == m.Mappings.Count || r.Address < m.Mappings[mapping].Start)
                    throw Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i}: page 0x{r.Address:x} lies outside every mapping of the manifest.");
                if (r.Kind == PageRecordKind.Data)
                {
                    if (r.Offset % (ulong)m.PageSize != 0 || (ulong)pagesSize < (ulong)m.PageSize || r.Offset > (ulong)pagesSize - (ulong)m.PageSize)
                        throw Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i} (page 0x{r.Address:x}) points at pages.bin offset {r.Offset}, outside its {pagesSize} bytes.");
                    data++;
                }
                else if (r.Kind == PageRecordKind.Zero) zero++;
                else throw Problem(EngineError.ImageCorrupt, indexPath, off, $"record {i} has unknown kind {(uint)r.Kind}.");
                sink.Add(i, r);
                prev = r.Address;
            }
            if (data != m.DataPages || zero != m.ZeroPages)
                throw Problem(EngineError.ImageCorrupt, indexPath, null, $"holds {data} data and {zero} zero records; the manifest says {m.DataPages} and {m.ZeroPages}.");
            if ((ulong)pagesSize != data * (ulong)m.PageSize)
                throw Problem(EngineError.ImageCorrupt, pagesPath, Math.Min(pagesSize, (long)(data * (ulong)m.PageSize)), $"is {pagesSize} bytes for {data} pages of {m.PageSize}.");
        }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(rented); }
    }

    private static long FirstBadRecord(ReadOnlySpan<byte> bytes, int pageSize, long pagesSize)
    {
        if (bytes.Length < ImageFormat.IndexHeaderSize) return 0;
        ulong prev = 0;
        for (long off = ImageFormat.IndexHeaderSize; off + ImageFormat.RecordSize <= bytes.Length; off += ImageFormat.RecordSize)
        {
            var r = PageRecord.ReadFrom(bytes.Slice((int)off, ImageFormat.RecordSize));
            bool ok = (r.Kind == PageRecordKind.Data || r.Kind == PageRecordKind.Zero) && r.Address % (ulong)pageSize == 0 && (off == ImageFormat.IndexHeaderSize || r.Address > prev)
                      && (r.Kind != PageRecordKind.Data || ((ulong)pagesSize >= (ulong)pageSize && r.Offset <= (ulong)pagesSize - (ulong)pageSize));
            if (!ok) return off;
            prev = r.Address;
        }
        return -1;
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
        int ps = image.Manifest.PageSize;
        var pagesPath = image.File(ImageFormat.PagesFile);
        var key = image.PageKey;
        var zero = key.ZeroPage(ps);
        using var handle = SafeFiles.OpenRegular(image.Folder, ImageFormat.PagesFile);
        var buffer = GC.AllocateUninitializedArray<byte>(PageWalk.ChunkBytes);
        ulong checkedPages = 0;
        int i = 0;
        while (i < records.Length)
        {
            cancel.ThrowIfCancellationRequested();
            if (records[i].Kind == PageRecordKind.Zero)
            {
                if (records[i].Hash != zero)
                    onProblem(new ImageProblem(EngineError.ImageCorrupt, image.File(ImageFormat.IndexFile), ImageFormat.IndexHeaderSize + (long)i * ImageFormat.RecordSize,
                        $"{image.File(ImageFormat.IndexFile)} at offset {ImageFormat.IndexHeaderSize + (long)i * ImageFormat.RecordSize}: zero record for page 0x{records[i].Address:x} carries a hash other than the zero page's."));
                i++; checkedPages++;
                continue;
            }
            // A run of data records with consecutive offsets: one read.
            int j = i;
            ulong first = records[i].Offset;
            while (j < records.Length && records[j].Kind == PageRecordKind.Data && records[j].Offset == first + (ulong)(j - i) * (ulong)ps && (j - i + 1) * ps <= buffer.Length) j++;
            int len = (j - i) * ps;
            int got = SafeFiles.ReadAt(handle, buffer.AsSpan(0, len), (long)first, pagesPath);
            for (int k = i; k < j; k++)
            {
                long at = (long)records[k].Offset;
                int bo = (k - i) * ps;
                if (bo + ps > got)
                {
                    onProblem(new ImageProblem(EngineError.ImageIncomplete, pagesPath, at, $"{pagesPath} at offset {at} (0x{at:x}): page 0x{records[k].Address:x} lies past the end of the file."));
                    continue;
                }
                var h = PageHash.Fast128(buffer.AsSpan(bo, ps), key);
                if (h != records[k].Hash)
                    onProblem(new ImageProblem(EngineError.ImageCorrupt, pagesPath, at,
                        $"{pagesPath} at offset {at} (0x{at:x}): page 0x{records[k].Address:x} does not match its checksum (index.bin record {k})."));
                checkedPages++;
            }
            i = j;
        }
        return checkedPages;
    }

    /// <summary>Where each page of a chain's latest state lives: image number in the chain and offset, for data pages only.</summary>
    public static SortedDictionary<ulong, (int Image, ulong Offset, Hash128 Hash)> Resolve(List<OpenedImage> chain, List<PageRecord[]> indexes)
    {
        var map = new SortedDictionary<ulong, (int, ulong, Hash128)>();
        for (int c = 0; c < chain.Count; c++)
            foreach (var r in indexes[c])
            {
                if (r.Kind == PageRecordKind.Data) map[r.Address] = (c, r.Offset, r.Hash);
                else map.Remove(r.Address);
            }
        return map;
    }

}
