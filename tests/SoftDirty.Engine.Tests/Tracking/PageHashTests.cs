using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

[Collection(WorkflowCollection.Name)]
public class PageHashTests
{
    [Fact]
    public void Fast128_IsDeterministic_AndEveryBitFlipChangesIt()
    {
        var page = new byte[4096];
        new Random(7).NextBytes(page);
        var h = PageHash.Fast128(page);
        Assert.Equal(h, PageHash.Fast128(page.ToArray()));
        var seen = new System.Collections.Generic.HashSet<Hash128> { h };
        for (int bit = 0; bit < 4096 * 8; bit += 97)
        {
            page[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.True(seen.Add(PageHash.Fast128(page)), $"bit {bit} collides");
            page[bit / 8] ^= (byte)(1 << (bit % 8));
        }
    }

    [Fact]
    public void Fast128_VectorAndScalarPathsAgree_AndSwappedStripesDiffer()
    {
        var rng = new Random(3);
        foreach (int len in new[] { 0, 1, 7, 63, 64, 65, 1024, 1031, 4096, 8192 + 40, 65536 + 1000 })
        {
            var d = new byte[len];
            rng.NextBytes(d);
            Assert.Equal(PageHash.Fast128Scalar(d), PageHash.Fast128(d));
            // Fast128 takes the widest vectors the machine has (AVX-512 where it can): the AVX2 path must agree too.
            Assert.Equal(PageHash.Fast128Scalar(d), PageHash.Fast128Avx2(d));
        }
        var page = new byte[4096];
        rng.NextBytes(page);
        var h = PageHash.Fast128(page);
        var swapped = page.ToArray();
        page.AsSpan(0, 64).CopyTo(swapped.AsSpan(64));
        page.AsSpan(64, 64).CopyTo(swapped.AsSpan(0));
        Assert.NotEqual(h, PageHash.Fast128(swapped));
        var blocks = page.ToArray();
        page.AsSpan(0, 1024).CopyTo(blocks.AsSpan(1024));
        page.AsSpan(1024, 1024).CopyTo(blocks.AsSpan(0));
        Assert.NotEqual(h, PageHash.Fast128(blocks));
    }

    [Fact]
    public void ZeroPageHash_MatchesZeros_AndSha256Differs()
    {
        var key = PageHashKey.NewRandom();
        Assert.Equal(PageHash.Fast128(new byte[4096]), PageHash.ZeroPage(PageHashAlgorithm.Fast128, 4096, PageHashKey.Unkeyed));
        Assert.Equal(PageHash.Fast128(new byte[4096], key), PageHash.ZeroPage(PageHashAlgorithm.Fast128, 4096, key));
        Assert.NotEqual(PageHash.ZeroPage(PageHashAlgorithm.Fast128, 4096, key), PageHash.ZeroPage(PageHashAlgorithm.Sha256, 4096, key));
        Assert.True(PageHash.IsZero(new byte[4096]));
    }
}
