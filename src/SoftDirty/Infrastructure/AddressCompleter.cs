using System;
using System.Collections;
using System.Collections.Generic;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace SoftDirty.Commands;

/// <summary>
/// Completes -Address with the start of each mapping of the target (hex, with its name as the tooltip), and
/// never with file names: an address is not a path.
/// </summary>
internal sealed class AddressCompleter : IArgumentCompleter
{
    /// <inheritdoc/>
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var results = new List<CompletionResult>();
        foreach (var m in CompletionTarget.Mappings(fakeBoundParameters))
        {
            var text = $"0x{m.Start:x}";
            if (text.StartsWith(wordToComplete, StringComparison.OrdinalIgnoreCase))
                results.Add(new CompletionResult(text, DisplayText.Visible($"{text} {m.DisplayName}")!, CompletionResultType.ParameterValue, DisplayText.Visible(m.ToString())!));
        }
        // A class completer's empty answer ends completion there: PowerShell does not fall back to file names.
        return results;
    }
}
