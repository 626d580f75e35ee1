using System;
using System.Globalization;
using System.IO;

namespace SoftDirty;

/// <summary>
/// The running kernel's page-table sizes, which follow its base page (not always 4 KiB: arm64 builds with 16 KiB or
/// 64 KiB pages, ppc64el with 64 KiB). A last-level table fills one page with 8-byte entries, so it maps
/// page size × page size / 8 bytes, the PMD size a transparent huge page takes: 2 MiB on 4 KiB pages, 32 MiB on
/// 16 KiB (measured on Debian's arm64-16k 7.2: hpage_pmd_size 33554432, and a MADV_HUGEPAGE write fault of an
/// aligned 2 MiB range there faults one 16 KiB page), 512 MiB on arm64's 64 KiB. The kernel's own figure,
/// /sys/kernel/mm/transparent_hugepage/hpage_pmd_size, wins where it is readable (ppc64's radix tables differ).
/// </summary>
internal static class PageTableGeometry
{
    /// <summary>A page-table entry of a 64-bit kernel.</summary>
    public const int EntryBytes = 8;

    /// <summary>The base page the emulator models (<see cref="Emulation.EmulatedProcess.PageBytes"/>).</summary>
    public const int EmulatedPageSize = (int)Emulation.EmulatedProcess.PageBytes;

    private const string PmdSizePath = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size";

    /// <summary>The bytes one last-level page table maps on a kernel of <paramref name="pageSize"/> pages.</summary>
    public static ulong TableSpan(int pageSize) => (ulong)pageSize * (ulong)(pageSize / EntryBytes);

    private static readonly Lazy<ulong> s_host = new(ReadHost);

    /// <summary>The running kernel's PMD size: hpage_pmd_size where readable and sane, else <see cref="TableSpan"/> of its page size.</summary>
    public static ulong HostTableSpan => s_host.Value;

    private static ulong ReadHost()
    {
        int pageSize = Environment.SystemPageSize;
        try
        {
            if (ulong.TryParse(File.ReadAllText(PmdSizePath).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var bytes)
                && bytes > (ulong)pageSize && (bytes & (bytes - 1)) == 0)
                return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return TableSpan(pageSize);
    }

    /// <summary>
    /// Refuses (PlatformNotSupported, the page size named) an emulator comparison with a kernel whose base page is not
    /// the emulator's: its page indexes, THP sizes and page-table spans would all differ, and the answers with them.
    /// </summary>
    public static void RequireEmulatedPageSize(int pageSize, string what)
    {
        if (pageSize != EmulatedPageSize)
            throw new EngineException(EngineError.PlatformNotSupported,
                $"{what}: this kernel's base page is {pageSize / 1024} KiB ({pageSize} bytes); the emulator models only {EmulatedPageSize / 1024} KiB pages, so it cannot stand for this kernel. Name a release profile ({string.Join(", ", Emulation.KernelProfile.Names)}) instead.",
                pageSize);
    }
}
