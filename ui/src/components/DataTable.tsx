import { type ColumnDef, flexRender, getCoreRowModel, useReactTable } from "@tanstack/react-table";
import type { ReactNode } from "react";

export interface TableSort {
  by: string;
  order: "asc" | "desc";
}

/** A plain accessible table over TanStack Table's row model (paging and sorting are the
 * server's). Columns whose id is in ``sortable`` get a header button that asks for that
 * sort (``onSort``); the sorted column's header carries ``aria-sort``. */
export function DataTable<T>({ label, data, columns, rowId, empty, loading, rowClass, sortable, sort, onSort }: {
  label: string;
  data: T[];
  // columns of different value types: TanStack Table's documented ColumnDef<T, any>
  columns: ColumnDef<T, any>[];
  rowId: (row: T) => string;
  empty: ReactNode;
  loading: boolean;
  rowClass?: (row: T) => string | undefined;
  /** column id -> the sort key the server knows it by */
  sortable?: Readonly<Record<string, string>>;
  sort?: TableSort;
  onSort?: (key: string) => void;
}) {
  const table = useReactTable({ data, columns, getCoreRowModel: getCoreRowModel(), getRowId: rowId });
  const width = table.getVisibleLeafColumns().length;
  return (
    <table className="grid" aria-label={label} aria-busy={loading}>
      <thead>
        {table.getHeaderGroups().map((g) => (
          <tr key={g.id}>{g.headers.map((h) => {
            const key = sortable?.[h.column.id];
            const title = flexRender(h.column.columnDef.header, h.getContext());
            if (key === undefined || !onSort) return <th key={h.id} scope="col">{title}</th>;
            const active = sort?.by === key;
            const direction = active ? (sort?.order === "asc" ? "ascending" : "descending") : "none";
            return (
              <th key={h.id} scope="col" aria-sort={direction} className="sortable">
                <button type="button" className="sort-button" onClick={() => onSort(key)}>
                  {title}
                  <span aria-hidden="true" className={`sort-mark${active ? " active" : ""}`}>
                    {active ? (sort?.order === "asc" ? "▲" : "▼") : "↕"}
                  </span>
                </button>
              </th>
            );
          })}</tr>
        ))}
      </thead>
      <tbody>
        {table.getRowModel().rows.map((r) => (
          <tr key={r.id} className={rowClass?.(r.original)}>
            {r.getVisibleCells().map((c) => <td key={c.id}>{flexRender(c.column.columnDef.cell, c.getContext())}</td>)}
          </tr>
        ))}
        {loading && data.length === 0 && <tr><td colSpan={width} className="muted">Loading…</td></tr>}
        {!loading && data.length === 0 && <tr><td colSpan={width} className="empty-cell">{empty}</td></tr>}
      </tbody>
    </table>
  );
}
