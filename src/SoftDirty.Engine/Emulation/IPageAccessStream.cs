namespace SoftDirty.Emulation;

/// <summary>A source of page accesses (page index within the range, and whether it writes).</summary>
internal interface IPageAccessStream
{
    void Next(out ulong pageIndex, out bool write);
}
