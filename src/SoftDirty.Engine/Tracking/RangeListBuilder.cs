using System.Collections.Generic;

namespace SoftDirty.Tracking;

/// <summary>Builds sorted, merged ranges from pages or ranges given in ascending order.</summary>
internal sealed class RangeListBuilder
{
    private readonly List<AddressRange> _ranges = new();
    private ulong _start, _end;
    private bool _open;

    public void Add(ulong start, ulong end)
    {
        if (end <= start) return;
        if (_open && start <= _end && start >= _start) { if (end > _end) _end = end; return; }
        if (_open) _ranges.Add(new AddressRange(_start, _end));
        _start = start; _end = end; _open = true;
    }

    public List<AddressRange> Build()
    {
        if (_open) { _ranges.Add(new AddressRange(_start, _end)); _open = false; }
        return _ranges;
    }
}
