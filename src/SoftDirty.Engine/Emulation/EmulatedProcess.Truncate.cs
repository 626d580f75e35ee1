using System;

namespace SoftDirty.Emulation;

// mm/truncate.c truncate_pagecache: what a file's new end does to the mappings of the file.
public sealed partial class EmulatedProcess
{
    /// <summary>
    /// ftruncate of an emulated file (the page cache that <see cref="Mmap"/> with a path maps) to <paramref name="length"/>
    /// bytes, a whole number of pages (else InvalidArgument: a partial last page is not modelled). Shrinking unmaps, in every
    /// process of the machine, every page of the file's mappings past the new end, the private copies of a MAP_PRIVATE mapping
    /// included (unmap_mapping_range with even_cows; in a VMA registered for uffd-wp a write-protected page leaves a uffd-wp
    /// marker, as MADV_DONTNEED does in a file VMA), and drops those pages from the page cache; an access there then faults
    /// (SIGBUS, a SegmentationFault here) until the file grows again, when the pages read as zeros. A file never truncated has no end.
    /// </summary>
    public void TruncateFile(string path, ulong length)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if ((length & PageOffsetMask) != 0) throw Invalid($"truncate: length 0x{length:x} is not a whole number of pages (a partial last page is not modelled)");
        ulong pages = length >> PageShift;
        lock (_mem.Lock)
        {
            var file = _mem.File(path);
            bool shrinks = file.SizePages is not { } old || pages < old;
            file.SizePages = pages;
            if (!shrinks) return;
            foreach (var member in _mem.Members)
                if (member.TryGetTarget(out var process)) process.ZapPastEndOfFile(file);
            foreach (var index in new System.Collections.Generic.List<ulong>(file.Pages.Keys))
                if (index >= pages) file.Pages.Remove(index);
        }
    }

    /// <summary>
    /// Puts the emulated file <paramref name="path"/> (created empty when new) on <paramref name="fileSystem"/>: on tmpfs a
    /// read fault maps around only pages already in the page cache; on a disk file system (the default) readahead
    /// brings the window in first.
    /// </summary>
    public void SetFileSystem(string path, EmulatedFileSystem fileSystem)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!Enum.IsDefined(fileSystem)) throw Invalid($"unknown file system {fileSystem}");
        lock (_mem.Lock) _mem.File(path).FileSystem = fileSystem;
    }

    private void ZapPastEndOfFile(BackingObject file)
    {
        foreach (var vma in _vmas)
            if (vma.Backing == file && FileEndIn(vma) is { } from && from < vma.End)
                ZapRange(from, vma.End, keepGuards: true, keepUffdWp: vma.UffdWriteProtect);   // a file VMA keeps uffd-wp as markers
    }

    /// <summary>Where the end of a truncated file falls in a file VMA (its start when the VMA lies wholly past it); null for no end.</summary>
    private static ulong? FileEndIn(Vma vma) =>
        vma.Backing is { IsFile: true, SizePages: { } size }
            ? size <= vma.PageOffset ? vma.Start : Math.Min(vma.End, vma.Start + ((size - vma.PageOffset) << PageShift))
            : null;
}
