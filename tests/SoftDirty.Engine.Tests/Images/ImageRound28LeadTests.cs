using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Text.Json;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, round 28 (left open by round 27): the index header repeats the format version and the page size. An index
/// whose header says otherwise than its manifest (edited, or the index of another image with its hash recomputed) was
/// read as if it agreed; it is ImageCorrupt from Open, Test and a restore alike. And a restore into an emulated process
/// that failed took back, as its own, a mapping another runspace had made in its place meanwhile.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageRound28LeadTests : IDisposable
{
    private const int Pages = 8;
    private readonly ScratchFolder _scratch = new("sdround28l");
    private readonly string _image;

    public ImageRound28LeadTests()
    {
        using var p = new FakeProcess(Pages, seed: 28);
        for (int i = 0; i < Pages; i++) if (i != 5) p.WriteRandom(i);
        _image = Path.Combine(_scratch.Path, "img");
        ImageWriter.Save(p, _image, null, TrackingMethod.Hash, null);
    }

    public void Dispose() => _scratch.Dispose();

    /// <summary>A copy of the image whose index header holds <paramref name="value"/> at <paramref name="offset"/>, the index hash and manifest checksum recomputed.</summary>
    private string WithHeaderField(string name, int offset, uint value)
    {
        var d = Path.Combine(_scratch.Path, name);
        Directory.CreateDirectory(d);
        foreach (var f in Directory.GetFiles(_image)) File.Copy(f, Path.Combine(d, Path.GetFileName(f)));
        var index = Path.Combine(d, ImageFormat.IndexFile);
        var bytes = File.ReadAllBytes(index);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), value);
        File.WriteAllBytes(index, bytes);
        var m = JsonSerializer.Deserialize<ImageManifest>(File.ReadAllBytes(Path.Combine(d, ImageFormat.ManifestFile)), ImageFormat.Json)!;
        m.Files.First(f => f.Name == ImageFormat.IndexFile).Hash = PageHash.Fast128(bytes).ToString();
        m.Checksum = ImageFormat.ManifestChecksum(m);
        File.WriteAllBytes(Path.Combine(d, ImageFormat.ManifestFile), JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json));
        return d;
    }

    [Fact]
    public void TheHeaderAsWritten_AgreesWithTheManifest()
    {
        // The negative case: the image the tests edit is valid as saved (so each case below fails by its header alone).
        Assert.True(ImageVerifier.Test(_image).Valid);
        var bytes = File.ReadAllBytes(Path.Combine(_image, ImageFormat.IndexFile));
        Assert.Equal((uint)ImageFormat.Version, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(ImageFormat.IndexVersionOffset)));
        Assert.Equal((uint)ImageReader.Open(_image).Manifest.PageSize, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(ImageFormat.IndexPageSizeOffset)));
    }

    [Theory]
    [InlineData(ImageFormat.IndexPageSizeOffset, 16384u)]
    [InlineData(ImageFormat.IndexPageSizeOffset, 65536u)]
    [InlineData(ImageFormat.IndexPageSizeOffset, 0u)]
    [InlineData(ImageFormat.IndexVersionOffset, 1u)]
    [InlineData(ImageFormat.IndexVersionOffset, 3u)]
    public void AHeaderThatDisagreesWithTheManifest_IsCorruptEverywhere(int offset, uint value)
    {
        // Before the fix: Test said valid and the restore wrote the pages as the manifest's page size read them.
        var d = WithHeaderField($"h{offset}-{value}", offset, value);
        var verdict = ImageVerifier.Test(d);
        Assert.False(verdict.Valid);
        Assert.Equal(EngineError.ImageCorrupt, verdict.Problems[0].Error);
        Assert.Contains("header", verdict.Problems[0].Message, StringComparison.Ordinal);
        var dest = d + "-restored";
        using (var target = new FlatFileRestoreTarget(dest))
            Assert.Equal(EngineError.ImageCorrupt, Assert.ThrowsAny<EngineException>(() => ImageRestorer.Restore(d, target)).Error);
        Assert.False(Directory.Exists(dest));
    }

    [Fact]
    public void AFailedRestoreIntoAnEmulatedProcess_UnmapsOnlyItsOwn_AnotherRunspacesMappingThereStays()
    {
        // Before the fix: the other thread unmapped the restore's mapping, mapped its own at the same address and wrote to
        // it while the restore ran; the failed restore's undo then unmapped that mapping (its bytes lost). Now the other
        // thread waits for the restore to end, and its mapping is made after the undo.
        const ulong At = 0x7f0000000000, Length = 0x4000;
        const byte Mark = 0x5a;
        var into = new EmulatedProcess("shared-" + Guid.NewGuid().ToString("n"));
        var layout = new[] { new ImageMapping { Start = At, End = At + Length, Permissions = "rw-p" } };
        using var prepared = new System.Threading.ManualResetEventSlim();
        System.Threading.Thread other;
        using (var target = new EmulatedProcessRestoreTarget(into))
        {
            target.Prepare(layout, ImagePage);
            // A thread of its own (the restore's hold is the restoring thread's lock, as in the cmdlet).
            other = new System.Threading.Thread(() =>
            {
                prepared.Wait();
                into.Munmap(At, Length);
                into.Mmap(At, Length, Protection.Read | Protection.Write, MmapFlags.Fixed);
                into.Write(At, Length, Mark);
            });
            other.Start();
            prepared.Set();
            other.Join(OtherRunspaceChance); // its chance to act while the restore runs (it cannot, with the fix)
        } // disposed without Complete: a failed restore
        other.Join();
        Assert.True(into.IsMapped(At), "the other runspace's mapping was unmapped by the restore's undo");
        var bytes = new byte[Length];
        into.ReadMemory(At, bytes);
        Assert.All(bytes, b => Assert.Equal(Mark, b));
    }

    private const int ImagePage = 4096;

    /// <summary>How long the restoring thread lets the other one try (no assertion depends on it: only how soon the case ends).</summary>
    private static readonly TimeSpan OtherRunspaceChance = TimeSpan.FromMilliseconds(500);
}
