using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace SoftDirty;

/// <summary>A page that passed the filter.</summary>
internal readonly record struct PageHit(ulong Address, PagemapEntry Entry, MemoryMapping? Mapping);
