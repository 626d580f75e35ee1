using System.Collections.Generic;
using System.Threading;

namespace SoftDirty.Images;

/// <summary>Verification of a whole chain: links, files, index and every page's checksum.</summary>
internal static class ImageVerifier
{
    public static MemoryImageTestResult Test(string path, CancellationToken cancel = default)
    {
        var problems = new List<ImageProblem>();
        ImageChain chain;
        try { chain = ImageReader.Chain(path); }
        catch (EngineException ex) when (ex.Error != EngineError.ResourceLimit) // a limit of this process is no verdict on the image: the caller gets it as an error
        {
            problems.Add(ex is ImageException ie ? new ImageProblem(ie.Error, ie.File, ie.Offset, ie.Message) : new ImageProblem(ex.Error, ex.Target?.ToString() ?? path, null, ex.Message));
            return new MemoryImageTestResult { Path = System.IO.Path.GetFullPath(path), Valid = false, Problems = new JoinedList<ImageProblem>(problems.ToArray(), MemoryImageTestResult.ProblemSeparator) };
        }
        using var opened = chain;
        ulong pages = 0;
        foreach (var image in chain)
        {
            try
            {
                if (image.Manifest.UnreadablePages > 0)
                    problems.Add(new ImageProblem(EngineError.ImageIncomplete, image.File(ImageFormat.ManifestFile), null,
                        $"{image.File(ImageFormat.ManifestFile)}: {image.Manifest.UnreadablePages} page(s) could not be read when this image was saved (present pages kept from other processes as memfd_secret is, served by the process's own userfaultfd, or in a mapping of device memory, VM_PFNMAP or VM_IO, which pagemap cannot show; or pages of memory that ends with the process, a memfd, shared anonymous or System V memory or a deleted file, that it did not map and whose object the saving user could not open): the image lacks them."));
                pages += ImageReader.VerifyPages(image, problems.Add, cancel);
            }
            catch (ImageException ex) { problems.Add(new ImageProblem(ex.Error, ex.File, ex.Offset, ex.Message)); }
            catch (EngineException ex) when (ex.Error != EngineError.ResourceLimit) { problems.Add(new ImageProblem(ex.Error, ex.Target?.ToString() ?? image.Path, null, ex.Message)); }
        }
        return new MemoryImageTestResult { Path = chain[^1].Path, Valid = problems.Count == 0, ImagesChecked = chain.Count, PagesChecked = pages, Problems = new JoinedList<ImageProblem>(problems.ToArray(), MemoryImageTestResult.ProblemSeparator) };
    }
}
