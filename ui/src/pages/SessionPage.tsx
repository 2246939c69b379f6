import { useQuery } from "@tanstack/react-query";
import { useVirtualizer } from "@tanstack/react-virtual";
import { type KeyboardEvent, useMemo, useRef, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { type EventOut, unwrap } from "../api/client";
import { SpanDetail } from "../components/SpanDetail";
import { buildTree, visibleRows } from "../lib/tree";
import { axisOf, barOf, formatMs, ticks } from "../lib/waterfall";
import { useProjectContext } from "./ProjectLayout";

const ROW_PX = 28;
const PAGE = 5000;
const MAX_EVENTS = 50_000;

/** A session: its tree of events beside their waterfall (one virtualized list), and the
 * selected event's detail. The selection is in the URL (?event=), so it can be shared. */
export function SessionPage() {
  const { projectId, dp } = useProjectContext();
  const { sessionId = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const [collapsed, setCollapsed] = useState<ReadonlySet<string>>(new Set());

  const session = useQuery({
    queryKey: ["session-events", projectId, sessionId],
    queryFn: async () => {
      const events: EventOut[] = [];
      let cursor: string | null | undefined;
      do {
        const page = unwrap(await dp.client.POST("/v1/events/export", {
          body: {
            filters: [{ field: "session_id", operator: "is", value: sessionId, type: "id" }],
            limit: PAGE,
            ...(cursor ? { cursor } : {}),
          },
        }));
        events.push(...page.events);
        cursor = page.events.length === PAGE ? page.next_cursor : null;
      } while (cursor && events.length < MAX_EVENTS);
      return events;
    },
    refetchInterval: 5000, // spans still arriving show up
  });

  const roots = useMemo(() => buildTree(session.data ?? []), [session.data]);
  const rows = useMemo(() => visibleRows(roots, collapsed), [roots, collapsed]);
  const axis = useMemo(() => axisOf(session.data ?? []), [session.data]);
  const selectedId = params.get("event") ?? rows[0]?.event.event_id ?? null;
  const selected = session.data?.find((e) => e.event_id === selectedId) ?? rows[0]?.event;

  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW_PX, overscan: 20 });

  function select(id: string) {
    const p = new URLSearchParams(params);
    p.set("event", id);
    setParams(p, { replace: true });
  }

  function toggle(id: string) {
    const next = new Set(collapsed);
    if (next.has(id)) next.delete(id); else next.add(id);
    setCollapsed(next);
  }

  function onKey(e: KeyboardEvent) {
    const index = rows.findIndex((r) => r.event.event_id === selected?.event_id);
    const node = rows[index];
    let target = index;
    if (e.key === "ArrowDown") target = Math.min(rows.length - 1, index + 1);
    else if (e.key === "ArrowUp") target = Math.max(0, index - 1);
    else if (e.key === "Home") target = 0;
    else if (e.key === "End") target = rows.length - 1;
    else if (node && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
      const isOpen = !collapsed.has(node.event.event_id);
      if (node.children.length > 0 && isOpen === (e.key === "ArrowLeft")) toggle(node.event.event_id);
      e.preventDefault();
      return;
    } else return;
    e.preventDefault();
    const row = rows[target];
    if (row) {
      select(row.event.event_id);
      virtualizer.scrollToIndex(target);
      requestAnimationFrame(() => document.getElementById(`row-${row.event.event_id}`)?.focus());
    }
  }

  const errors = session.data?.filter((e) => e.error).length ?? 0;
  return (
    <div className="page session-page">
      <div className="page-head">
        <p className="crumbs"><Link to={`/projects/${projectId}/traces`}>Traces</Link> <span aria-hidden="true">/</span></p>
        <h1>Session <code className="id">{sessionId}</code></h1>
        {session.data && (
          <span className="muted">
            {session.data.length} events{axis ? ` · ${formatMs(axis.end - axis.start)}` : ""}{errors ? ` · ${errors} with errors` : ""}
          </span>
        )}
      </div>
      {session.error && <p className="error" role="alert">{session.error.message}</p>}
      {session.isPending && <p role="status">Loading the session…</p>}
      {session.data && session.data.length === 0 && <p role="status">No events in this session (yet).</p>}
      {session.data && session.data.length > 0 && (
        <div className="split">
          <div className="tree-pane">
            <div className="tree-head" aria-hidden="true">
              <span className="col-name">Span</span>
              <span className="col-bar">
                {axis && ticks(axis).map((t) => (
                  <span key={t} className="tick" style={{ left: `${(t / axis.span) * 100}%` }}>{formatMs(t)}</span>
                ))}
              </span>
            </div>
            <div ref={scroller} className="tree-scroll" role="tree" aria-label="Events of the session" onKeyDown={onKey}>
              <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
                {virtualizer.getVirtualItems().map((item) => {
                  const node = rows[item.index]!;
                  const e = node.event;
                  const bar = axis ? barOf(e, axis) : null;
                  const isSelected = e.event_id === selected?.event_id;
                  const hasChildren = node.children.length > 0;
                  const open = !collapsed.has(e.event_id);
                  return (
                    <div key={e.event_id} id={`row-${e.event_id}`} role="treeitem" aria-level={node.depth + 1}
                      aria-selected={isSelected} aria-expanded={hasChildren ? open : undefined}
                      aria-setsize={rows.length} aria-posinset={item.index + 1}
                      tabIndex={isSelected ? 0 : -1}
                      className={`tree-row${isSelected ? " selected" : ""}${e.error ? " has-error" : ""}`}
                      style={{ position: "absolute", top: 0, left: 0, right: 0, height: ROW_PX, transform: `translateY(${item.start}px)` }}
                      onClick={() => select(e.event_id)}>
                      <span className="col-name" style={{ paddingLeft: node.depth * 14 }}>
                        {hasChildren ? (
                          <span className="twisty" aria-hidden="true" onClick={(ev) => { ev.stopPropagation(); toggle(e.event_id); }}>{open ? "▾" : "▸"}</span>
                        ) : <span className="twisty" aria-hidden="true" />}
                        <span className={`dot t-${e.event_type ?? ""}`} aria-hidden="true" />
                        <span className="name">{e.event_name || "(unnamed)"}</span>
                      </span>
                      <span className="col-bar" aria-hidden="true">
                        {bar && <span className={`bar t-${e.event_type ?? ""}`} style={{ left: `${bar.leftPct}%`, width: `${bar.widthPct}%` }} />}
                      </span>
                      <span className="col-dur">{bar ? formatMs(bar.durationMs) : ""}</span>
                    </div>
                  );
                })}
              </div>
            </div>
          </div>
          <div className="detail-pane">{selected && <SpanDetail event={selected} />}</div>
        </div>
      )}
    </div>
  );
}
