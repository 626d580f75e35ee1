using System.Linq;
using SoftDirty.Images;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 22: the kernel's own mappings hold no data of the process to save or watch. [uprobes] (the page the kernel maps
/// into a process that hits a uprobe: VM_IO, unreadable through /proc/PID/mem) was read, counted unreadable, and made every
/// image of a traced process incomplete; a file that happens to be named so is the process's and is read.
/// </summary>
public class KernelMappingsRound22Tests
{
    private const string Maps =
        "55d0c0a00000-55d0c0a01000 rw-p 00000000 00:00 0                          [heap]\n" +
        "7f0b3a250000-7f0b3a251000 rw-p 00000000 00:00 0 \n" +
        "7f0b3a251000-7f0b3a252000 rw-p 00000000 fe:00 4242                       [uprobes]\n" +
        "7ffd1000c000-7ffd10010000 r--p 00000000 00:00 0                          [vvar]\n" +
        "7ffd10010000-7ffd10012000 r--p 00000000 00:00 0                          [vvar_vclock]\n" +
        "7ffd10012000-7ffd10014000 r-xp 00000000 00:00 0                          [vdso]\n" +
        "7ffffffff000-800000000000 --xp 00000000 00:00 0                          [uprobes]\n" +
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";

    [Fact]
    public void DataSpansLeaveOutTheKernelsUprobesPageAndKeepAFileOfThatName()
    {
        var spans = PageWalk.DataSpans(MapsParser.Parse(Maps));
        Assert.Equal(new[] { 0x55d0c0a00000UL, 0x7f0b3a250000UL, 0x7f0b3a251000UL, 0x7ffd10012000UL }, spans.Select(s => s.Start).ToArray());
    }

    [Fact]
    public void TheUprobesPageIsKnownByItsNameWithoutAFile()
    {
        var all = MapsParser.Parse(Maps);
        Assert.True(PageWalk.IsUprobes(all.Single(m => m.Start == 0x7ffffffff000UL)));
        Assert.False(PageWalk.IsUprobes(all.Single(m => m.Start == 0x7f0b3a251000UL)));
    }

    [Fact]
    public void AWatchReadsSmapsAgainOnlyWhenAMappingThatMayBeDeviceMemoryChanges()
    {
        const string Ring = "7f0b3a244000-7f0b3a24d000 rw-s 00000000 00:10 1039                       anon_inode:[perf_event]\n";
        // The kernel's own mappings and anonymous memory are no candidates (the file named [uprobes] is one: a pseudo path).
        string plain = string.Join('\n', Maps.Split('\n').Where(l => !l.Contains("fe:00"))) + "\n";
        var without = MapsParser.Parse(plain);
        var with = MapsParser.Parse(plain + Ring);
        var moved = MapsParser.Parse(plain + Ring.Replace("7f0b3a244000-7f0b3a24d000", "7f0b3a245000-7f0b3a24e000"));
        Assert.Null(DeviceMappings.CandidateKey(without, null));
        Assert.NotNull(DeviceMappings.CandidateKey(with, null));
        Assert.Equal(DeviceMappings.CandidateKey(with, null), DeviceMappings.CandidateKey(MapsParser.Parse(plain + Ring), null));
        Assert.NotEqual(DeviceMappings.CandidateKey(with, null), DeviceMappings.CandidateKey(moved, null));
        Assert.Null(DeviceMappings.CandidateKey(with, m => m.Kind != MappingKind.File));
    }
}
