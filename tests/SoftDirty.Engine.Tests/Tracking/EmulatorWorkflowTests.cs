using System;
using System.IO;
using System.Linq;
using System.Threading;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>The workflows on the emulator, through the seams a real process lacks (EmulatedTarget).</summary>
[Collection(WorkflowCollection.Name)]
public sealed class EmulatorWorkflowTests : IDisposable
{
    private const int Pages = 48;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdemu-" + Guid.NewGuid().ToString("n"));
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private static (EmulatedTarget Target, ulong Base) NewTarget(int seed, bool softDirty = true, WorkloadPattern pattern = WorkloadPattern.Random)
    {
        var p = new EmulatedProcess("wf" + seed, KernelProfile.Get(KernelProfile.DefaultName, noSoftDirty: !softDirty));
        ulong a = p.Mmap(null, Pages * 4096UL, Protection.Read | Protection.Write).Start;
        return (new EmulatedTarget(p, new EmulatedWorkloadSpec { Address = a, Length = Pages * 4096UL, Pattern = pattern, AccessesPerSecond = 40, WriteRatio = 0.7, Seed = seed }), a);
    }

    private static byte[] Memory(IPageSource p, ulong a, int pages)
    {
        var b = new byte[pages * 4096];
        Assert.Equal(b.Length, p.ReadMemory(a, b));
        return b;
    }

    [Fact]
    public void TwoHundredRandomWorkloads_ChainRestoresEqualAFullImage_AndRestoreIntoAnEmulatedProcess()
    {
        var rng = new Random(2024);
        var methods = new[] { TrackingMethod.Auto, TrackingMethod.SoftDirty, TrackingMethod.WriteProtect, TrackingMethod.Hash };
        for (int w = 0; w < 200; w++)
        {
            var method = methods[w % methods.Length];
            var (t, a) = NewTarget(w, softDirty: method != TrackingMethod.Hash || w % 8 == 3, pattern: (WorkloadPattern)(w % 4));
            t.Advance(TimeSpan.FromSeconds(1), default);
            var root = Path.Combine(_dir, "w" + w);
            string? parent = null;
            int length = rng.Next(1, 7);
            for (int c = 0; c < length; c++)
            {
                if (c > 0)
                {
                    t.Advance(TimeSpan.FromSeconds(rng.NextDouble()), default);
                    if (rng.Next(4) == 0) t.Process.Write(a + (ulong)rng.Next(Pages) * 4096, 16, 0); // maybe identical bytes
                }
                var resolved = ImageTracking.Resolve(t, method);
                var parentManifest = parent is null ? null : ImageReader.Open(parent).Manifest;
                var candidates = ImageTracking.Candidates(t, resolved, parentManifest, null, verify: false, out var armed, out var epoch, null, default);
                var path = Path.Combine(root, "i" + c);
                ImageWriter.Save(t, path, parent, resolved, candidates, armed: armed, armedEpoch: epoch);
                parent = path;
            }
            var full = Path.Combine(root, "full");
            ImageWriter.Save(t, full, null, TrackingMethod.Hash, null);
            var expected = Memory(t, a, Pages);

            var flatChain = new FlatFileRestoreTarget(Path.Combine(root, "rc"));
            ImageRestorer.Restore(parent!, flatChain);
            var flatFull = new FlatFileRestoreTarget(Path.Combine(root, "rf"));
            ImageRestorer.Restore(full, flatFull);
            var region = flatChain.Results.Single(r => r.Mapping.Start <= a && a < r.Mapping.End);
            var bytes = File.ReadAllBytes(region.Path).AsSpan((int)(a - region.Mapping.Start), Pages * 4096).ToArray();
            Assert.True(expected.AsSpan().SequenceEqual(bytes), $"workload {w} ({method}, chain of {length}): the chain restores other bytes");
            Assert.True(File.ReadAllBytes(region.Path).AsSpan().SequenceEqual(File.ReadAllBytes(flatFull.Results.Single(r => r.Mapping.Start == region.Mapping.Start).Path)));

            if (w % 10 == 0)
            {
                var into = new EmulatedProcess("restored" + w);
                using var target = new EmulatedProcessRestoreTarget(into);
                ImageRestorer.Restore(parent!, target);
                Assert.True(expected.AsSpan().SequenceEqual(Memory(into, a, Pages)), $"workload {w}: restore into an emulated process differs");
            }
        }
    }

