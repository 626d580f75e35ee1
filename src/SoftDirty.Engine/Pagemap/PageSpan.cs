using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace SoftDirty;

/// <summary>A span of virtual addresses to read, with the mapping it lies in.</summary>
internal readonly record struct PageSpan(ulong Start, ulong End, MemoryMapping? Mapping);
