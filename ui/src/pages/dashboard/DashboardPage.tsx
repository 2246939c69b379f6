import type { UseQueryResult } from "@tanstack/react-query";
import { Label } from "radix-ui";
import { type ReactNode, useId } from "react";
import { Link, useSearchParams } from "react-router-dom";
import {
  Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis,
} from "recharts";
import { useChart, useEventSchema } from "../../api/dashboard";
import type { ProjectDataPlane } from "../../api/client";
import { useProjectContext } from "../ProjectLayout";
import {
  type ChartData, DASHBOARD_RANGES, type DashboardRange, type Point, chartQuery, describeLatency, describeMean, describeTotal,
  formatBucket, formatCompact, formatCost, formatCostTick, formatCount, formatDuration, formatDurationTick, formatNumber, formatPercent,
  mergePoints, shareAxisTop, metricNames, rangeOf, singleValue, toPoints, total, weightedMean,
} from "./dashboard";
import "./dashboard.css";

const COLORS = {
  events: "#0b57a4", sessions: "#6b4fbb", errors: "#b3261e", p50: "#0b6e8a", p95: "#a35200",
  cost: "#1e6b34", tokens: "#8a5a00", metric: "#0b57a4",
};
const CHART_HEIGHT = 190;

/** Volume, errors, latency, cost, tokens and metric averages of the project over a time
 * range, each from the charts API (POST /v1/charts/query), bucketed by hour or day. */
export function DashboardPage() {
  const { dp } = useProjectContext();
  const [params, setParams] = useSearchParams();
  const range = rangeOf(params.get("range"));

  const events = useChart(dp, chartQuery("event_count", range));
  const sessions = useChart(dp, chartQuery("session_count", range));
  const errorRate = useChart(dp, chartQuery("error_rate", range));
  const p50 = useChart(dp, chartQuery("duration", range, "p50"));
  const p95 = useChart(dp, chartQuery("duration", range, "p95"));
  const p50All = useChart(dp, chartQuery("duration", range, "p50", "all"));
  const p95All = useChart(dp, chartQuery("duration", range, "p95", "all"));
  const cost = useChart(dp, chartQuery("cost", range, "sum"));
  const tokens = useChart(dp, chartQuery("total_tokens", range, "sum"));
  const schema = useEventSchema(dp, range.key);

  const eventPoints = events.data ? toPoints(events.data, 0) : null;
  const empty = eventPoints !== null && total(eventPoints) === 0;
  const at = (t: number) => formatBucket(t, range.bucketing, range.key !== "24h");

  return (
    <div className="page dashboard">
      <div className="page-head">
        <h1>Dashboard</h1>
        <div className="range">
          <Label.Root htmlFor="dashboard-range">Time range</Label.Root>
          <select id="dashboard-range" value={range.key}
            onChange={(e) => setParams((p) => { const next = new URLSearchParams(p); next.set("range", e.target.value); return next; })}>
            {DASHBOARD_RANGES.map((r) => <option key={r.key} value={r.key}>{r.label}</option>)}
          </select>
        </div>
        <span className="live">
          {`per ${range.bucketing}`}
          {events.dataUpdatedAt ? ` · updated ${new Date(events.dataUpdatedAt).toLocaleTimeString()}` : ""}
        </span>
      </div>

      {events.error ? (
        <div className="error-box dash-error">
          <p role="alert">Could not load the dashboard: {events.error.message}</p>
          <button type="button" onClick={() => void events.refetch()}>Try again</button>
        </div>
      )
        : eventPoints === null ? <p role="status" className="muted">Loading the dashboard…</p>
          : empty ? <EmptyState range={range} />
            : (
              <>
                <Figures range={range} events={events} sessions={sessions} errorRate={errorRate}
                  p50={p50All} p95={p95All} cost={cost} tokens={tokens} />
                <div className="dash-grid">
                  <CountCard title="Events" what="Events" range={range} query={events} color={COLORS.events} at={at} />
                  <CountCard title="Sessions" what="Sessions" range={range} query={sessions} color={COLORS.sessions} at={at}
                    note="By each session's first event." />
                  <ErrorCard range={range} query={errorRate} at={at} />
                  <LatencyCard range={range} p50={p50} p95={p95} overall={[singleValue(p50All.data), singleValue(p95All.data)]} at={at} />
                  <CountCard title="Cost" what="Cost" range={range} query={cost} color={COLORS.cost} at={at}
                    format={(n) => formatCost(n)} tick={formatCostTick} axisWidth={80} />
                  <CountCard title="Tokens" what="Tokens" range={range} query={tokens} color={COLORS.tokens} at={at}
                    format={formatCount} />
                </div>
                <MetricsSection dp={dp} range={range} names={schema.data ? metricNames(schema.data.details) : null}
                  error={schema.error} at={at} />
              </>
            )}
    </div>
  );
}

