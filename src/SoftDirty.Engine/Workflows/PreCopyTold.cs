namespace SoftDirty.Workflows;

/// <summary>What a migration has warned of already: the pages it cannot read are said once, whichever part meets them first.</summary>
internal sealed class PreCopyTold
{
    private bool _unreadable, _unopened;

    /// <summary>True the first time: present pages that could not be read (memfd_secret, the process's own userfaultfd, device memory).</summary>
    public bool FirstUnreadable() => !_unreadable && (_unreadable = true);

    /// <summary>True the first time: pages of memory that ends with the process, not mapped in it, whose object this user cannot open.</summary>
    public bool FirstUnopened() => !_unopened && (_unopened = true);
}
