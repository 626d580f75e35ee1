using System;
using System.IO;
using System.Linq;
using System.Text;
using SoftDirty.Emulation;
using SoftDirty.Scenarios;
using Xunit;
namespace SoftDirty.Tests.Emulation;
public class TmpExplore
{
    [Fact]
    public void Explore()
    {
        var what = Environment.GetEnvironmentVariable("EXPLORE") ?? "files";
        var native = new NativeScenarioRunner("/work/diff/tests/native/bin/sdscenario");
        var emu = new EmulatedScenarioRunner(KernelProfile.Get("6.18", noSoftDirty: true));
        var sc = what == "files" ? ScenarioDifferential.Load("/work/diff/tests/scenarios")
            : ScenarioDifferential.Random(int.Parse(what), 2000, false, true);
        var r = native.Run(sc); var e = emu.Run(sc);
        var sb = new StringBuilder(); int n = 0;
        for (int i = 0; i < sc.Count; i++)
        {
            if (r[i] == e[i]) continue;
            if (++n > 6) { sb.Append("differs " + sc[i].Name + "\n"); continue; }
            var s = ScenarioComparer.Shrink(sc[i], native, emu);
            sb.Append(s.ToText()).Append(ScenarioComparer.SideBySide(native.Run(new[] { s })[0], emu.Run(new[] { s })[0])).Append('\n');
        }
        sb.Append($"{n} of {sc.Count} differ\n");
        File.WriteAllText("/tmp/explore.txt", sb.ToString());
    }
}
