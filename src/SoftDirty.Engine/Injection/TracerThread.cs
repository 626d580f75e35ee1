using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;

namespace SoftDirty.Injection;

/// <summary>
/// The thread that makes the ptrace requests of a command: one of its own, for as long as the command holds a thread of
/// another process (a -Freeze, a syscall injection), and ended with the last of them. A tracer is a thread, not a process,
/// and the kernel lets go of every tracee of a thread that exits (exit_ptrace: detached, its pending PTRACE_INTERRUPT
/// dropped, a process stopped by job control back in its stop). A thread this PowerShell cannot let go (PTRACE_DETACH
/// needs a stopped tracee, and one asleep in the kernel, such as a read a FUSE server holds, stops only once it leaves it)
/// is let go that way when the command ends: made by the command's own thread, it stayed traced for as long as the
/// PowerShell ran, and stopped for good once it woke (round 31: a -Freeze save that timed out on such a thread).
/// </summary>
internal sealed class TracerThread
{
    /// <summary>The tracer of each thread that holds a ptrace scope now (by managed thread id).</summary>
    private static readonly Dictionary<int, TracerThread> ByCaller = new();

    /// <summary>How long <see cref="Leave"/> waits for the kernel to end the thread (and so let go of its tracees).</summary>
    private static readonly TimeSpan EndTimeout = TimeSpan.FromSeconds(5);

    private readonly int _caller;
    private readonly Thread _thread;
    private readonly object _gate = new(), _sync = new();
    private volatile bool _pending, _done;

    /// <summary>
    /// How many turns either side spins for the other before it sleeps: a request is a few microseconds of work, and an
    /// injection makes thousands, each handed over and back (a sleep and a wake-up each way would double its time).
    /// </summary>
    private const int SpinTurns = 64;
    private int _users;
    private bool _ending;
    private int _osThreadId;
    private Func<nint>? _work;
    private nint _result;
    private int _errno;
    private System.Runtime.ExceptionServices.ExceptionDispatchInfo? _failure;

    private TracerThread(int caller)
    {
        _caller = caller;
        _thread = new Thread(Serve) { IsBackground = true, Name = "SoftDirty tracer" };
    }

    /// <summary>
    /// Starts a ptrace scope of the calling thread: its tracer, started now where it has none. End each with
    /// <see cref="Leave"/> (from any thread). ResourceLimit where the system refuses a thread.
    /// </summary>
    public static TracerThread Enter()
    {
        int caller = Environment.CurrentManagedThreadId;
        lock (ByCaller)
        {
            if (!ByCaller.TryGetValue(caller, out var tracer))
            {
                tracer = new TracerThread(caller);
                ThreadLimit.Start(tracer._thread, "Starting the thread that traces the process");
                ByCaller[caller] = tracer;
            }
            tracer._users++;
            return tracer;
        }
    }

    /// <summary>Ends a scope <see cref="Enter"/> started; the last one ends the thread, which lets go of whatever it still traces.</summary>
    public void Leave()
    {
        lock (ByCaller)
        {
            if (--_users > 0) return;
            ByCaller.Remove(_caller);
        }
        lock (_sync)
        {
            _ending = true;
            Monitor.PulseAll(_sync);
        }
        _thread.Join();
        // The managed thread has returned; the kernel lets go of its tracees as the thread exits, and only then does
        // /proc list it no more (exit_ptrace comes before the thread is released).
        var task = string.Create(CultureInfo.InvariantCulture, $"/proc/self/task/{_osThreadId}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (_osThreadId > 0 && Directory.Exists(task) && clock.Elapsed < EndTimeout) Thread.Sleep(1);
    }

    /// <summary>The tracer of the calling thread's ptrace scope; null outside one.</summary>
    public static TracerThread? OfCaller()
    {
        lock (ByCaller) return ByCaller.TryGetValue(Environment.CurrentManagedThreadId, out var tracer) ? tracer : null;
    }

    /// <summary>One ptrace request, made by this thread; its errno is the caller's last P/Invoke error afterwards.</summary>
    public nint Call(long request, int tid, nint address, nint data) => Run(() => Ptrace.Request(request, tid, address, data));

    /// <summary>
    /// Runs <paramref name="work"/> (a system call whose errno counts) on this thread and returns its result; its errno is the
    /// caller's last P/Invoke error afterwards. For what the kernel allows the tracer alone: ptrace requests, and writes to a
    /// tracee's code through /proc/PID/mem where FOLL_FORCE is granted only to its tracer (proc_mem.force_override=ptrace).
    /// </summary>
    public nint Run(Func<nint> work)
    {
        if (Environment.CurrentManagedThreadId == _thread.ManagedThreadId) return work();
        lock (_gate)
        {
            lock (_sync)
            {
                _work = work;
                _done = false;
                _pending = true;
                Monitor.PulseAll(_sync);
            }
            Spin(() => _done);
            lock (_sync)
            {
                while (!_done) Monitor.Wait(_sync);
                _work = null;
            }
            if (_failure is { } failure)
            {
                _failure = null;
                failure.Throw();
            }
            Marshal.SetLastPInvokeError(_errno);
            return _result;
        }
    }

    private void Serve()
    {
        _osThreadId = GetThreadId();
        while (true)
        {
            Func<nint> work;
            Spin(() => _pending || _ending);
            lock (_sync)
            {
                while (!_pending && !_ending) Monitor.Wait(_sync);
                if (!_pending) return;
                work = _work!;
            }
            try
            {
                _result = work();
                _errno = Marshal.GetLastPInvokeError();
            }
            catch (Exception ex) { _failure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex); }
            lock (_sync)
            {
                _pending = false;
                _done = true;
                Monitor.PulseAll(_sync);
            }
        }
    }

    /// <summary>Spins (never sleeping) until <paramref name="done"/> or <see cref="SpinTurns"/> turns have passed.</summary>
    private static void Spin(Func<bool> done)
    {
        var spin = new SpinWait();
        for (int turn = 0; turn < SpinTurns && !done(); turn++) spin.SpinOnce(sleep1Threshold: -1);
    }

    /// <summary>
    /// The kernel's id of the calling thread, from /proc/thread-self ("PID/task/TID"); 0 where it cannot be read (then
    /// <see cref="Leave"/> does not wait for the thread to leave /proc). Not gettid(3): glibc has it only since 2.30.
    /// </summary>
    private static int GetThreadId()
    {
        try
        {
            var target = new DirectoryInfo("/proc/thread-self").LinkTarget;
            int slash = target?.LastIndexOf('/') ?? -1;
            return slash >= 0 && int.TryParse(target.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int tid) ? tid : 0;
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }
}
