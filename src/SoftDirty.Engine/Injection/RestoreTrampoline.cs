using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace SoftDirty.Injection;

/// <summary>
/// The few instructions that make syscall injection safe against the death of its tracer (x86-64). Every
/// injected call runs at <see cref="CallSite"/>, a syscall instruction of this trampoline, and falls through to
/// <see cref="Resume"/>, which puts the thread back exactly as it was stopped: it closes the descriptor named
/// in <see cref="UndoSlot"/> (a userfaultfd made but not yet recorded), sets the saved signal mask
/// (rt_sigprocmask), the saved flags (popfq from the trampoline's own page), every general register, the
/// stack pointer, and jumps to the saved instruction pointer. A syscall that was interrupted with a restart
/// code resumes restarted, as the kernel would restart it (rax = the call, rip over the syscall instruction).
/// While the tracer lives the thread never runs <see cref="Resume"/>: each call ends in a syscall-exit stop and
/// the tracer restores registers and mask itself. When the tracer is killed at any moment, the kernel detaches
/// and resumes the thread, which then runs the rest of the current call and this code: the process goes on
/// as if nothing happened. The code and its data live where nothing runs or reads them: past the end of the
/// loaded image in an executable private mapping (the vDSO's padding first, <see cref="FindSite"/>), written
/// through /proc/PID/task/TID/mem (copy-on-write: the image itself is untouched) and put back afterwards.
/// </summary>
internal static class RestoreTrampoline
{
    /// <summary>The trampoline's syscall instruction, where every injected call runs.</summary>
    public const int CallSite = 0;
    /// <summary>Where the thread goes after a call: the restore code (the syscall instruction is 2 bytes).</summary>
    public const int Resume = 2;

    /// <summary>
    /// Where the restore code's close and rt_sigprocmask return to (the instruction after each syscall): what
    /// seccomp_data.instruction_pointer says of them, as <see cref="Resume"/> says of a call at <see cref="CallSite"/>.
    /// </summary>
    public const int CloseReturn = 42, SigProcMaskReturn = 69;

    /// <summary>
    /// A value for <see cref="UndoSlot"/>: close what the call now running returns (a descriptor it makes), so
    /// that the descriptor is undone even when the tracer dies before it learns the number. A negative result
    /// (an errno) closes nothing.
    /// </summary>
    public const long UndoResult = -2;

    /// <summary>Bytes kept free on each side of a site, so that an instruction ending at an image's last byte is never touched.</summary>
    private const ulong Margin = 16;
    /// <summary>SIG_SETMASK for rt_sigprocmask, and sizeof(kernel sigset_t) on x86-64.</summary>
    private const int SigSetMask = 2, SigSetSize = 8;

    /// <summary>
    /// The general registers the restore code loads, as (index in user_regs_struct, x86-64 register number).
    /// rsp is loaded last (it first serves popfq), rip by the final indirect jump.
    /// </summary>
    private static readonly (int Index, int Register)[] Registers =
    {
        (10, 0), (11, 1), (12, 2), (5, 3), (4, 5), (13, 6), (14, 7), // rax rcx rdx rbx rbp rsi rdi
        (9, 8), (8, 9), (7, 10), (6, 11), (3, 12), (2, 13), (1, 14), (0, 15), // r8 .. r15
    };
    private const int StackPointer = 19, Flags = 18, InstructionPointer = 16, StackPointerRegister = 4;

    // Data slots, in 8-byte words after the code: undo descriptor, mask, flags, the registers above, rsp, rip.
    private const int CodeBytes = 208;
    public const int UndoSlot = CodeBytes;
    public const int MaskSlot = CodeBytes + 8;
    private const int FlagsSlot = CodeBytes + 16;
    private const int RegisterSlots = CodeBytes + 24;
    private static readonly int StackSlot = RegisterSlots + 8 * Registers.Length;
    private static readonly int JumpSlot = StackSlot + 8;
    /// <summary>The whole trampoline: code and data.</summary>
    public static readonly int Size = JumpSlot + 8;

