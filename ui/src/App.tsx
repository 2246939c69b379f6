import { type ComponentType, lazy, Suspense, useEffect, useState } from "react";
import { Navigate, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { ApiError } from "./api/client";
import { firstProject, useDataPlanes, useMe } from "./api/queries";
import { LoginPage } from "./pages/LoginPage";
import { ProjectLayout } from "./pages/ProjectLayout";
import { SessionPage } from "./pages/SessionPage";
import { TracesPage } from "./pages/TracesPage";

/** A page loaded when first opened: the sign-in, traces and session pages come with the
 * app; the others (the code editor, the charts) are fetched as their own chunks. */
function lazyPage<K extends string>(
  load: () => Promise<Record<K, ComponentType>>, name: K,
): ComponentType {
  const Page: ComponentType = lazy(async () => ({ default: (await load())[name] as ComponentType }));
  return function LazyPage() {
    return (
      <Suspense fallback={<p className="loading" role="status">Loading…</p>}>
        <Page />
      </Suspense>
    );
  };
}

const AlertPage = lazyPage(() => import("./pages/alerts/AlertPage"), "AlertPage");
const AlertsPage = lazyPage(() => import("./pages/alerts/AlertsPage"), "AlertsPage");
const DashboardPage = lazyPage(() => import("./pages/dashboard/DashboardPage"), "DashboardPage");
const DatasetPage = lazyPage(() => import("./pages/datasets/DatasetPage"), "DatasetPage");
const DatasetsPage = lazyPage(() => import("./pages/datasets/DatasetsPage"), "DatasetsPage");
const ComparePage = lazyPage(() => import("./pages/experiments/ComparePage"), "ComparePage");
const ExperimentsPage = lazyPage(() => import("./pages/experiments/ExperimentsPage"), "ExperimentsPage");
const RunPage = lazyPage(() => import("./pages/experiments/RunPage"), "RunPage");
const EvaluatorPage = lazyPage(() => import("./pages/evaluators/EvaluatorPage"), "EvaluatorPage");
const EvaluatorsPage = lazyPage(() => import("./pages/evaluators/EvaluatorsPage"), "EvaluatorsPage");
const QueuePage = lazyPage(() => import("./pages/review/QueuePage"), "QueuePage");
const ReviewPage = lazyPage(() => import("./pages/review/ReviewPage"), "ReviewPage");
const PromptPage = lazyPage(() => import("./pages/prompts/PromptPage"), "PromptPage");
const PromptsPage = lazyPage(() => import("./pages/prompts/PromptsPage"), "PromptsPage");
const SettingsPage = lazyPage(() => import("./pages/settings/SettingsPage"), "SettingsPage");
const SignupPage = lazyPage(() => import("./pages/account/SignupPage"), "SignupPage");
const VerifyEmailPage = lazyPage(() => import("./pages/account/VerifyEmailPage"), "VerifyEmailPage");

/** Pages a visitor opens before signing in (their own routes, whatever the session). */
const PUBLIC_PATHS = ["/signup", "/verify-email"];

export function App() {
  const location = useLocation();
  if (PUBLIC_PATHS.includes(location.pathname)) {
    return (
      <Routes>
        <Route path="/signup" element={<SignupPage />} />
        <Route path="/verify-email" element={<VerifyEmailPage />} />
      </Routes>
    );
  }
  return <SignedIn />;
}

function SignedIn() {
  const me = useMe();
  // Asked for beside /v1/me, not after it: a project page needs both before its first data
  // read (bench/ui: three control-plane round trips in a row before the first row).
  useDataPlanes();
  if (me.isPending) return <p className="loading" role="status">Loading…</p>;
  if (me.error) {
    // Not signed in (or the session ended): sign in here, then this same URL opens.
    if (me.error instanceof ApiError && me.error.status === 401) return <LoginPage />;
    return <main className="centered"><h1>Apiary</h1><p role="alert">{me.error.message}</p></main>;
  }
  return (
    <Routes>
      <Route path="/" element={<Home />} />
      <Route path="/projects/:projectId" element={<ProjectLayout />}>
        <Route index element={<Navigate to="traces" replace />} />
        <Route path="traces" element={<TracesPage />} />
        <Route path="sessions/:sessionId" element={<SessionPage />} />
        <Route path="dashboard" element={<DashboardPage />} />
        <Route path="datasets" element={<DatasetsPage />} />
        <Route path="datasets/:datasetId" element={<DatasetPage />} />
        <Route path="experiments" element={<ExperimentsPage />} />
        <Route path="experiments/compare" element={<ComparePage />} />
        <Route path="experiments/:runId" element={<RunPage />} />
        <Route path="evaluators" element={<EvaluatorsPage />} />
        <Route path="evaluators/:evaluatorId" element={<EvaluatorPage />} />
        <Route path="review" element={<ReviewPage />} />
        <Route path="review/:queueId" element={<QueuePage />} />
        <Route path="prompts" element={<PromptsPage />} />
        <Route path="prompts/:templateId" element={<PromptPage />} />
        <Route path="alerts" element={<AlertsPage />} />
        <Route path="alerts/:alertId" element={<AlertPage />} />
        <Route path="settings" element={<Navigate to="keys" replace />} />
        <Route path="settings/:tab" element={<SettingsPage />} />
      </Route>
      <Route path="*" element={<NotFound />} />
    </Routes>
  );
}

function Home() {
  const navigate = useNavigate();
  const [message, setMessage] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    firstProject().then(
      (id) => {
        if (!live) return;
        if (id) navigate(`/projects/${id}/traces`, { replace: true });
        else setMessage("You are not a member of any project yet. Ask for an invitation, or create an organization with the API.");
      },
      (error: Error) => live && setMessage(error.message),
    );
    return () => { live = false; };
  }, [navigate]);
  return (
    <main className="centered">
      <h1>Apiary</h1>
      {message ? <p role="alert">{message}</p> : <p role="status">Opening your project…</p>}
    </main>
  );
}

function NotFound() {
  return (
    <main className="centered">
      <h1>Page not found</h1>
      <p><a href=".">Go to your projects</a></p>
    </main>
  );
}
