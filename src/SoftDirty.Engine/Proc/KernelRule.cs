namespace SoftDirty;

/// <summary>
/// One measured rule of the running kernel (Get-SoftDirtySupport's Rules): its name (as the
/// <see cref="Emulation.KernelProfile"/> property it sets, where there is one), the value measured, and the
/// evidence (what the probe did and saw).
/// </summary>
public sealed record KernelRule(string Name, string Value, string Evidence)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name} = {Value} ({Evidence})";
}
