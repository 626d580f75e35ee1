using System.Collections.Generic;
using System.IO;
using SoftDirty.Images;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Round 26 (lead): a save, restore, receive or migration into a path whose folders did not exist made them (0700, like
/// mkdir -p) and left them behind when it failed (a failed Save-MemoryImage into a/b/img left a/b). The walk now lists
/// what it made (<see cref="SafeDirectory.Open"/>), and a command that fails takes those folders back while they are empty
/// (<see cref="SafeDirectory.RemoveMade"/>).
/// </summary>
public class MadeFoldersRound26Tests
{
    private const string What = "The test folder";

    [Fact]
    public void AWalkListsTheFoldersItMadeOutermostFirstAndTheyAreTakenBack()
    {
        using var scratch = new ScratchFolder("r26made");
        var made = new List<string>();
        var deep = Path.Combine(scratch.Path, "a", "b", "c");
        using (var dir = SafeDirectory.Open(deep, What, deep, create: true, made)) Assert.NotNull(dir);
        Assert.Equal(new[] { Path.Combine(scratch.Path, "a"), Path.Combine(scratch.Path, "a", "b"), deep }, made);
        // A second walk makes nothing: nothing of what is there is listed.
        var again = new List<string>();
        using (SafeDirectory.Open(deep, What, deep, create: true, again)) { }
        Assert.Empty(again);
        SafeDirectory.RemoveMade(made, What);
        Assert.False(Directory.Exists(Path.Combine(scratch.Path, "a")));
        Assert.True(Directory.Exists(scratch.Path));
    }

    [Fact]
    public void AMadeFolderThatGotSomethingIsKeptWithTheFoldersAboveIt()
    {
        using var scratch = new ScratchFolder("r26made");
        var made = new List<string>();
        var deep = Path.Combine(scratch.Path, "a", "b", "c");
        using (SafeDirectory.Open(deep, What, deep, create: true, made)) { }
        File.WriteAllBytes(Path.Combine(scratch.Path, "a", "b", "other"), new byte[] { 1 }); // another command's, meanwhile
        SafeDirectory.RemoveMade(made, What);
        Assert.False(Directory.Exists(deep));
        Assert.True(File.Exists(Path.Combine(scratch.Path, "a", "b", "other")));
    }

    [Fact]
    public void AWalkThatFailsTakesBackWhatItMade()
    {
        using var scratch = new ScratchFolder("r26made");
        File.WriteAllBytes(Path.Combine(scratch.Path, "file"), new byte[] { 1 });
        // x and y are made, then the walk climbs back and meets a file where a folder should be.
        var path = scratch.Path + "/x/y/../../file/z";
        var made = new List<string>();
        var e = Assert.Throws<EngineException>(() => SafeDirectory.Open(path, What, path, create: true, made));
        Assert.Equal(EngineError.InvalidArgument, e.Error);
        Assert.Empty(made);
        Assert.False(Directory.Exists(Path.Combine(scratch.Path, "x")));
    }

    [Fact]
    public void APrivateOutputNotPutInPlaceTakesBackTheFoldersItMade()
    {
        using var scratch = new ScratchFolder("r26made");
        var dest = Path.Combine(scratch.Path, "p", "q", "img");
        using (var output = PrivateOutput.Begin(dest, What))
        {
            using (var f = output.Create("manifest.json")) f.Write(new byte[] { 1 });
        }
        Assert.Empty(Directory.GetFileSystemEntries(scratch.Path));

        using (var output = PrivateOutput.Begin(dest, What))
        {
            using (var f = output.Create("manifest.json")) f.Write(new byte[] { 1 });
            output.Commit();
        }
        Assert.True(File.Exists(Path.Combine(dest, "manifest.json")));
    }

    [Fact]
    public void ACheckedRestoreDestinationThatIsNotFilledLeavesNoFolder()
    {
        using var scratch = new ScratchFolder("r26made");
        var dest = Path.Combine(scratch.Path, "r", "s", "t");
        using (var target = new FlatFileRestoreTarget(dest)) target.CheckDestination();
        Assert.Empty(Directory.GetFileSystemEntries(scratch.Path));
    }
}
