namespace SoftDirty.Tracking;

/// <summary>A page source that can be stopped and resumed (what ptrace freezing does to a real process).</summary>
internal interface IFreezable
{
    void Freeze();
    void Thaw();
}
