// A code editor (CodeMirror 6 via @uiw/react-codemirror) for metric code, judge prompts,
// prompt bodies and JSON. Accessible: its editable region is a labelled multi-line
// textbox; Tab moves focus out unless the editor is told to indent with it (Escape then
// Tab always leaves, CodeMirror's own rule). Works under the page's CSP: CodeMirror
// injects its styles as <style> elements (style-src 'unsafe-inline') and evaluates no code.
import { json } from "@codemirror/lang-json";
import { python } from "@codemirror/lang-python";
import CodeMirror, { EditorView, type Extension } from "@uiw/react-codemirror";
import { useId, useMemo } from "react";

export type CodeLanguage = "python" | "json" | "text";

const theme = EditorView.theme({
  "&": { fontSize: "12.5px", border: "1px solid #8b9099", borderRadius: "6px", backgroundColor: "#fff" },
  "&.cm-focused": { outline: "2px solid #0b57a4", outlineOffset: "1px" },
  ".cm-content": { fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace' },
  ".cm-gutters": { backgroundColor: "#f6f7f9", color: "#555b63", borderRight: "1px solid #d9dce1" },
});

export function CodeEditor({ value, onChange, language, label, showLabel = false, readOnly = false, minHeight = "160px", maxHeight = "460px", describedBy }: {
  value: string;
  onChange?: (value: string) => void;
  language: CodeLanguage;
  /** The accessible name of the editable region. */
  label: string;
  /** Show ``label`` above the editor (else it is its accessible name only). */
  showLabel?: boolean;
  readOnly?: boolean;
  minHeight?: string;
  maxHeight?: string;
  describedBy?: string;
}) {
  const labelId = useId();
  const extensions = useMemo(() => {
    const attrs: Record<string, string> = showLabel ? { "aria-labelledby": labelId } : { "aria-label": label };
    if (describedBy) attrs["aria-describedby"] = describedBy;
    const list: Extension[] = [theme, EditorView.lineWrapping, EditorView.contentAttributes.of(attrs)];
    if (language === "python") list.push(python());
    if (language === "json") list.push(json());
    return list;
  }, [language, label, describedBy, showLabel, labelId]);
  const editor = (
    <CodeMirror
      value={value}
      onChange={onChange}
      extensions={extensions}
      readOnly={readOnly}
      editable={!readOnly}
      minHeight={minHeight}
      maxHeight={maxHeight}
      basicSetup={{ foldGutter: false, highlightActiveLine: !readOnly, autocompletion: false, closeBrackets: false, searchKeymap: false }}
      indentWithTab={false}
      className="code-editor"
    />
  );
  if (!showLabel) return editor;
  return (
    <div className="field">
      <span id={labelId}>{label}</span>
      {editor}
    </div>
  );
}
