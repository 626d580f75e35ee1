using System;
using System.Collections.Generic;

namespace SoftDirty.Images;

/// <summary>
/// An image chain, opened: the full image first, the image asked for last. Each image holds its folder open (a
/// descriptor), so the chain is disposed when it has been read: a session that reads many images keeps no
/// descriptors waiting for the garbage collector.
/// </summary>
internal sealed class ImageChain : List<OpenedImage>, IDisposable
{
    public void Dispose()
    {
        foreach (var image in this) image.Dispose();
    }
}
