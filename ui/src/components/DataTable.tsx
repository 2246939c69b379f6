import { type ColumnDef, flexRender, getCoreRowModel, useReactTable } from "@tanstack/react-table";

/** A plain accessible table over TanStack Table's row model (paging is the server's). */
export function DataTable<T>({ label, data, columns, rowId, empty, loading, rowClass }: {
  label: string;
  data: T[];
  // columns of different value types: TanStack Table's documented ColumnDef<T, any>
  columns: ColumnDef<T, any>[];
  rowId: (row: T) => string;
  empty: string;
  loading: boolean;
  rowClass?: (row: T) => string | undefined;
}) {
  const table = useReactTable({ data, columns, getCoreRowModel: getCoreRowModel(), getRowId: rowId });
  return (
    <table className="grid" aria-label={label} aria-busy={loading}>
      <thead>
        {table.getHeaderGroups().map((g) => (
          <tr key={g.id}>{g.headers.map((h) => <th key={h.id} scope="col">{flexRender(h.column.columnDef.header, h.getContext())}</th>)}</tr>
        ))}
      </thead>
      <tbody>
        {table.getRowModel().rows.map((r) => (
          <tr key={r.id} className={rowClass?.(r.original)}>
            {r.getVisibleCells().map((c) => <td key={c.id}>{flexRender(c.column.columnDef.cell, c.getContext())}</td>)}
          </tr>
        ))}
        {!loading && data.length === 0 && <tr><td colSpan={columns.length} className="muted">{empty}</td></tr>}
      </tbody>
    </table>
  );
}
