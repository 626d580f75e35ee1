using Xunit;

namespace SoftDirty.Tests;

/// <summary>A fact about the real host: skipped, with the reason, where the host lacks what it <see cref="HostNeeds"/>.</summary>
public sealed class HostFactAttribute : FactAttribute
{
    public HostFactAttribute(HostNeeds needs = HostNeeds.Linux) => Skip = HostCondition.WhyNot(needs);
}
