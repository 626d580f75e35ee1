using System;
using System.Runtime.InteropServices;

namespace SoftDirty.Tracking;

/// <summary>
/// <see cref="PageHash.Fast128(System.ReadOnlySpan{byte})"/> of data that arrives in pieces: the same value as the hash of all the pieces
/// joined, with one block (1 KiB) held at a time, so a file can be hashed while it is written. Fast128 takes every
/// whole 1 KiB block into its accumulators and finishes with what is left, so a block is taken as soon as it is full.
/// </summary>
internal sealed class Fast128Hasher
{
    private readonly ulong[] _acc = new ulong[8];
    private readonly byte[] _pending = new byte[PageHash.Fast128BlockBytes];
    private int _held;
    private ulong _length;

    public Fast128Hasher() => PageHash.Seed(_acc);

    /// <summary>The bytes taken so far.</summary>
    public ulong Length => _length;

    /// <summary>Takes the next bytes.</summary>
    public void Append(ReadOnlySpan<byte> data)
    {
        _length += (ulong)data.Length;
        if (_held > 0)
        {
            int take = Math.Min(data.Length, _pending.Length - _held);
            data[..take].CopyTo(_pending.AsSpan(_held));
            _held += take;
            data = data[take..];
            if (_held < _pending.Length) return;
            PageHash.Accumulate(_acc, MemoryMarshal.Cast<byte, ulong>(_pending), 1, PageHashKey.Unkeyed.Secret);
            _held = 0;
        }
        int blocks = data.Length / _pending.Length;
        if (blocks > 0)
        {
            PageHash.Accumulate(_acc, MemoryMarshal.Cast<byte, ulong>(data[..(blocks * _pending.Length)]), blocks, PageHashKey.Unkeyed.Secret);
            data = data[(blocks * _pending.Length)..];
        }
        data.CopyTo(_pending);
        _held = data.Length;
    }

    /// <summary>The hash of everything taken (the hasher can take no more after it).</summary>
    public Hash128 Finish()
    {
        var rest = _pending.AsSpan(0, _held);
        var words = MemoryMarshal.Cast<byte, ulong>(rest);
        return PageHash.Finish(_acc, rest, words, 0, _length, PageHashKey.Unkeyed.Secret);
    }
}
