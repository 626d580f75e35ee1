using System;
using System.IO;
using SoftDirty.Images;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>A fact that runs a process as another user (setpriv): skipped, with the reason, where the tests do not run as root or setpriv is missing.</summary>
public sealed class RootWithOtherUserFactAttribute : FactAttribute
{
    public RootWithOtherUserFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "needs Linux";
        else if (FileNative.Geteuid() != 0) Skip = "needs root: runs a target process as another user (uid " + RootWithOtherUser.Uid + ")";
        else if (!File.Exists("/usr/bin/setpriv") && !File.Exists("/bin/setpriv")) Skip = "needs setpriv (util-linux) to start a process as another user";
    }
}
