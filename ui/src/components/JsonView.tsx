// JSON as a collapsible tree: objects and arrays are native <details> (keyboard and
// screen-reader friendly), open to ``openDepth`` levels; long strings keep their line breaks.

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return typeof v === "object" && v !== null;
}

function Scalar({ value }: { value: unknown }) {
  if (typeof value === "string") return <span className="j-str">{JSON.stringify(value).length > 200 ? value : JSON.stringify(value)}</span>;
  if (typeof value === "number") return <span className="j-num">{value}</span>;
  if (typeof value === "boolean") return <span className="j-bool">{String(value)}</span>;
  return <span className="j-null">null</span>;
}

function Node({ name, value, depth, openDepth }: { name: string | null; value: unknown; depth: number; openDepth: number }) {
  if (!isContainer(value)) {
    return <div className="j-row">{name !== null && <span className="j-key">{name}: </span>}<Scalar value={value} /></div>;
  }
  const entries: [string, unknown][] = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  const summary = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
  return (
    <details className="j-node" open={depth < openDepth}>
      <summary>{name !== null && <span className="j-key">{name}: </span>}<span className="j-sum">{summary}</span></summary>
      <div className="j-children">
        {entries.map(([k, v]) => <Node key={k} name={k} value={v} depth={depth + 1} openDepth={openDepth} />)}
      </div>
    </details>
  );
}

export function JsonView({ value, openDepth = 2 }: { value: unknown; openDepth?: number }) {
  return <div className="json"><Node name={null} value={value} depth={0} openDepth={openDepth} /></div>;
}
