using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;

namespace SoftDirty.Images;

/// <summary>
/// Writes a memory image that arrives as a stream (file by file, in chunks) with the rules of a save: the
/// files go into a private folder next to the destination (<see cref="PrivateOutput"/>: O_EXCL|O_NOFOLLOW,
/// 0700/0600, links and foreign folders refused), the finished image is verified with its whole chain (an
/// increment's parent must already lie next to it, as its manifest names it) and only then renamed into place.
/// Disposed before <see cref="Finish"/>, or when verification fails, it leaves the destination as it was.
/// </summary>
internal sealed class ImageReceiver : IDisposable
{
    private static readonly HashSet<string> FileNames = new(StringComparer.Ordinal) { ImageFormat.ManifestFile, ImageFormat.IndexFile, ImageFormat.PagesFile };
    private readonly PrivateOutput _output;
    private readonly HashSet<string> _written = new(StringComparer.Ordinal);
    private FileStream? _file;
    // The path the current file will have (a FileStream made from a descriptor knows no name: "[Unknown]").
    private string _filePath = "";

    private ImageReceiver(PrivateOutput output) => _output = output;

    /// <summary>The bytes written so far.</summary>
    public ulong Bytes { get; private set; }

    /// <summary>Checks <paramref name="path"/> as a save does and starts the private folder.</summary>
    public static ImageReceiver Begin(string path) => new(PrivateOutput.Begin(path, "The memory image destination"));

    /// <summary>Starts the next file: one of the image's three file names, each once.</summary>
    public void StartFile(string name)
    {
        if (!FileNames.Contains(name))
            throw new EngineException(EngineError.InvalidArgument, $"'{name}' is not a file of a memory image (expected {ImageFormat.ManifestFile}, {ImageFormat.IndexFile} or {ImageFormat.PagesFile}).", name);
        if (!_written.Add(name))
            throw new EngineException(EngineError.InvalidArgument, $"The stream holds {name} twice.", name);
        CloseFile();
        _file = _output.Create(name);
        _filePath = _output.FinalPath(name);
    }

    /// <summary>Appends a chunk to the current file.</summary>
    public void Write(ReadOnlySpan<byte> chunk)
    {
        if (_file is null) throw new EngineException(EngineError.InvalidArgument, "The stream starts with data before a file name.", null);
        try { _file.Write(chunk); }
        catch (IOException ex) { throw _output.Abandoned(new EngineException(EngineError.ImageWriteError, $"Writing {_filePath} failed: {ex.Message}", _filePath, ex.HResult & 0xFFFF, ex)); }
        catch (EngineException ex) // refused before the kernel (the file-size limit: SizeLimitedFileStream)
        {
            var named = _output.Abandoned(ex);
            if (ReferenceEquals(named, ex)) throw;
            throw named;
        }
        Bytes += (ulong)chunk.Length;
    }

    /// <summary>
    /// Verifies the image with its chain and puts it in place; a chain that fails verification throws the first
    /// problem's error (ImageIncomplete, ImageCorrupt, ImageParentMismatch) and nothing is put in place.
    /// </summary>
    public MemoryImageInfo Finish(CancellationToken cancel)
    {
        CloseFile();
        var result = ImageVerifier.Test(_output.WorkPath, cancel);
        if (!result.Valid)
        {
            var first = result.Problems[0];
            throw _output.Abandoned(new EngineException(first.Error, $"The received image for {_output.Destination} does not verify: {first.Message}", _output.Destination));
        }
        // Described from the folder just verified, before it is put in place: read back after the commit, an EIO said
        // ImageReadError of an image that was in place and durable (round 26).
        ImageManifest manifest;
        long bytes;
        using (var image = ImageReader.Open(_output.WorkPath))
        {
            manifest = image.Manifest;
            bytes = MemoryImageInfo.From(image).FileBytes;
        }
        _output.Commit();
        return MemoryImageInfo.From(_output.Destination, manifest, bytes);
    }

    private void CloseFile()
    {
        if (_file is null) return;
        try { _file.Flush(true); }
        catch (IOException ex)
        {
            _file.Dispose();
            _file = null;
            throw _output.Abandoned(new EngineException(EngineError.ImageWriteError, $"Writing {_filePath} failed: {ex.Message}", _filePath, ex.HResult & 0xFFFF, ex));
        }
        finally { _file?.Dispose(); _file = null; }
    }

    public void Dispose()
    {
        _file?.Dispose();
        _output.Dispose();
    }
}
