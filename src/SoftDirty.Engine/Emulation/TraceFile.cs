using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading;
using SoftDirty.Images;

namespace SoftDirty;

/// <summary>
/// A workload trace to replay (Invoke-EmulatedWorkload -TracePath), read so that it can never hang or fill
/// memory: only a regular file or a pipe (a FIFO, /dev/stdin of a pipeline, a process substitution) is
/// accepted, opened O_NONBLOCK so that a FIFO nobody writes to does not block the open; while a pipe is
/// empty (or has had no writer yet) the reader waits in short sleeps that check cancellation, and a line
/// longer than <see cref="MaxLineBytes"/> (a device such as /dev/zero has no line end) is a FormatException.
/// </summary>
internal sealed class TraceFile : IDisposable
{
    /// <summary>The longest trace line: "write,0x" and two 64-bit numbers need under 60 bytes.</summary>
    public const int MaxLineBytes = 4096;
    private const int BufferBytes = 64 * 1024;
    private const uint FifoType = 0x1000; // S_IFIFO
    private static readonly TimeSpan PipeWait = TimeSpan.FromMilliseconds(10);

    private int _fd;
    private readonly bool _pipe;
    /// <summary>The path it was opened by (for messages).</summary>
    private readonly string _path;

    private TraceFile(int fd, bool pipe, string path)
    {
        _fd = fd;
        _pipe = pipe;
        _path = path;
    }

    /// <summary>
    /// Opens <paramref name="path"/>: FileNotFoundException when missing, UnauthorizedAccessException when
    /// unreadable, InvalidArgument (an EngineException) for a directory, device or socket; TraceReadError or ResourceLimit
    /// for another failure.
    /// </summary>
    public static TraceFile Open(string path)
    {
        int fd = Native.Open(path, Native.O_RDONLY | Native.O_NONBLOCK | Native.O_CLOEXEC);
        if (fd < 0)
        {
            int e = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (e == Errno.ENOENT) throw new FileNotFoundException($"No trace file '{path}'.", path);
            if (e is Errno.EACCES or Errno.EPERM) throw new UnauthorizedAccessException($"{Errno.Describe(e)}.");
            throw ReadFailure(path, "Opening", e);
        }
        var st = FileNative.Fstat(fd, out int serr);
        uint type = st?.Type ?? 0;
        if (type != FileNative.S_IFREG && type != FifoType)
        {
            Native.Close(fd);
            if (st is null) throw ReadFailure(path, "Examining (fstat)", serr);
            throw new EngineException(EngineError.InvalidArgument, $"The trace {path} is {(type == FileNative.S_IFDIR ? "a directory" : "a device or socket")}, not a file or a pipe.", path);
        }
        return new TraceFile(fd, type == FifoType, path);
    }

    /// <summary>
    /// A failed system call on the trace: ResourceLimit (out of descriptors or memory: nothing is known of the file), else
    /// TraceReadError naming the path and the errno. Never InvalidArgument: the trace may be fine (round 30; a disk's EIO was
    /// said as a bad argument).
    /// </summary>
    private static EngineException ReadFailure(string path, string doing, int errno) =>
        Errno.IsResourceLimit(errno)
            ? ResourceLimitError.For($"{doing} the trace {path} failed", errno, "Nothing was replayed from it past that point", path)
            : new EngineException(EngineError.TraceReadError, $"{doing} the trace {path} failed: {Errno.Describe(errno)}.", path, errno);

    /// <summary>The trace's lines (UTF-8, without their line end), read as they come.</summary>
    public IEnumerable<string> Lines(CancellationToken cancel)
    {
        var buffer = new byte[BufferBytes];
        var line = new List<byte>();
        bool writerSeen = !_pipe; // a pipe that reads 0 before any writer came is waited on, not at its end
        int lineNumber = 0;
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            int n = Read(buffer, out int e);
            if (n < 0)
            {
                if (e == Errno.EINTR) continue;
                if (e != Errno.EAGAIN) throw ReadFailure(_path, "Reading", e);
                writerSeen = true; // a writer holds the pipe open: wait for its data
                Thread.Sleep(PipeWait);
                continue;
            }
            if (n == 0)
            {
                if (writerSeen) break;
                Thread.Sleep(PipeWait);
                continue;
            }
            writerSeen = true;
            for (int i = 0; i < n; i++)
            {
                byte b = buffer[i];
                if (b != (byte)'\n')
                {
                    if (line.Count >= MaxLineBytes) throw new FormatException($"line {lineNumber + 1} is longer than {MaxLineBytes} bytes: not a trace.");
                    line.Add(b);
                    continue;
                }
                yield return Decode(line, lineNumber++ == 0);
                line.Clear();
            }
        }
        if (line.Count > 0) yield return Decode(line, lineNumber == 0);
    }

    private unsafe int Read(byte[] buffer, out int errno)
    {
        nint n;
        fixed (byte* p = buffer) n = Native.Read(_fd, p, (nuint)buffer.Length);
        errno = n < 0 ? System.Runtime.InteropServices.Marshal.GetLastPInvokeError() : 0;
        return (int)n;
    }

    /// <summary>A line's bytes as text: a UTF-8 byte order mark on the first line and a CR before the LF dropped, as StreamReader did.</summary>
    private static string Decode(List<byte> line, bool first)
    {
        var bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(line);
        if (first && bytes.StartsWith(Encoding.UTF8.Preamble)) bytes = bytes[Encoding.UTF8.Preamble.Length..];
        if (bytes.Length > 0 && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
        return Encoding.UTF8.GetString(bytes);
    }

    public void Dispose()
    {
        if (_fd >= 0) { Native.Close(_fd); _fd = -1; }
    }
}
