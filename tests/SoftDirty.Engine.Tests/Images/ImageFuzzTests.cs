using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;
using Xunit.Abstractions;

namespace SoftDirty.Tests.Images;

/// <summary>
/// A seeded property test of the image reader: mutations of manifests and index files (bytes flipped, cut,
/// fields set to null, to other types, to extreme or shifted values, entries removed or duplicated; half of
/// the manifest mutants with their checksum recomputed, as an editor that knows the format would) must each
/// give "valid and restores identical" or a clean EngineException: never another exception, a hang or a
/// silently different restore.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageFuzzTests : IDisposable
{
    private const int Mutations = 10_000, Seed = 20261201;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdfuzz-" + Guid.NewGuid().ToString("n"));
    private readonly ITestOutputHelper _out;
    public ImageFuzzTests(ITestOutputHelper output) => _out = output;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>What a restore produced: the layout and every page's hash, in order.</summary>
    private sealed class CapturingTarget : IRestoreTarget
    {
        public readonly StringBuilder Text = new();
        public void Prepare(IReadOnlyList<ImageMapping> mappings, int pageSize)
        {
            foreach (var m in mappings) Text.Append(m).Append(';');
            Text.Append(pageSize).Append('|');
        }
        public void WritePage(ulong address, ReadOnlySpan<byte> page) => Text.Append(address).Append('=').Append(PageHash.Fast128(page)).Append(';');
        public void Complete() => Text.Append("done");
        public Exception Abandoned(Exception error) => error;
    }

    private static string? TryRestore(string leaf, out EngineException? error)
    {
        error = null;
        var t = new CapturingTarget();
        try { ImageRestorer.Restore(leaf, t); return t.Text.ToString(); }
        catch (EngineException ex) { error = ex; return null; }
    }

    [Fact]
    public void MutatedManifestsAndIndexes_AreValidAndRestoreIdentical_OrACleanError()
    {
        // A chain: a full image and an increment with data, zero and inherited pages.
        using var p = new FakeProcess(12, softDirty: false, seed: 7);
        for (int i = 0; i < 12; i++) if (i % 3 != 2) p.WriteRandom(i);
        string c0 = Path.Combine(_dir, "c0"), c1 = Path.Combine(_dir, "c1");
        ImageWriter.Save(p, c0, null, TrackingMethod.Hash, null);
        p.WriteRandom(2); p.Discard(4); p.WriteRandom(7);
        ImageWriter.Save(p, c1, c0, TrackingMethod.Hash, null);
        var parent = Normalize(c0, 1, null);
        Normalize(c1, 2, parent);
        var expected = TryRestore(c1, out var e0) ?? throw e0!;

        var files = new[] { Path.Combine(c0, ImageFormat.ManifestFile), Path.Combine(c1, ImageFormat.ManifestFile), Path.Combine(c0, ImageFormat.IndexFile), Path.Combine(c1, ImageFormat.IndexFile) };
        var originals = files.Select(File.ReadAllBytes).ToArray();
        var rng = new Random(Seed);
        int valid = 0, clean = 0, recomputed = 0;
        var errors = new Dictionary<EngineError, int>();
        var clock = Stopwatch.StartNew();
        for (int n = 0; n < Mutations; n++)
        {
            int f = rng.Next(files.Length);
            bool manifest = f < 2;
            bool recompute = manifest && rng.Next(2) == 0;
            byte[] mutant = manifest && rng.Next(3) > 0 ? MutateJson(originals[f], rng, recompute) : MutateBytes(originals[f], rng);
            if (recompute) recomputed++;
            File.WriteAllBytes(files[f], mutant);
            try
            {
                MemoryImageTestResult verdict;
                string? restored;
                EngineException? error;
                try
                {
                    verdict = ImageVerifier.Test(c1);
                    restored = TryRestore(c1, out error);
                }
                catch (Exception ex) when (ex is not EngineException)
                {
                    throw new Xunit.Sdk.XunitException($"mutation {n} of {files[f]} threw {ex.GetType()}: {ex.Message}\n{Encoding.UTF8.GetString(mutant)}");
                }
                if (verdict.Valid)
                {
                    Assert.True(restored is not null, $"mutation {n}: valid, but the restore failed: {error?.Message}");
                    // A byte-level edit that leaves the chain valid must restore the same memory; an edit with the
                    // checksum recomputed may describe another layout, but then it is a consistent one.
                    if (!recompute) Assert.True(restored == expected, $"mutation {n} of {files[f]}: valid but restores different memory");
                    valid++;
                }
                else if (restored is not null && verdict.Problems.All(q => q.Message.Contains("could not be read")))
                    clean++; // an image that says it lacks pages: Test-MemoryImage reports it, a restore writes what there is
                else
                {
                    Assert.True(restored is null, $"mutation {n} of {files[f]}: Test-MemoryImage says invalid ({verdict}), yet the restore succeeded");
                    errors[error!.Error] = errors.GetValueOrDefault(error.Error) + 1;
                    clean++;
                }
            }
            finally { File.WriteAllBytes(files[f], originals[f]); }
        }
        _out.WriteLine($"{Mutations} mutations in {clock.Elapsed.TotalSeconds:F1} s: {valid} valid, {clean} clean errors ({string.Join(", ", errors.Select(kv => $"{kv.Key} {kv.Value}"))}); {recomputed} with the checksum recomputed.");
        Assert.Equal(Mutations, valid + clean);
        Assert.True(clean > Mutations / 2, "most mutations must be caught");
    }

    /// <summary>Fixed ids, time and identity (checksums recomputed), so the same seed mutates the same bytes in every run.</summary>
    private static ImageManifest Normalize(string dir, int n, ImageManifest? parent)
    {
        var file = Path.Combine(dir, ImageFormat.ManifestFile);
        var m = JsonSerializer.Deserialize<ImageManifest>(File.ReadAllBytes(file), ImageFormat.Json)!;
        m.Id = new Guid(n, 0, 0, new byte[8]);
        m.Created = new DateTime(2026, 12, 1, 0, 0, 0, DateTimeKind.Utc);
        m.ProcessIdentity = "emulated:fuzz";
        if (parent is not null) { m.Parent!.Id = parent.Id; m.Parent.Checksum = parent.Checksum; }
        m.Checksum = ImageFormat.ManifestChecksum(m);
        File.WriteAllBytes(file, JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json));
        return m;
    }

    private static byte[] MutateBytes(byte[] original, Random rng)
    {
        var b = (byte[])original.Clone();
        switch (rng.Next(4))
        {
            case 0: b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8)); return b;
            case 1: return b.AsSpan(0, rng.Next(b.Length)).ToArray();
            case 2: { var x = b.ToList(); x.InsertRange(rng.Next(b.Length), Enumerable.Repeat((byte)rng.Next(256), rng.Next(1, 48))); return x.ToArray(); }
            default: { int at = rng.Next(Math.Max(1, b.Length - 8)); BitConverter.GetBytes(Extreme(rng)).CopyTo(b, Math.Min(at, b.Length - 8)); return b; }
        }
    }

    private static ulong Extreme(Random rng) => rng.Next(6) switch
    {
        0 => 0, 1 => ulong.MaxValue, 2 => ulong.MaxValue - 4095, 3 => 1UL << 63, 4 => 4096, _ => (ulong)rng.NextInt64(),
    };

    private static readonly JsonNode?[] Replacements =
    {
        null, JsonValue.Create(0), JsonValue.Create(-1), JsonValue.Create(4096), JsonValue.Create(1 << 20), JsonValue.Create(1 << 30),
        JsonValue.Create(ulong.MaxValue), JsonValue.Create(ulong.MaxValue - 4095), JsonValue.Create(long.MaxValue), JsonValue.Create("x"), JsonValue.Create(""),
        JsonValue.Create(true), JsonValue.Create(1.5), JsonValue.Create("../c0"), JsonValue.Create("../c1"), JsonValue.Create("/etc"),
    };

    private static byte[] MutateJson(byte[] original, Random rng, bool recompute)
    {
        var root = JsonNode.Parse(original)!;
        var nodes = new List<(JsonNode Parent, object Key)>();
        Collect(root, nodes);
        var (parent, key) = nodes[rng.Next(nodes.Count)];
        int op = rng.Next(5);
        JsonNode? current = parent is JsonObject o0 ? o0[(string)key] : ((JsonArray)parent)[(int)key];
        if (op == 0 && current is JsonValue v && v.TryGetValue<ulong>(out var u))
        {
            // Shift a number by a page, or off by one.
            ulong d = rng.Next(2) == 0 ? 4096UL : 1UL;
            Set(parent, key, JsonValue.Create(rng.Next(2) == 0 ? unchecked(u + d) : unchecked(u - d)));
        }
        else if (op == 1 && parent is JsonArray a1) a1.RemoveAt((int)key);
        else if (op == 1 && parent is JsonObject o1) o1.Remove((string)key);
        else if (op == 2 && parent is JsonArray a2 && current is not null) a2.Insert((int)key, current.DeepClone());
        else Set(parent, key, Replacements[rng.Next(Replacements.Length)]?.DeepClone());
        var bytes = Encoding.UTF8.GetBytes(root.ToJsonString());
        if (!recompute) return bytes;
        try
        {
            var m = JsonSerializer.Deserialize<ImageManifest>(bytes, ImageFormat.Json);
            if (m is null) return bytes;
            m.Checksum = ImageFormat.ManifestChecksum(m);
            return JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException or ArgumentException or NullReferenceException) { return bytes; }
    }

    private static void Set(JsonNode parent, object key, JsonNode? value)
    {
        if (parent is JsonObject o) o[(string)key] = value;
        else ((JsonArray)parent)[(int)key] = value;
    }

    private static void Collect(JsonNode node, List<(JsonNode, object)> into)
    {
        if (node is JsonObject o)
            foreach (var (k, v) in o.ToList()) { into.Add((o, k)); if (v is not null) Collect(v, into); }
        else if (node is JsonArray a)
            for (int i = 0; i < a.Count; i++) { into.Add((a, i)); if (a[i] is { } v) Collect(v, into); }
    }
}
