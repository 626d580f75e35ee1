using System;
using System.Collections.Generic;

namespace SoftDirty.Images;

/// <summary>Where a restore writes pages: flat files per mapping (<see cref="FlatFileRestoreTarget"/>) or an emulated process.</summary>
internal interface IRestoreTarget
{
    /// <summary>The layout to restore into (the latest image's mappings).</summary>
    void Prepare(IReadOnlyList<ImageMapping> mappings, int pageSize);
    /// <summary>One page's bytes at its address (inside one of the mappings); pages come in ascending address order.</summary>
    void WritePage(ulong address, ReadOnlySpan<byte> page);
    void Complete();
    /// <summary>
    /// After a failure between <see cref="Prepare"/> and <see cref="Complete"/>: takes back at once what the target made, and
    /// returns <paramref name="error"/>, or an error that names what it could not take back.
    /// </summary>
    Exception Abandoned(Exception error);
}
