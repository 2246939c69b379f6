import { useQueryClient } from "@tanstack/react-query";
import { Label } from "radix-ui";
import { NavLink, Outlet, useNavigate, useOutletContext, useParams } from "react-router-dom";
import { cp, type ProjectDataPlane } from "../api/client";
import { firstProject, forgetDataPlanes, useDataPlane, useMe, useOrgs, useProject, useProjects, useWorkspaces } from "../api/queries";

export interface ProjectContext {
  projectId: string;
  dp: ProjectDataPlane;
}

export function useProjectContext(): ProjectContext {
  return useOutletContext<ProjectContext>();
}

/** The project's pages, in the navigation's order: [path under the project, label]. */
const PROJECT_PAGES: ReadonlyArray<readonly [string, string]> = [
  ["dashboard", "Dashboard"],
  ["traces", "Traces"],
  ["datasets", "Datasets"],
  ["experiments", "Experiments"],
  ["evaluators", "Evaluators"],
  ["review", "Review"],
  ["prompts", "Prompts"],
  ["alerts", "Alerts"],
  ["settings", "Settings"],
];

/** Every project page: the header with the org → workspace → project switcher, then the page. */
export function ProjectLayout() {
  const { projectId = "" } = useParams();
  const { dp, error } = useDataPlane(projectId);
  return (
    <div className="shell">
      <Header projectId={projectId} />
      <nav aria-label="Project pages" className="tabs-nav">
        {PROJECT_PAGES.map(([path, label]) => (
          <NavLink key={path} to={`/projects/${projectId}/${path}`}>{label}</NavLink>
        ))}
      </nav>
      <main id="main">
        {error ? <p role="alert" className="error">{error.message}</p>
          : dp ? <Outlet context={{ projectId, dp } satisfies ProjectContext} />
            : <p role="status">Connecting to the data plane…</p>}
      </main>
    </div>
  );
}

function Header({ projectId }: { projectId: string }) {
  const me = useMe();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const project = useProject(projectId);
  const orgId = project.data?.org_id;
  const workspaceId = project.data?.workspace_id;
  const orgs = useOrgs();
  const workspaces = useWorkspaces(orgId);
  const projects = useProjects(workspaceId);

  async function open(org?: string, workspace?: string) {
    const id = await firstProject(org, workspace);
    if (id) navigate(`/projects/${id}/traces`);
  }

  async function signOut() {
    await cp.POST("/v1/auth/logout");
    // A fresh page: nothing of this session (data, data-plane tokens) survives in memory.
    forgetDataPlanes();
    queryClient.clear();
    window.location.replace(new URL(".", document.baseURI).href);
  }

  return (
    <header className="topbar">
      <span className="brand" aria-hidden="true">⬢</span>
      <span className="brand-name">Apiary</span>
      <div className="switcher" role="group" aria-label="Organization, workspace and project">
        <Label.Root htmlFor="org-select">Organization</Label.Root>
        <select id="org-select" value={orgId ?? ""} onChange={(e) => void open(e.target.value)}>
          {!orgId && <option value="">…</option>}
          {orgs.data?.map((o) => <option key={o.id} value={o.id}>{o.name}</option>)}
        </select>
        <Label.Root htmlFor="workspace-select">Workspace</Label.Root>
        <select id="workspace-select" value={workspaceId ?? ""} onChange={(e) => void open(orgId, e.target.value)}>
          {!workspaceId && <option value="">…</option>}
          {workspaces.data?.map((w) => <option key={w.id} value={w.id}>{w.name}</option>)}
        </select>
        <Label.Root htmlFor="project-select">Project</Label.Root>
        <select id="project-select" value={projectId} onChange={(e) => navigate(`/projects/${e.target.value}/traces`)}>
          {!projects.data?.some((p) => p.id === projectId) && <option value={projectId}>{project.data?.name ?? "…"}</option>}
          {projects.data?.map((p) => <option key={p.id} value={p.id}>{p.name}</option>)}
        </select>
      </div>
      <span className="spacer" />
      <span className="who">{me.data?.user.email}</span>
      <button type="button" onClick={() => void signOut()}>Sign out</button>
    </header>
  );
}