function EmptyState({ range }: { range: DashboardRange }) {
  const { projectId } = useProjectContext();
  return (
    <div className="dash-empty" role="status">
      <h2>No events in the {range.label.toLowerCase()}</h2>
      <p>
        Send traces to this project with an API key (<Link to={`/projects/${projectId}/settings/keys`}>Settings → API keys</Link>)
        and they appear here; older data may be in a <strong>longer time range</strong>, or on
        the <Link to={`/projects/${projectId}/traces?range=all`}>Traces</Link> page.
      </p>
    </div>
  );
}

// --- the figures over the whole range -------------------------------------------------------

function Figures({ range, events, sessions, errorRate, p50, p95, cost, tokens }: {
  range: DashboardRange;
  events: UseQueryResult<ChartData>; sessions: UseQueryResult<ChartData>; errorRate: UseQueryResult<ChartData>;
  p50: UseQueryResult<ChartData>; p95: UseQueryResult<ChartData>; cost: UseQueryResult<ChartData>;
  tokens: UseQueryResult<ChartData>;
}) {
  const sumOf = (q: UseQueryResult<ChartData>) => (q.data ? total(toPoints(q.data, 0)) : null);
  const rate = errorRate.data ? weightedMean(toPoints(errorRate.data, null)) : null;
  const errors = errorRate.data ? Math.round(toPoints(errorRate.data, null).reduce((s, p) => s + (p.value ?? 0) * p.count, 0)) : null;
  const figure = (q: UseQueryResult<ChartData>, text: string | null) => (q.error ? "unavailable" : q.data ? text ?? "—" : "…");
  const eventsTotal = sumOf(events);
  const sessionsTotal = sumOf(sessions);
  const tokensTotal = sumOf(tokens);
  const items: Array<[string, string, string?]> = [
    ["Events", figure(events, eventsTotal === null ? null : formatCount(eventsTotal))],
    ["Sessions", figure(sessions, sessionsTotal === null ? null : formatCount(sessionsTotal))],
    ["Error rate", figure(errorRate, formatPercent(rate)), errors === null ? undefined : `${formatCount(errors)} error${errors === 1 ? "" : "s"}`],
    ["Latency p50", figure(p50, formatDuration(singleValue(p50.data)))],
    ["Latency p95", figure(p95, formatDuration(singleValue(p95.data)))],
    ["Cost", figure(cost, formatCost(sumOf(cost)))],
    ["Tokens", figure(tokens, tokensTotal === null ? null : formatCount(tokensTotal))],
  ];
  return (
    <div role="group" aria-label={`Totals, ${range.label.toLowerCase()}`}>
    <dl className="dash-figures">
      {items.map(([term, value, sub]) => (
        <div key={term} className="dash-figure">
          <dt>{term}</dt>
          <dd>{value}{sub && <span className="sub">{sub}</span>}</dd>
        </div>
      ))}
    </dl>
    </div>
  );
}

// --- one chart: a card with its title, states, chart and data table ------------------------

function Card({ title, level = 2, summary, query, children, table, note }: {
  title: string;
  level?: 2 | 3;
  summary: string | null;
  query: { isPending: boolean; error: Error | null };
  children: ReactNode;
  table: ReactNode;
  note?: string;
}) {
  const id = useId();
  const Heading = level === 2 ? "h2" : "h3";
  return (
    <section className="dash-card" aria-labelledby={id} aria-busy={query.isPending}>
      <Heading id={id}>{title}</Heading>
      {note && <p className="muted note">{note}</p>}
      {query.error ? <p className="error" role="alert">Could not load {title.toLowerCase()}: {query.error.message}</p>
        : query.isPending ? <div className="dash-skeleton" role="status">Loading {title.toLowerCase()}…</div>
          : (
            <>
              <p className="dash-summary" aria-hidden="true">{summary}</p>
              <div className="dash-chart" role="img" aria-label={summary ?? title}>{children}</div>
              {table}
            </>
          )}
    </section>
  );
}

