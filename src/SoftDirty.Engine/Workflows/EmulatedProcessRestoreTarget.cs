using System;
using System.Collections.Generic;
using SoftDirty.Emulation;
using SoftDirty.Images;

namespace SoftDirty.Workflows;

/// <summary>
/// Restores a memory image chain into an emulated process: each mapping mapped at its address, each page
/// written. Only into free address space: a mapping of the image that overlaps memory the process has is
/// refused (ImageExists) before anything is mapped, as a non-empty destination directory is. Disposed
/// without <see cref="Complete"/> (a failure or Ctrl+C after <see cref="Prepare"/>), the mappings it made are
/// unmapped again: the process is left as it was.
/// </summary>
internal sealed class EmulatedProcessRestoreTarget : IRestoreTarget, IDisposable
{
    private readonly List<(ImageMapping Mapping, Protection Prot)> _mappings = new();
    private bool _complete;

    public EmulatedProcessRestoreTarget(EmulatedProcess process) => Process = process;

    public EmulatedProcess Process { get; }
    public ulong PagesWritten { get; private set; }

    public void Prepare(IReadOnlyList<ImageMapping> mappings, int pageSize)
    {
        // The check and the mappings under one hold of the process's lock: memory another runspace maps meanwhile is
        // either seen by the check (ImageExists) or mapped after the restore's (elsewhere), never replaced by MAP_FIXED.
        lock (Process.MemoryLock)
        {
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
    }

    public void WritePage(ulong address, ReadOnlySpan<byte> page)
    {
        Process.Write(address, page);
        PagesWritten++;
    }

    public void Complete()
    {
        foreach (var (m, prot) in _mappings)
            if (prot != (Protection.Read | Protection.Write)) Process.Mprotect(m.Start, m.End - m.Start, prot);
        _complete = true;
    }

    /// <summary>Unmaps what <see cref="Prepare"/> mapped unless the restore completed.</summary>
    public void Dispose()
    {
        if (_complete) return;
        _complete = true;
        foreach (var (m, _) in _mappings)
        {
            try { Process.Munmap(m.Start, m.End - m.Start); }
            catch (EngineException) { } // not mapped (Mmap refused it): nothing to undo
        }
    }
}
