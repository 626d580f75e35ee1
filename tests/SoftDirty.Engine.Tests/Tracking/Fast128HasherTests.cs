using System;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>The streaming hasher an image's index is hashed with while it is written: the one-shot hash, whatever the pieces.</summary>
public class Fast128HasherTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(1023)]
    [InlineData(1024)]
    [InlineData(1025)]
    [InlineData(4096 + 16)]
    [InlineData(40 * 1024 + 16)]
    [InlineData(300_017)]
    public void PiecesOfAnySize_HashAsTheWhole(int length)
    {
        var data = new byte[length];
        var random = new Random(length);
        random.NextBytes(data);
        var whole = PageHash.Fast128(data);
        // One piece, then pieces of random sizes (0 included), then single bytes for a short prefix.
        foreach (int seed in new[] { 1, 2, 3 })
        {
            var cut = new Random(seed);
            var hasher = new Fast128Hasher();
            int at = 0;
            while (at < length)
            {
                int n = seed == 1 ? length : Math.Min(length - at, cut.Next(0, seed == 2 ? 3000 : 2));
                hasher.Append(data.AsSpan(at, n));
                at += n;
            }
            Assert.Equal((ulong)length, hasher.Length);
            Assert.Equal(whole, hasher.Finish());
        }
    }

    [Fact]
    public void ADifferentByteOrLength_GivesADifferentHash()
    {
        var data = new byte[5000];
        new Random(5).NextBytes(data);
        var hasher = new Fast128Hasher();
        hasher.Append(data);
        var h = hasher.Finish();
        data[4321] ^= 1;
        var other = new Fast128Hasher();
        other.Append(data);
        Assert.NotEqual(h, other.Finish());
        var shorter = new Fast128Hasher();
        shorter.Append(data.AsSpan(0, 4999));
        Assert.NotEqual(h, shorter.Finish());
    }
}
