using System;

namespace SoftDirty.Tracking;

/// <summary>
/// A page source that can register its own memory for async write-protect (what userfaultfd's
/// UFFDIO_REGISTER MODE_WP with WP_ASYNC does for the calling process): the emulator. After registering,
/// PAGEMAP_SCAN with WriteProtectMatching|CheckWriteProtectAsync and mask = return = Written gets and resets.
/// </summary>
internal interface IAsyncWriteProtectSource
{
    /// <summary>Registers [start, end) for async write-protect; disposing the result unregisters it.</summary>
    IDisposable RegisterAsyncWriteProtect(ulong start, ulong end);
}