    [Theory]
    [InlineData(TrackingMethod.SoftDirty)]
    [InlineData(TrackingMethod.WriteProtect)]
    [InlineData(TrackingMethod.Hash)]
    public void Watch_RunsTheWorkloadInEmulatedTime_WithEveryMethod(TrackingMethod method)
    {
        var (t, a) = NewTarget(7, softDirty: true, pattern: WorkloadPattern.HotSet);
        t.Advance(TimeSpan.FromSeconds(2), default);
        using var tracker = DirtyTracker.Create(t, method);
        Assert.Equal(method, tracker.Method);
        var samples = DirtyWatch.Run(tracker, TimeSpan.FromSeconds(0.5), 4, null, CancellationToken.None).ToList();
        Assert.Equal(new[] { 0.5, 1.0, 1.5, 2.0 }, samples.Select(s => s.Elapsed).ToArray());
        Assert.Equal(2.0, t.EmulatedSeconds - 2.0, 6);
        Assert.All(samples, s => Assert.InRange(s.DirtyPages, 1UL, (ulong)Pages));
        Assert.All(samples, s => Assert.All(s.Ranges, r => Assert.True(r.Start >= a && r.End <= a + Pages * 4096UL)));
    }

    [Fact]
    public void RestoreIntoAnEmulatedProcess_FailingAfterItMapped_UnmapsWhatItMapped()
    {
        // Issue 13, second round: a failure or Ctrl+C between Prepare and Complete left the mappings behind.
        var into = new EmulatedProcess("half");
        var before = into.ReadMappings(false).Count;
        var layout = new[]
        {
            new ImageMapping { Start = 0x7f0000000000, End = 0x7f0000004000, Permissions = "rw-p" },
            new ImageMapping { Start = 0x7f0000010000, End = 0x7f0000012000, Permissions = "r--p" },
        };
        using (var target = new EmulatedProcessRestoreTarget(into))
        {
            target.Prepare(layout, 4096);
            target.WritePage(0x7f0000000000, new byte[4096]);
            Assert.Equal(before + 2, into.ReadMappings(false).Count);
        } // disposed without Complete
        Assert.Equal(before, into.ReadMappings(false).Count);

        using (var target = new EmulatedProcessRestoreTarget(into))
        {
            target.Prepare(layout, 4096);
            target.Complete();
        }
        Assert.Equal(before + 2, into.ReadMappings(false).Count);
        var clash = Assert.Throws<EngineException>(() => new EmulatedProcessRestoreTarget(into).Prepare(layout, 4096));
        Assert.Equal(EngineError.ImageExists, clash.Error);
    }

    [Fact]
    public void Auto_OnAnEmulatedProcessWithoutSoftDirty_ChoosesWriteProtect()
    {
        var (t, _) = NewTarget(3, softDirty: false);
        Assert.Equal(TrackingMethod.WriteProtect, DirtyTracker.Resolve(t, TrackingMethod.Auto, out var why));
        Assert.Contains("WriteProtect", why);
    }

    [Fact]
    public void PreCopy_OnAnEmulatedProcess_ConvergesAndFreezesOnceForTheFinalRound()
    {
        var (t, a) = NewTarget(11, softDirty: false, pattern: WorkloadPattern.HotSet);
        t.Process.Write(a, Pages * 4096UL);
        using var tracker = DirtyTracker.Create(t, TrackingMethod.Auto);
        var dest = Path.Combine(_dir, "mig");
        var records = PreCopyMigration.Run(tracker, new PreCopyOptions { Bandwidth = 1e6, MaxIterations = 10, StopThreshold = 2, Destination = dest }, CancellationToken.None).ToList();
        var summary = records.OfType<PreCopySummary>().Single();
        Assert.Equal(TrackingMethod.WriteProtect, summary.Method);
        Assert.True(summary.Converged, summary.Reason);
        Assert.False(t.Frozen);
        Assert.True(ImageVerifier.Test(summary.FinalImage!).Valid);
        var flat = new FlatFileRestoreTarget(Path.Combine(_dir, "r"));
        ImageRestorer.Restore(summary.FinalImage!, flat);
        var region = flat.Results.Single(r => r.Mapping.Start <= a && a < r.Mapping.End);
        Assert.True(Memory(t, a, Pages).AsSpan().SequenceEqual(File.ReadAllBytes(region.Path).AsSpan((int)(a - region.Mapping.Start), Pages * 4096)));
    }
}
