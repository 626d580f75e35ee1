using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace SoftDirty.Commands;

/// <summary>
/// Completes -Mapping with the paths and pseudo-names in the target's maps. -Mapping takes wildcards, so a path that
/// holds wildcard characters is completed escaped ('/tmp/lib`[x`].so'): as it is, it also selected '/tmp/libx.so'.
/// </summary>
internal sealed class MappingNameCompleter : IArgumentCompleter
{
    /// <inheritdoc/>
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var m in CompletionTarget.Mappings(fakeBoundParameters))
            if (m.Path.Length != 0) names.Add(m.Path);
        foreach (var n in names)
            if (n.StartsWith(word, StringComparison.OrdinalIgnoreCase) || Path.GetFileName(n).StartsWith(word, StringComparison.OrdinalIgnoreCase))
                yield return new CompletionResult(CompletionLiteral.Quote(MappingSelector.IsPseudoName(n) ? n : WildcardPattern.Escape(n)),
                    DisplayText.Visible(n)!, CompletionResultType.ParameterValue, DisplayText.Visible(n)!);
    }
}
