using System.Runtime.InteropServices;

namespace SoftDirty.Injection;

/// <summary>The userfaultfd ABI write tracking uses (include/uapi/linux/userfaultfd.h), shared by the own-process and the injected registration.</summary>
internal static class UffdAbi
{
    public const ulong Api = 0xAA;
    /// <summary>_IOWR(0xAA, 0x3F, struct uffdio_api).</summary>
    public const uint IoctlApi = 0xC018AA3F;
    /// <summary>_IOWR(0xAA, 0x00, struct uffdio_register).</summary>
    public const uint IoctlRegister = 0xC020AA00;
    /// <summary>_IOR(0xAA, 0x01, struct uffdio_range).</summary>
    public const uint IoctlUnregister = 0x8010AA01;
    public const ulong FeatureWpUnpopulated = 1UL << 13, FeatureWpAsync = 1UL << 15;
    public const ulong ModeWp = 1UL << 1;
    /// <summary>UFFD_USER_MODE_ONLY: the only userfaultfd an unprivileged process may open when vm.unprivileged_userfaultfd is 0.</summary>
    public const int UserModeOnly = 1;
    /// <summary>What /proc/PID/fd/N links to for a userfaultfd.</summary>
    public const string FdLink = "anon_inode:[userfaultfd]";

    [StructLayout(LayoutKind.Sequential)] public struct ApiArg { public ulong Api, Features, Ioctls; }
    [StructLayout(LayoutKind.Sequential)] public struct RegisterArg { public ulong Start, Len, Mode, Ioctls; }
    [StructLayout(LayoutKind.Sequential)] public struct RangeArg { public ulong Start, Len; }
}
