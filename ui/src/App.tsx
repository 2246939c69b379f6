import { useEffect, useState } from "react";
import { Navigate, Route, Routes, useNavigate } from "react-router-dom";
import { ApiError } from "./api/client";
import { firstProject, useMe } from "./api/queries";
import { LoginPage } from "./pages/LoginPage";
import { ProjectLayout } from "./pages/ProjectLayout";
import { SessionPage } from "./pages/SessionPage";
import { TracesPage } from "./pages/TracesPage";

export function App() {
  const me = useMe();
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
