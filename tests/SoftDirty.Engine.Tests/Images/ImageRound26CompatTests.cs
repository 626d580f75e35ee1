using System;
using System.IO;
using System.Text.Json;
using System.Text.Json.Nodes;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Round 26 Compat: images of a later version of the module. A later format version said "save the image again", and a member
/// this version does not know (one a later version adds, with the checksum that version takes over it) said "checksum mismatch:
/// it was edited or damaged"; each now says it was saved by a later version. A member added to a manifest whose checksum leaves
/// it out (this version's checksum covers only the members it knows) was read as valid; it is refused now.
/// </summary>
public sealed class ImageRound26CompatTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sd-r26-compat-" + Guid.NewGuid().ToString("n"));
    private readonly string _image;

    public ImageRound26CompatTests()
    {
        Directory.CreateDirectory(_dir);
        using var p = new FakeProcess(4, seed: 26);
        for (int i = 0; i < 4; i++) p.WriteRandom(i);
        _image = Path.Combine(_dir, "img");
        ImageWriter.Save(p, _image, null, TrackingMethod.Hash, null);
    }

    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>A copy of the image whose manifest <paramref name="edit"/> changed, its checksum taken over every member as a writer that knows them takes it (or kept where <paramref name="resign"/> is false).</summary>
    private string Edited(string name, Action<JsonObject> edit, bool resign = true)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        foreach (var f in Directory.GetFiles(_image)) File.Copy(f, Path.Combine(d, Path.GetFileName(f)));
        var file = Path.Combine(d, ImageFormat.ManifestFile);
        var m = JsonNode.Parse(File.ReadAllBytes(file))!.AsObject();
        edit(m);
        if (resign)
        {
            m.Remove("checksum");
            m["checksum"] = PageHash.Fast128(JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json)).ToString();
        }
        File.WriteAllBytes(file, JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json));
        return d;
    }

    private static string Refusal(string d)
    {
        var ex = Assert.ThrowsAny<EngineException>(() => ImageReader.Open(d).Dispose());
        Assert.Equal(EngineError.ImageCorrupt, ex.Error);
        Assert.False(ImageVerifier.Test(d).Valid);
        return ex.Message;
    }

    [Fact]
    public void ALaterFormatVersion_IsRefusedAsALaterVersions()
    {
        var message = Refusal(Edited("v3", m => m["version"] = ImageFormat.Version + 1));
        Assert.Contains("later version of SoftDirty", message, StringComparison.Ordinal);
        Assert.DoesNotContain("save the image again", message, StringComparison.Ordinal);
        // An earlier one (version 1, before checksums) is still told to be saved again.
        Assert.Contains("save the image again", Refusal(Edited("v1", m => m["version"] = 1)), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "futureField")]
    [InlineData("mappings[0].", "kind")]
    [InlineData("files[1].", "compression")]
    public void AMemberOfALaterVersion_IsRefusedByName(string at, string member)
    {
        var d = Edited("unknown", m =>
        {
            JsonObject target = at switch
            {
                "" => m,
                "mappings[0]." => m["mappings"]![0]!.AsObject(),
                _ => m["files"]![1]!.AsObject(),
            };
            target[member] = 1;
        });
        var message = Refusal(d);
        Assert.Contains($"'{at}{member}'", message, StringComparison.Ordinal);
        Assert.Contains("later version", message, StringComparison.Ordinal);
    }

    [Fact]
    public void AMemberAddedWithoutTheChecksumChanging_IsRefused()
    {
        // The checksum this version takes leaves out what it does not know: the edit kept it valid.
        var message = Refusal(Edited("added", m => m["futureField"] = "anything", resign: false));
        Assert.Contains("'futureField'", message, StringComparison.Ordinal);
    }
}
