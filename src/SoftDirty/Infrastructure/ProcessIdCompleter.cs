using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace SoftDirty.Commands;

/// <summary>Completes -Id with the pids under /proc, showing each process's name.</summary>
internal sealed class ProcessIdCompleter : IArgumentCompleter
{
    /// <inheritdoc/>
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        if (!OperatingSystem.IsLinux()) yield break;
        foreach (var dir in Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).OrderBy(d => d?.Length).ThenBy(d => d, StringComparer.Ordinal))
        {
            if (dir is null || !int.TryParse(dir, out _) || !dir.StartsWith(wordToComplete, StringComparison.Ordinal)) continue;
            string name;
            // comm is the process's own choice (prctl PR_SET_NAME): shown with its control characters escaped.
            try { name = DisplayText.Visible(File.ReadAllText($"/proc/{dir}/comm").TrimEnd('\n'))!; }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            yield return new CompletionResult(dir, $"{dir} {name}", CompletionResultType.ParameterValue, $"{dir}: {name}");
        }
    }
}
