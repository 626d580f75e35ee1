using System;
using System.Collections.Generic;
using System.Linq;
using SoftDirty.Emulation;
using Xunit;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// The page table's leaf forms (single, sparse blocks of 2 to <see cref="PageTable.MaxSparseEntries"/> entries, dense)
/// against a plain dictionary: random sets, clears, whole-leaf writes and AND-NOTs that move leaves across every form
/// boundary must leave every entry as the model says. Sparse blocks grew to 64 entries so that random use of a large
/// region (about 30 pages a leaf at 64 GiB) does not make every leaf a 4 KiB dense array.
/// </summary>
public sealed class PageTableTests
{
    private const ulong Flags = Pte.Present | Pte.Writable | Pte.SoftDirty;

    private static void AssertSame(PageTable pt, Dictionary<ulong, ulong> model, IEnumerable<ulong> leaves)
    {
        Span<ulong> leaf = stackalloc ulong[PageTable.LeafEntries];
        foreach (ulong l in leaves)
        {
            pt.ReadLeaf(pt.GetSlot(l), leaf);
            for (int i = 0; i < PageTable.LeafEntries; i++)
            {
                ulong page = (l << PageTable.LeafShift) | (uint)i;
                ulong expected = model.GetValueOrDefault(page);
                if (leaf[i] != expected || pt.Get(page) != expected)
                    Assert.Fail($"page 0x{page:x}: model 0x{expected:x}, leaf 0x{leaf[i]:x}, Get 0x{pt.Get(page):x} ({PageTable.KindOf(pt.GetSlot(l))})");
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomOperations_MatchADictionary_AcrossEveryLeafForm(int seed)
    {
        var rng = new Random(seed);
        var pt = new PageTable();
        var model = new Dictionary<ulong, ulong>();
        ulong[] leaves = { 0, 1, 511, 512, 1UL << 20, (1UL << 25) + 3 };
        var seenKinds = new HashSet<PageTable.SlotKind>();
        for (int step = 0; step < 20_000; step++)
        {
            ulong leaf = leaves[rng.Next(leaves.Length)];
            // Each leaf's population drifts between a few entries (single, small blocks), tens (the large sparse
            // blocks) and hundreds (dense), and whole-leaf writes bring dense leaves back to the sparse forms.
            int spread = (step / 2_000 % 4) switch { 0 => 6, 1 => 70, 2 => PageTable.LeafEntries, _ => 40 };
            ulong page = (leaf << PageTable.LeafShift) | (uint)rng.Next(spread);
            int op = rng.Next(100);
            if (op < 50)
            {
                ulong pte = (ulong)(uint)rng.Next(1, 1 << 20) | (Flags & (ulong)rng.NextInt64());
                pte |= Pte.Present;
                pt.Set(page, pte);
                model[page] = pte;
            }
            else if (op < 96)
            {
                pt.Set(page, 0);
                model.Remove(page);
            }
            else if (op < 98)
            {
                var ptes = new ulong[PageTable.LeafEntries];
                int n = rng.Next(3) switch { 0 => rng.Next(2), 1 => rng.Next(PageTable.MaxSparseEntries + 2), _ => rng.Next(PageTable.LeafEntries) };
                if (spread != PageTable.LeafEntries) n = Math.Min(n, spread);
                for (int i = 0; i < n; i++) ptes[rng.Next(PageTable.LeafEntries)] = (ulong)(uint)rng.Next(1, 1 << 20) | Pte.Present;
                pt.WriteLeaf(leaf, ptes);
                for (int i = 0; i < PageTable.LeafEntries; i++)
                {
                    ulong p = (leaf << PageTable.LeafShift) | (uint)i;
                    if (ptes[i] == 0) model.Remove(p); else model[p] = ptes[i];
                }
            }
            else
            {
                pt.AndNotAll(Pte.ClearSoftDirtyMask);
                foreach (var k in model.Keys.ToList()) model[k] &= ~Pte.ClearSoftDirtyMask;
            }
            seenKinds.Add(PageTable.KindOf(pt.GetSlot(leaf)));
            AssertSame(pt, model, new[] { leaf });
        }
        AssertSame(pt, model, leaves);
        Assert.Contains(PageTable.SlotKind.Single, seenKinds);
        Assert.Contains(PageTable.SlotKind.Sparse, seenKinds);
        Assert.Contains(PageTable.SlotKind.Dense, seenKinds);
    }

    [Fact]
    public void ALeafStaysSparseUpToItsLargestBlock_ThenTurnsDense()
    {
        var pt = new PageTable();
        for (int i = 0; i < PageTable.MaxSparseEntries; i++)
        {
            pt.Set((ulong)i * 7, Pte.Present | (uint)(i + 1));
            Assert.Equal(i == 0 ? PageTable.SlotKind.Single : PageTable.SlotKind.Sparse, PageTable.KindOf(pt.GetSlot(0)));
        }
        pt.Set(PageTable.LeafEntries - 1, Pte.Present | 1);
        Assert.Equal(PageTable.SlotKind.Dense, PageTable.KindOf(pt.GetSlot(0)));
        for (int i = 0; i < PageTable.MaxSparseEntries; i++) Assert.Equal(Pte.Present | (uint)(i + 1), pt.Get((ulong)i * 7));
    }
}
