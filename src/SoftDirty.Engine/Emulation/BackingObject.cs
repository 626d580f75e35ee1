using System.Collections.Generic;

namespace SoftDirty.Emulation;

/// <summary>A file or a shared anonymous memory object: its page cache (page index to PFN).</summary>
internal sealed class BackingObject
{
    private static long s_nextInode = 1000;

    public BackingObject(string name, bool isFile)
    {
        Name = name;
        IsFile = isFile;
        Inode = (ulong)System.Threading.Interlocked.Increment(ref s_nextInode);
    }

    public string Name { get; }
    public bool IsFile { get; }
    public ulong Inode { get; }
    public Dictionary<ulong, ulong> Pages { get; } = new();
    /// <summary>Shared anonymous memory's pages reclaimed to swap (page index to content word): out of the page cache.</summary>
    public Dictionary<ulong, ulong> SwappedPages { get; } = new();
    /// <summary>A file's size in pages once truncated (<see cref="EmulatedProcess.TruncateFile"/>); null: unbounded, every page reads as zeros until written.</summary>
    public ulong? SizePages { get; set; }
    /// <summary>A file's file system (<see cref="EmulatedProcess.SetFileSystem"/>): whether a fault reads its neighbours into the page cache.</summary>
    public EmulatedFileSystem FileSystem { get; set; }
}
