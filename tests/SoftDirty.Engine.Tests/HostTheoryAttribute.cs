using Xunit;

namespace SoftDirty.Tests;

/// <summary>A theory about the real host: skipped, with the reason, where the host lacks what it <see cref="HostNeeds"/>.</summary>
public sealed class HostTheoryAttribute : TheoryAttribute
{
    public HostTheoryAttribute(HostNeeds needs = HostNeeds.Linux) => Skip = HostCondition.WhyNot(needs);
}
