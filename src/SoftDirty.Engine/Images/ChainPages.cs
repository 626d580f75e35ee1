using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// The pages a chain holds data for, with their hashes, in address order: what an increment compares against.
/// Built by merging the chain's indexes (each sorted) oldest first, a newer record replacing an older one and a zero
/// record removing the page; looked up by binary search, or by a cursor for addresses that only ascend.
/// </summary>
internal sealed class ChainPages
{
    private readonly ulong[] _addresses;
    private readonly Hash128[] _hashes;

    private ChainPages(ulong[] addresses, Hash128[] hashes, int count)
    {
        _addresses = addresses;
        _hashes = hashes;
        Count = count;
    }

    /// <summary>No pages (a full image's parent).</summary>
    public static ChainPages Empty { get; } = new(Array.Empty<ulong>(), Array.Empty<Hash128>(), 0);

    /// <summary>The pages with data.</summary>
    public int Count { get; }

    /// <summary>The address and hash of page <paramref name="i"/> (0 to Count - 1, ascending).</summary>
    public ulong Address(int i) => _addresses[i];
    public Hash128 Hash(int i) => _hashes[i];

    /// <summary>Merges the indexes of <paramref name="chain"/> (full image first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static ChainPages Of(IReadOnlyList<OpenedImage> chain)
    {
        ulong[] addresses = Array.Empty<ulong>();
        Hash128[] hashes = Array.Empty<Hash128>();
        int count = 0;
        foreach (var image in chain)
        {
            // Each index straight into columns (no record array): the full image's are the result as they come.
            var records = new Columns();
            ImageReader.ReadIndex(image, ref records);
            if (count == 0)
            {
                int d = 0;
                for (int k = 0; k < records.Count; k++)
                    if (records.Data[k]) { records.Addresses[d] = records.Addresses[k]; records.Hashes[d++] = records.Hashes[k]; }
                addresses = records.Addresses; hashes = records.Hashes; count = d;
                continue;
            }
            var a = new ulong[count + records.Count];
            var h = new Hash128[count + records.Count];
            int n = 0, i = 0, j = 0;
            while (i < count || j < records.Count)
            {
                if (j == records.Count || (i < count && addresses[i] < records.Addresses[j])) { a[n] = addresses[i]; h[n++] = hashes[i++]; continue; }
                if (i < count && addresses[i] == records.Addresses[j]) i++; // replaced or removed by the newer record
                if (records.Data[j]) { a[n] = records.Addresses[j]; h[n++] = records.Hashes[j]; }
                j++;
            }
            addresses = a; hashes = h; count = n;
        }
        return new ChainPages(addresses, hashes, count);
    }

    /// <summary>An index's records as columns: address, hash, and whether it holds data (else zero).</summary>
    private struct Columns : ImageReader.IRecordSink
    {
        public ulong[] Addresses;
        public Hash128[] Hashes;
        public bool[] Data;
        public int Count;

        public void Begin(int count)
        {
            Addresses = new ulong[count];
            Hashes = new Hash128[count];
            Data = new bool[count];
            Count = count;
        }

        public void Add(int i, in PageRecord record)
        {
            Addresses[i] = record.Address;
            Hashes[i] = record.Hash;
            Data[i] = record.Kind == PageRecordKind.Data;
        }
    }

    /// <summary>The hash of the page at <paramref name="address"/>, if the chain has data there.</summary>
    public bool TryGet(ulong address, out Hash128 hash)
    {
        int i = Array.BinarySearch(_addresses, 0, Count, address);
        hash = i >= 0 ? _hashes[i] : default;
        return i >= 0;
    }

    public bool Contains(ulong address) => Array.BinarySearch(_addresses, 0, Count, address) >= 0;

    /// <summary>A lookup for ascending addresses: each call starts where the last one stopped.</summary>
    public Cursor Ascending() => new(this);

    internal sealed class Cursor
    {
        private readonly ChainPages _pages;
        private int _at;

        public Cursor(ChainPages pages) => _pages = pages;

        /// <summary>As <see cref="TryGet"/>, for an address not below the last one asked for.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool TryGet(ulong address, out Hash128 hash)
        {
            var a = _pages._addresses;
            while (_at < _pages.Count && a[_at] < address) _at++;
            bool found = _at < _pages.Count && a[_at] == address;
            hash = found ? _pages._hashes[_at] : default;
            return found;
        }
    }
}