    /// <summary>
    /// The trampoline for a thread stopped with <paramref name="regs"/> and signal mask <paramref name="mask"/>.
    /// <paramref name="restartCall"/>: the call to re-issue when the thread was interrupted in a syscall with a
    /// restart code (then rip is moved back over the syscall instruction); null when there is none.
    /// </summary>
    public static byte[] Build(ReadOnlySpan<ulong> regs, ulong mask, ulong? restartCall)
    {
        var code = new List<byte>(Size);
        code.AddRange(new byte[] { 0x0F, 0x05 }); // CallSite: syscall
        // Resume: the argument registers the two calls below do not set are zeroed (seccomp filters see all six,
        // and injection judged these calls with zeros there); every register is reloaded afterwards.
        code.AddRange(new byte[] { 0x31, 0xF6 });                  // xor esi, esi
        code.AddRange(new byte[] { 0x31, 0xD2 });                  // xor edx, edx
        code.AddRange(new byte[] { 0x45, 0x31, 0xD2 });            // xor r10d, r10d
        code.AddRange(new byte[] { 0x45, 0x31, 0xC0 });            // xor r8d, r8d
        code.AddRange(new byte[] { 0x45, 0x31, 0xC9 });            // xor r9d, r9d
        // if (undo == UndoResult) undo = rax; if (undo >= 0) close(undo)
        RipLoad(code, 0x8B, 7, UndoSlot);                          // mov rdi, [rip+undo]
        code.AddRange(new byte[] { 0x48, 0x83, 0xFF, unchecked((byte)UndoResult) }); // cmp rdi, UndoResult (imm8, sign-extended)
        code.AddRange(new byte[] { 0x48, 0x0F, 0x44, 0xF8 });      // cmove rdi, rax
        code.AddRange(new byte[] { 0x48, 0x85, 0xFF });            // test rdi, rdi
        code.AddRange(new byte[] { 0x78, 0x07 });                  // js over the next 7 bytes
        MovEax(code, (int)InjectionArchitecture.X64.Close);                                   // mov eax, close
        code.AddRange(new byte[] { 0x0F, 0x05 });                  // syscall
        ExpectOffset(code, CloseReturn);
        // rt_sigprocmask(SIG_SETMASK, &mask, NULL, 8)
        code.Add(0xBF); code.AddRange(Le32(SigSetMask));           // mov edi, SIG_SETMASK
        RipLoad(code, 0x8D, 6, MaskSlot);                          // lea rsi, [rip+mask]
        code.AddRange(new byte[] { 0x31, 0xD2 });                  // xor edx, edx
        code.AddRange(new byte[] { 0x41, 0xBA }); code.AddRange(Le32(SigSetSize)); // mov r10d, 8
        MovEax(code, (int)InjectionArchitecture.X64.SigProcMask);                             // mov eax, rt_sigprocmask
        code.AddRange(new byte[] { 0x0F, 0x05 });                  // syscall
        ExpectOffset(code, SigProcMaskReturn);
        RipLoad(code, 0x8D, StackPointerRegister, FlagsSlot);      // lea rsp, [rip+flags]
        code.Add(0x9D);                                            // popfq
        for (int i = 0; i < Registers.Length; i++)
            RipLoad(code, 0x8B, Registers[i].Register, RegisterSlots + 8 * i); // mov reg, [rip+slot]
        RipLoad(code, 0x8B, StackPointerRegister, StackSlot);      // mov rsp, [rip+rsp]
        code.AddRange(new byte[] { 0xFF, 0x25 }); AddDisplacement(code, JumpSlot); // jmp [rip+rip]
        if (code.Count > CodeBytes) throw new InvalidOperationException("The restore trampoline outgrew its code area.");
        while (code.Count < CodeBytes) code.Add(0xCC); // int3: never reached

        var bytes = new byte[Size];
        code.CopyTo(bytes);
        var data = bytes.AsSpan();
        BinaryPrimitives.WriteInt64LittleEndian(data[UndoSlot..], -1);
        BinaryPrimitives.WriteUInt64LittleEndian(data[MaskSlot..], mask);
        BinaryPrimitives.WriteUInt64LittleEndian(data[FlagsSlot..], regs[Flags]);
        for (int i = 0; i < Registers.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(data[(RegisterSlots + 8 * i)..], regs[Registers[i].Index]);
        BinaryPrimitives.WriteUInt64LittleEndian(data[StackSlot..], regs[StackPointer]);
        ulong rip = regs[InstructionPointer];
        if (restartCall is { } call)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data[RegisterSlots..], call); // rax: Registers[0]
            rip -= (ulong)InjectionArchitecture.X64.SyscallInstruction.Length;
        }
        BinaryPrimitives.WriteUInt64LittleEndian(data[JumpSlot..], rip);
        return bytes;
    }

    private static void ExpectOffset(List<byte> code, int offset)
    {
        if (code.Count != offset) throw new InvalidOperationException($"The restore trampoline's layout changed: a syscall returns to {code.Count}, not {offset}.");
    }

    /// <summary>REX.W [op] reg, [rip + disp32] where disp32 reaches <paramref name="target"/> (an offset in the trampoline).</summary>
    private static void RipLoad(List<byte> code, byte op, int register, int target)
    {
        code.Add((byte)(0x48 | (register >= 8 ? 0x04 : 0))); // REX.W, REX.R for r8..r15
        code.Add(op);
        code.Add((byte)(0x05 | ((register & 7) << 3)));      // ModRM: mod 00, rm 101 (rip-relative)
        AddDisplacement(code, target);
    }

    /// <summary>A disp32 that ends the current instruction, relative to the next one.</summary>
    private static void AddDisplacement(List<byte> code, int target) => code.AddRange(Le32(target - (code.Count + 4)));

    private static void MovEax(List<byte> code, int value) { code.Add(0xB8); code.AddRange(Le32(value)); }

    private static byte[] Le32(int value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, value);
        return b;
    }

    /// <summary>
    /// Candidate addresses for a trampoline of <see cref="Size"/> bytes: in each executable private mapping
    /// that is an ELF image (the vDSO first), the bytes after the last thing the image loads there (segments,
    /// section headers), with <see cref="Margin"/> to spare. <paramref name="read"/> reads the target's memory.
    /// </summary>
    public static IEnumerable<ulong> FindSite(IReadOnlyList<MemoryMapping> mappings, Func<ulong, int, byte[]?> read)
    {
        foreach (bool vdso in new[] { true, false })
            foreach (var m in mappings)
            {
                if ((m.Kind == MappingKind.Vdso) != vdso || m.Shared || (m.Protection & Protection.Execute) == 0) continue;
                if (!vdso && (m.Inode == 0 || m.Path.Length == 0)) continue;
                // The mapping that holds the image's ELF header: offset 0 of the same file (the vDSO is one mapping).
                MemoryMapping? head = vdso ? m : null;
                if (!vdso)
                    foreach (var h in mappings)
                        if (h.Offset == 0 && h.Inode == m.Inode && h.Device == m.Device && h.Path == m.Path && h.Start <= m.Start) { head = h; break; }
                if (head is null || TailOf(m, head, read) is not { } tail) continue;
                ulong site = (tail + Margin + 15) & ~15UL;
                if (site < m.End && m.End - site >= (ulong)Size) yield return site;
            }
    }

    /// <summary>ELF64 identification and the header fields read here (include/uapi/linux/elf.h).</summary>
    private const int ElfHeaderSize = 64, ProgramHeaderSize = 56, LoadSegment = 1;
    private static readonly byte[] ElfMagic = { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2 /* ELFCLASS64 */, 1 /* little-endian */ };

    /// <summary>The end of the last byte of <paramref name="m"/> the image uses, or null when it is not a readable ELF image.</summary>
    private static ulong? TailOf(MemoryMapping m, MemoryMapping head, Func<ulong, int, byte[]?> read)
    {
        if (read(head.Start, ElfHeaderSize) is not { } eh || !eh.AsSpan(0, ElfMagic.Length).SequenceEqual(ElfMagic)) return null;
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(eh.AsSpan(0x20));
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(eh.AsSpan(0x28));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(0x36)), phnum = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(0x38));
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(0x3A)), shnum = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(0x3C));
        if (phentsize != ProgramHeaderSize || phnum == 0 || phnum > 64 || phoff > head.Size - (ulong)(phnum * phentsize)) return null;
        if (read(head.Start + phoff, phnum * phentsize) is not { } ph) return null;
        ulong? bias = null, tail = null;
        for (int i = 0; i < phnum; i++)
        {
            var p = ph.AsSpan(i * phentsize, phentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(p) != LoadSegment) continue;
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]), vaddr = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
            ulong memsz = BinaryPrimitives.ReadUInt64LittleEndian(p[40..]);
            // The first load segment maps file offset 0 (page-aligned) where the header mapping starts.
            bias ??= head.Start - (vaddr - offset);
            ulong start = bias.Value + vaddr, end = start + memsz;
            if (end < start) return null;
            if (start < m.End && end > m.Start) tail = Math.Max(tail ?? 0, end);
        }
        if (tail is null) return null;
        // Section headers: bytes of the file that land in this mapping when it maps the file at their offset.
        ulong shEnd = shoff + (ulong)(shentsize * shnum);
        if (shnum > 0 && shEnd > m.Offset && shoff < m.Offset + m.Size)
            tail = Math.Max(tail.Value, m.Start + (shEnd - m.Offset));
        return tail;
    }
}
