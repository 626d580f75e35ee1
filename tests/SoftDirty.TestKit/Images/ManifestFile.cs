using System.IO;
using System.Text.Json;
using SoftDirty.Images;

namespace SoftDirty.TestKit.Images;

/// <summary>
/// An image's manifest.json read and written through the engine's own format, for tests that edit an image
/// as someone who knows the format would (the checksum recomputed). The manifest comes back as an object:
/// PowerShell edits its properties without naming the engine's internal type.
/// </summary>
public static class ManifestFile
{
    private const string FileName = "manifest.json";

    /// <summary>The manifest of the image in <paramref name="imageDirectory"/>.</summary>
    public static object Read(string imageDirectory) =>
        JsonSerializer.Deserialize<ImageManifest>(File.ReadAllBytes(Path.Combine(imageDirectory, FileName)), ImageFormat.Json)
        ?? throw new InvalidDataException($"{imageDirectory}: the manifest is null");

    /// <summary>The checksum the manifest of the image in <paramref name="imageDirectory"/> holds.</summary>
    public static string? Checksum(string imageDirectory) => ((ImageManifest)Read(imageDirectory)).Checksum;

    /// <summary>Writes <paramref name="manifest"/> (from <see cref="Read"/>) to the image with its checksum recomputed.</summary>
    public static void Write(string imageDirectory, object manifest)
    {
        var m = (ImageManifest)manifest;
        m.Checksum = ImageFormat.ManifestChecksum(m);
        File.WriteAllBytes(Path.Combine(imageDirectory, FileName), JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json));
    }
}
