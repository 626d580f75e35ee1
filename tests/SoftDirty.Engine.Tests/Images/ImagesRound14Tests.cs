using System;
using System.Buffers.Binary;
using System.IO;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using SoftDirty.TestKit.Images;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, fourteenth attack round, at the engine: a page changed so that it keeps its Fast128 hash. With the fixed
/// (public) secret, two words of one lane in two stripes whose low halves equal the secret's words add nothing to
/// their own accumulator (the product of the halves of word XOR secret is zero), and their sum is all the next one
/// keeps: moving a value from one high half to the other keeps the hash. An increment took such a page for its
/// parent's (saved nothing, restored the old bytes) and a Hash tracker for unchanged. The real-process and cmdlet
/// cases are in tests/Pester/Security.Round14.Images.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImagesRound14Tests : IDisposable
{
    private const int Pages = 8, PageBytes = 4096, WordBytes = 8, StripeBytes = 64, CollidingPage = 3;
    private const ulong Moved = 0x0000_0001_0000_0000UL; // one unit of a high half
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround14-" + Guid.NewGuid().ToString("n"));

    public ImagesRound14Tests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>Word 0 of stripes 0 and 1 of <paramref name="page"/> given the fixed secret's low halves (words 0 and 1), high halves 0x1111/0x2222.</summary>
    private static void Prime(Span<byte> page)
    {
        var secret = PageHashKey.Unkeyed.Secret;
        BinaryPrimitives.WriteUInt64LittleEndian(page, (secret[0] & 0xFFFF_FFFFUL) | (0x1111UL << 32));
        BinaryPrimitives.WriteUInt64LittleEndian(page[StripeBytes..], (secret[1] & 0xFFFF_FFFFUL) | (0x2222UL << 32));
    }

    /// <summary>One unit moved from the high half of stripe 1's word 0 to stripe 0's: other bytes, the same unkeyed Fast128.</summary>
    private static void Collide(Span<byte> page)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(page, BinaryPrimitives.ReadUInt64LittleEndian(page) + Moved);
        BinaryPrimitives.WriteUInt64LittleEndian(page[StripeBytes..], BinaryPrimitives.ReadUInt64LittleEndian(page[StripeBytes..]) - Moved);
    }

    /// <summary>A process whose page <see cref="CollidingPage"/> is primed (<see cref="Prime"/>), and that page's content.</summary>
    private static (FakeProcess Process, byte[] Content) Primed(bool softDirty, int seed)
    {
        var p = new FakeProcess(Pages, softDirty, seed);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        var content = p.Content(CollidingPage);
        Prime(content);
        WriteWords(p, content);
        return (p, content);
    }

    /// <summary>The two words <see cref="Prime"/> and <see cref="Collide"/> set, written into the process's page.</summary>
    private static void WriteWords(FakeProcess p, ReadOnlySpan<byte> content)
    {
        for (int i = 0; i < StripeBytes + WordBytes; i++) p.Write(CollidingPage, content[i], i);
    }

    [Fact]
    public void TheCraftedPagesCollideUnderTheFixedSecret_ButNotUnderARandomKey()
    {
        // The attack as the round found it (so that the tests below test what they claim), and the fix's premise.
        var a = new byte[PageBytes];
        new Random(14).NextBytes(a);
        Prime(a);
        var b = (byte[])a.Clone();
        Collide(b);
        Assert.NotEqual(a, b);
        Assert.Equal(PageHash.Fast128(a), PageHash.Fast128(b));
        var key = PageHashKey.NewRandom();
        Assert.NotEqual(PageHash.Fast128(a, key), PageHash.Fast128(b, key));
        // The scalar and vector paths agree under a key too (a key is loaded by the vector code by reference).
        Assert.Equal(PageHash.Fast128(a, PageHashKey.Parse(key.Hex)!), PageHash.Fast128(a, key));
    }

    [Theory]
    [InlineData(TrackingMethod.Hash)]
    [InlineData(TrackingMethod.SoftDirty)]
    public void AnIncrementSavesAPageChangedToKeepItsUnkeyedHash(TrackingMethod method)
    {
        // Before the fix: DataPages 0, the chain held the parent's bytes for the page and Test-MemoryImage called it
        // valid. With SoftDirty the page was a candidate (written), and still taken for the parent's by its hash.
        var (p, content) = Primed(softDirty: true, seed: 141);
        string full = Path.Combine(_dir, "full"), inc = Path.Combine(_dir, "inc");
        ImageSaveResult Save(string path, string? parent)
        {
            var manifest = parent is null ? null : ImageReader.ReadManifest(parent);
            var candidates = ImageTracking.Candidates(p, method, manifest, null, verify: false, out var armed, out var epoch, warn: null, default);
            return ImageWriter.Save(p, path, parent, method, candidates, armed: armed, armedEpoch: epoch, trackedAgainst: manifest);
        }
        Save(full, null);
        Collide(content);
        WriteWords(p, content);
        var result = Save(inc, full);
        Assert.Equal(method, result.Manifest.Method);
        Assert.Equal(1UL, result.Manifest.DataPages);
        ImageRound5Tests.AssertChainHolds(inc, p);
    }

    [Fact]
    public void AHashTrackerSeesAPageChangedToKeepItsUnkeyedHash()
    {
        var (p, content) = Primed(softDirty: false, seed: 142);
        using var tracker = new HashTracker(p, PageHashAlgorithm.Fast128);
        tracker.Reset();
        Collide(content);
        WriteWords(p, content);
        var set = tracker.Collect();
        Assert.Equal(1UL, set.PageCount);
        Assert.Contains(set.Ranges, r => r.Start == p.Address(CollidingPage));
    }

    [Fact]
    public void EachChainHasItsOwnKey_AndAnIncrementCarriesItsParents()
    {
        var p = new FakeProcess(Pages, softDirty: true, seed: 143);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b"), a1 = Path.Combine(_dir, "a1");
        ImageWriter.Save(p, a, null, TrackingMethod.Hash, null);
        ImageWriter.Save(p, b, null, TrackingMethod.Hash, null);
        p.WriteRandom(2);
        ImageWriter.Save(p, a1, a, TrackingMethod.Hash, null);
        string? ka = ImageReader.ReadManifest(a).PageKey, kb = ImageReader.ReadManifest(b).PageKey;
        Assert.NotNull(ka);
        Assert.Equal(PageHashKey.KeyBytes * 2, ka!.Length);
        Assert.NotEqual(ka, kb);
        Assert.Equal(ka, ImageReader.ReadManifest(a1).PageKey);
        // Get-MemoryImage's object does not carry it (it travels to other sessions and into files).
        Assert.DoesNotContain(typeof(MemoryImageInfo).GetProperties(), prop => prop.Name.Contains("Key", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void AnIncrementWhoseKeyIsNotItsParentsIsRefused()
    {
        var p = new FakeProcess(Pages, softDirty: true, seed: 144);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        string full = Path.Combine(_dir, "full"), inc = Path.Combine(_dir, "inc");
        ImageWriter.Save(p, full, null, TrackingMethod.Hash, null);
        p.WriteRandom(1);
        ImageWriter.Save(p, inc, full, TrackingMethod.Hash, null);
        var m = (ImageManifest)ManifestFile.Read(inc);
        m.PageKey = PageHashKey.NewRandom().Hex;
        ManifestFile.Write(inc, m);
        var ex = Assert.Throws<EngineException>(() => ImageReader.Chain(inc).Dispose());
        Assert.Equal(EngineError.ImageParentMismatch, ex.Error);
    }

    [Theory]
    [InlineData("00")]
    [InlineData("ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    public void AMalformedKeyIsImageCorrupt(string key)
    {
        var p = new FakeProcess(Pages, softDirty: true, seed: 145);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        string full = Path.Combine(_dir, "full");
        ImageWriter.Save(p, full, null, TrackingMethod.Hash, null);
        var m = (ImageManifest)ManifestFile.Read(full);
        m.PageKey = key;
        ManifestFile.Write(full, m);
        var ex = Assert.ThrowsAny<EngineException>(() => ImageReader.ReadManifest(full));
        Assert.Equal(EngineError.ImageCorrupt, ex.Error);
    }
}
