using Microsoft.Win32.SafeHandles;
using System.IO;
using System.Linq;
using System.Threading;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>Rebuilds the memory of a chain's latest state into a restore target, checking every page's checksum.</summary>
internal static class ImageRestorer
{
    public static ulong Restore(string leafPath, IRestoreTarget target, CancellationToken cancel = default)
    {
        using var chain = ImageReader.Chain(leafPath);
        var indexes = chain.Select(image => ImageReader.ReadIndex(image, cancel)).ToList();
        // The whole chain is verified before the target is touched: a corrupt page fails here, with nothing written.
        for (int c = 0; c < chain.Count; c++)
            ImageReader.VerifyPages(chain[c], indexes[c], p => throw p.ToException(), cancel);
        var pages = ImageReader.Resolve(indexes);
        var leaf = chain[^1].Manifest;
        int ps = leaf.PageSize;
        // Each image's pages file, its folder then closed (nothing else of the image is read): a restore holds one descriptor
        // per image, as reading the chain does. Two per image, a chain that Test-MemoryImage and Save-MemoryImage -Parent
        // read was ResourceLimit to a restore at the same ulimit -n (round 28), and the files opened before the limit was met
        // stayed open until the garbage collector came: the next command of the session met the limit sooner.
        var handles = new SafeFileHandle?[chain.Count];
        // Each image's pages file by name, made once (made a page, it was most of what a restore allocated).
        var files = chain.Select(c => c.File(ImageFormat.PagesFile)).ToArray();
        try
        {
            for (int c = 0; c < chain.Count; c++)
            {
                handles[c] = SafeFiles.OpenRegular(chain[c].Folder, ImageFormat.PagesFile);
                chain[c].Dispose();
            }
            target.Prepare(leaf.Mappings, ps);
            var page = new byte[ps];
            ulong n = 0;
            // The latest image's mappings are sorted and disjoint (ImageVerifier), and so are the pages: one cursor.
            var layout = leaf.Mappings;
            int at = 0;
            foreach (var (addr, img, offset, hash) in pages)
            {
                if ((n & 1023) == 0) cancel.ThrowIfCancellationRequested();
                // A page an older image of the chain holds where the latest has no mapping (unmapped or moved since, as
                // mremap moves a mapping and leaves no record at its old place) is no part of the latest state: a
                // target would fail on it (an emulated process has no memory there) or drop it.
                while (at < layout.Count && layout[at].End <= addr) at++;
                if (at == layout.Count || layout[at].Start > addr) continue;
                int got = SafeFiles.ReadFull(handles[img]!, page, (long)offset, files[img]);
                if (got < ps)
                {
                    var file = files[img];
                    throw new EngineException(EngineError.ImageIncomplete, $"{file} at offset {offset} (0x{offset:x}): truncated, page 0x{addr:x} is missing.", file);
                }
                if (PageHash.Fast128(page, chain[img].PageKey) != hash)
                {
                    var file = files[img];
                    throw new EngineException(EngineError.ImageCorrupt, $"{file} at offset {offset} (0x{offset:x}): page 0x{addr:x} does not match its checksum.", file);
                }
                target.WritePage(addr, page);
                n++;
            }
            target.Complete();
            return n;
        }
        catch (System.Exception ex) when (ex is EngineException or IOException or System.UnauthorizedAccessException)
        {
            var named = target.Abandoned(ex);
            if (ReferenceEquals(named, ex)) throw;
            throw named;
        }
        finally { foreach (var h in handles) h?.Dispose(); }
    }
}
