namespace SoftDirty.Tracking;

/// <summary>A page source that wraps another (the identity and tracking state are those of the inner one).</summary>
internal interface IPageSourceWrapper
{
    IPageSource Inner { get; }
}
