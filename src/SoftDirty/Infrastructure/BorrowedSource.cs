using SoftDirty.Tracking;

namespace SoftDirty.Commands;

/// <summary>Wraps a source the caller does not own, so disposing it does nothing (an emulated process passes through as itself).</summary>
internal sealed class BorrowedSource : PageSourceWrapper
{
    public BorrowedSource(IPageSource inner) : base(inner) { }
}
