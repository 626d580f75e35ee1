using System;
using System.IO;

namespace SoftDirty;

/// <summary>
/// A failed read of a /proc file that answers a question about a process (who shares its memory, whether KSM or an io_uring
/// touched it): gone or hidden reads as "no" where the caller says so; this process out of descriptors or memory says
/// nothing of the process, and read as "no" it let a save trust soft-dirty bits a KSM merge, a kernel write or another
/// process's clear had taken (round 28). Such a failure is ResourceLimit.
/// </summary>
internal static class ProcReadFailure
{
    /// <summary>Throws ResourceLimit where <paramref name="failure"/> is this process's limit (.NET's HResult is the errno); returns otherwise.</summary>
    public static void ThrowIfLimit(Exception failure, string path)
    {
        if (failure is IOException io && Errno.IsResourceLimit(io.HResult))
            throw ResourceLimitError.For($"Reading {path} failed", io.HResult, "Nothing is known of the process from it, so nothing was done", path, io);
    }
}
