using System;
using System.Collections.Generic;
using SoftDirty.Emulation;
using SoftDirty.Images;

namespace SoftDirty.Workflows;

/// <summary>
/// Restores a memory image chain into an emulated process: each mapping mapped at its address, each page
/// written. Only into free address space: a mapping of the image that overlaps memory the process has is
/// refused (ImageExists) before anything is mapped, as a non-empty destination directory is; so is an image with a
/// mapping above the emulated address space (PlatformNotSupported): the emulator models x86-64 with 4-level paging
/// (<see cref="EmulatedProcess.TaskSize"/>), while a process on a kernel with 5-level paging (LA57) or an arm64 52-bit space
/// maps up to 2^56 or 2^52, and its image is restored whole or not at all. The image's guard regions are installed again
/// (on a profile without them the restore is refused, PlatformNotSupported, before anything is mapped). Disposed
/// without <see cref="Complete"/> (a failure or Ctrl+C after <see cref="Prepare"/>), the mappings it made are
/// unmapped again: the process is left as it was. The process is held still (its lock) from <see cref="Prepare"/> until
/// <see cref="Complete"/> or disposal, on the restoring thread: another runspace that unmapped the restore's memory and
/// mapped its own there meanwhile had its mapping unmapped by a failed restore's undo (its data lost).
/// </summary>
internal sealed class EmulatedProcessRestoreTarget : IRestoreTarget, IDisposable
{
    private readonly List<(ImageMapping Mapping, Protection Prot)> _mappings = new();
    private readonly System.Threading.CancellationToken _cancel;
    private IDisposable? _still;
    private bool _complete;

    /// <param name="process">The emulated process restored into.</param>
    /// <param name="cancel">Ctrl+C: ends the wait for a process another runspace holds (a long workload).</param>
    public EmulatedProcessRestoreTarget(EmulatedProcess process, System.Threading.CancellationToken cancel = default)
    {
        Process = process;
        _cancel = cancel;
    }

    public EmulatedProcess Process { get; }
    public ulong PagesWritten { get; private set; }

    public void Prepare(IReadOnlyList<ImageMapping> mappings, int pageSize)
    {
        // The check and the mappings under the hold that lasts until Complete or Dispose: memory another runspace maps
        // meanwhile is either seen by the check (ImageExists) or mapped after the restore (elsewhere), never replaced by
        // MAP_FIXED, and what the restore mapped is still its own when a failure unmaps it.
        _still ??= Process.HoldStill(_cancel);
        try
        {
            foreach (var m in mappings)
                if (m.End > EmulatedProcess.TaskSize)
                    throw new EngineException(EngineError.PlatformNotSupported,
                        $"The image maps 0x{m.Start:x}-0x{m.End:x}, beyond the emulated user address space (x86-64 with 4-level paging, which ends at 0x{EmulatedProcess.TaskSize:x}): it was saved on a kernel with a larger one (5-level paging, or a 52-bit arm64 space), which the emulator does not model. Nothing was restored into emulated process {Process.ProcessId}; restore the image to a folder (Restore-MemoryImage -Destination) instead.",
                        m.Start);
            foreach (var m in mappings)
                if (m.Guards is { Count: > 0 } guards && !Process.Profile.HasGuardRegions)
                    throw new EngineException(EngineError.PlatformNotSupported,
                        $"The image's mapping 0x{m.Start:x}-0x{m.End:x} has guard regions (MADV_GUARD_INSTALL, first {guards[0]}), which emulated kernel {Process.Profile.Release} does not have: restored, they would be readable zeros. Nothing was restored into emulated process {Process.ProcessId}; restore into an emulated process of a profile with guard regions (6.18).",
                        m.Start);
            var existing = Process.ReadMappings(false);
            foreach (var m in mappings)
                foreach (var e in existing)
                    if (m.Start < e.End && e.Start < m.End)
                        throw new EngineException(EngineError.ImageExists,
                            $"Emulated process {Process.ProcessId} ({Process.Name}) already has memory at 0x{e.Start:x}-0x{e.End:x}, where the image maps 0x{m.Start:x}-0x{m.End:x}; a restore replaces nothing. Restore into a new emulated process (New-EmulatedProcess).", Process.ProcessId);
            foreach (var m in mappings)
            {
                var (prot, shared) = MemoryMapping.ParsePermissions(m.Permissions);
                // Mapped writable (anonymous: the bytes come from the image), the protection set in Complete.
                _mappings.Add((m, prot));
                Process.Mmap(m.Start, m.End - m.Start, Protection.Read | Protection.Write, shared ? MmapFlags.Shared | MmapFlags.Fixed : MmapFlags.Fixed);
            }
        }
        catch when (_mappings.Count == 0)
        {
            Release(); // refused before anything was mapped: nothing for Dispose to undo
            throw;
        }
    }

    public void WritePage(ulong address, ReadOnlySpan<byte> page)
    {
        Process.Write(address, page);
        PagesWritten++;
    }

    public void Complete()
    {
        // Guard regions again where the image recorded them (they hold no page): any access faults, as in the saved process.
        foreach (var (m, _) in _mappings)
            if (m.Guards is { } guards)
                foreach (var g in guards) Process.GuardInstall(g.Start, g.End - g.Start);
        foreach (var (m, prot) in _mappings)
            if (prot != (Protection.Read | Protection.Write)) Process.Mprotect(m.Start, m.End - m.Start, prot);
        _complete = true;
        Release();
    }

    /// <summary>A failure of the restore: undone by <see cref="Dispose"/> (an unmap cannot fail to leave anything).</summary>
    public Exception Abandoned(Exception error) => error;

    /// <summary>Unmaps what <see cref="Prepare"/> mapped unless the restore completed.</summary>
    public void Dispose()
    {
        if (!_complete)
        {
            _complete = true;
            foreach (var (m, _) in _mappings)
            {
                try { Process.Munmap(m.Start, m.End - m.Start); }
                catch (EngineException) { } // not mapped (Mmap refused it): nothing to undo
            }
        }
        Release();
    }

    private void Release()
    {
        _still?.Dispose();
        _still = null;
    }
}