function DataTable({ label, range, columns, rows, at }: {
  label: string;
  range: DashboardRange;
  columns: Array<[string, string, (n: number | null) => string]>;
  rows: Array<Record<string, number | null>>;
  at: (t: number) => string;
}) {
  return (
    <table className="visually-hidden" aria-label={label}>
      <thead>
        <tr><th scope="col">{range.bucketing === "day" ? "Day" : "Hour"}</th>{columns.map(([, heading]) => <th key={heading} scope="col">{heading}</th>)}</tr>
      </thead>
      <tbody>
        {rows.map((row) => (
          <tr key={row.t}>
            <th scope="row">{at(row.t ?? 0)}</th>
            {columns.map(([key, heading, format]) => <td key={heading}>{format(row[key] ?? null)}</td>)}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function axes(at: (t: number) => string, tick: (n: number) => string, top?: number, width = 64) {
  return [
    <CartesianGrid key="grid" stroke="#e6e8eb" vertical={false} />,
    <XAxis key="x" dataKey="t" tickFormatter={at} tick={{ fontSize: 11, fill: "#555b63" }} minTickGap={24} stroke="#8b9099" />,
    <YAxis key="y" tickFormatter={tick} tick={{ fontSize: 11, fill: "#555b63" }} width={width} stroke="#8b9099" allowDecimals
      {...(top === undefined ? {} : { domain: [0, top], ticks: [0, top / 4, top / 2, (3 * top) / 4, top] })} />,
  ];
}

function CountCard({ title, what, range, query, color, at, note, format = formatCount, tick = formatCompact, axisWidth }: {
  title: string; what: string; range: DashboardRange; query: UseQueryResult<ChartData>; color: string;
  at: (t: number) => string; note?: string; format?: (n: number) => string; tick?: (n: number) => string; axisWidth?: number;
}) {
  const points = query.data ? toPoints(query.data, 0) : [];
  const summary = query.data ? describeTotal(what, points, range, format, at) : null;
  const rows = points.map((p) => ({ t: p.t, value: p.value }));
  return (
    <Card title={title} summary={summary} query={query} note={note}
      table={<DataTable label={`${what} per ${range.bucketing}`} range={range} rows={rows} at={at}
        columns={[["value", what, (n) => (n === null ? "—" : format(n))]]} />}>
      <ResponsiveContainer width="100%" height={CHART_HEIGHT}>
        <BarChart data={rows} accessibilityLayer={false} margin={{ top: 6, right: 8, bottom: 0, left: 0 }}>
          {axes(at, tick, undefined, axisWidth)}
          <Tooltip labelFormatter={(t) => at(Number(t))} formatter={(v) => [format(Number(v)), what]} />
          <Bar dataKey="value" name={what} fill={color} isAnimationActive={false} />
        </BarChart>
      </ResponsiveContainer>
    </Card>
  );
}

function ErrorCard({ range, query, at }: { range: DashboardRange; query: UseQueryResult<ChartData>; at: (t: number) => string }) {
  const points = query.data ? toPoints(query.data, null) : [];
  const summary = query.data ? describeMean("Error rate", "overall", points, range, formatPercent, at) : null;
  const rows = points.map((p) => ({ t: p.t, value: p.value, events: p.count, errors: p.value === null ? null : Math.round(p.value * p.count) }));
  return (
    <Card title="Error rate" summary={summary} query={query} note="Share of events with an error."
      table={<DataTable label={`Error rate per ${range.bucketing}`} range={range} rows={rows} at={at}
        columns={[["value", "Error rate", formatPercent], ["errors", "Errors", (n) => (n === null ? "—" : formatCount(n))],
          ["events", "Events", (n) => formatCount(n ?? 0)]]} />}>
      <ResponsiveContainer width="100%" height={CHART_HEIGHT}>
        <LineChart data={rows} accessibilityLayer={false} margin={{ top: 6, right: 8, bottom: 0, left: 0 }}>
          {axes(at, (n) => formatPercent(n), shareAxisTop(Math.max(0, ...points.map((p) => p.value ?? 0))))}
          <Tooltip labelFormatter={(t) => at(Number(t))} formatter={(v) => [formatPercent(Number(v)), "Error rate"]} />
          <Line dataKey="value" name="Error rate" stroke={COLORS.errors} strokeWidth={2} dot={points.length < 40}
            connectNulls isAnimationActive={false} />
        </LineChart>
      </ResponsiveContainer>
    </Card>
  );
}

function LatencyCard({ range, p50, p95, overall, at }: {
  range: DashboardRange; p50: UseQueryResult<ChartData>; p95: UseQueryResult<ChartData>;
  overall: [number | null, number | null]; at: (t: number) => string;
}) {
  const state = { isPending: p50.isPending || p95.isPending, error: p50.error ?? p95.error };
  const p50Points = p50.data ? toPoints(p50.data, null) : [];
  const p95Points = p95.data ? toPoints(p95.data, null) : [];
  const rows = mergePoints({ p50: p50Points, p95: p95Points });
  const summary = p50.data && p95.data ? describeLatency(p50Points, p95Points, overall, range, at) : null;
  return (
    <Card title="Latency" summary={summary} query={state} note="Median (p50) and 95th percentile (p95) of event durations."
      table={<DataTable label={`Latency per ${range.bucketing}`} range={range} rows={rows} at={at}
        columns={[["p50", "p50", formatDuration], ["p95", "p95", formatDuration]]} />}>
      <ResponsiveContainer width="100%" height={CHART_HEIGHT}>
        <LineChart data={rows} accessibilityLayer={false} margin={{ top: 6, right: 8, bottom: 0, left: 0 }}>
          {axes(at, formatDurationTick)}
          <Tooltip labelFormatter={(t) => at(Number(t))} formatter={(v, name) => [formatDuration(Number(v)), name]} />
          <Legend verticalAlign="top" height={20} iconType="plainline" wrapperStyle={{ fontSize: 12 }} />
          <Line dataKey="p50" name="p50" stroke={COLORS.p50} strokeWidth={2} dot={rows.length < 40} connectNulls isAnimationActive={false} />
          <Line dataKey="p95" name="p95" stroke={COLORS.p95} strokeWidth={2} dot={rows.length < 40} connectNulls isAnimationActive={false} />
        </LineChart>
      </ResponsiveContainer>
    </Card>
  );
}

// --- metric averages ------------------------------------------------------------------------

function MetricsSection({ dp, range, names, error, at }: {
  dp: ProjectDataPlane; range: DashboardRange; names: string[] | null; error: Error | null; at: (t: number) => string;
}) {
  return (
    <section className="dash-metrics" aria-labelledby="dash-metrics-title">
      <h2 id="dash-metrics-title">Metric averages</h2>
      {error ? <p className="error" role="alert">Could not load the project's metrics: {error.message}</p>
        : names === null ? <p role="status" className="muted">Loading metrics…</p>
          : names.length === 0 ? <p className="muted">No numeric metrics on events in this time range. Evaluators add them (<code>metrics.&lt;name&gt;</code>).</p>
            : <div className="dash-grid">{names.map((name) => <MetricCard key={name} dp={dp} name={name} range={range} at={at} />)}</div>}
    </section>
  );
}

function MetricCard({ dp, name, range, at }: { dp: ProjectDataPlane; name: string; range: DashboardRange; at: (t: number) => string }) {
  const query = useChart(dp, chartQuery(name, range, "avg"));
  const label = name.slice("metrics.".length);
  const points: Point[] = query.data ? toPoints(query.data, null) : [];
  const summary = query.data ? describeMean(`Average ${label}`, "overall", points, range, formatNumber, at) : null;
  const rows = points.map((p) => ({ t: p.t, value: p.value, count: p.count }));
  return (
    <Card title={label} level={3} summary={summary} query={query}
      table={<DataTable label={`Average ${label} per ${range.bucketing}`} range={range} rows={rows} at={at}
        columns={[["value", "Average", formatNumber], ["count", "Values", (n) => formatCount(n ?? 0)]]} />}>
      <ResponsiveContainer width="100%" height={CHART_HEIGHT}>
        <LineChart data={rows} accessibilityLayer={false} margin={{ top: 6, right: 8, bottom: 0, left: 0 }}>
          {axes(at, formatCompact)}
          <Tooltip labelFormatter={(t) => at(Number(t))} formatter={(v) => [formatNumber(Number(v)), `Average ${label}`]} />
          <Line dataKey="value" name={`Average ${label}`} stroke={COLORS.metric} strokeWidth={2} dot={rows.length < 40}
            connectNulls isAnimationActive={false} />
        </LineChart>
      </ResponsiveContainer>
    </Card>
  );
}
