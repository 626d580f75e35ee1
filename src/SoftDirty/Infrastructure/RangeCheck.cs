namespace SoftDirty.Commands;

/// <summary>Checks of an -Address/-Length range that every cmdlet taking one shares.</summary>
internal static class RangeCheck
{
    /// <summary>[start, start + length) rounded up to <paramref name="granule"/> must end inside the 64-bit address space.</summary>
    public static void CheckNoWrap(ulong start, ulong length, ulong granule)
    {
        ulong room = ulong.MaxValue - start;
        if (length > room || (granule > 1 && length > ulong.MaxValue - (granule - 1)) || (granule > 1 && (length + granule - 1) / granule * granule > room))
            throw new EngineException(EngineError.InvalidArgument,
                $"0x{start:x} + 0x{length:x} wraps past the end of the 64-bit address space; give a -Length that ends inside it.", length);
    }
}
