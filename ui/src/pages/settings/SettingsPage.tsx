import { Tabs } from "radix-ui";
import { Navigate, useNavigate, useParams } from "react-router-dom";
import { useProject } from "../../api/queries";
import { useProjectContext } from "../ProjectLayout";
import { ChannelsTab } from "./ChannelsTab";
import { DataPlanesTab } from "./DataPlanesTab";
import { KeysTab } from "./KeysTab";
import { MembersTab } from "./MembersTab";
import { MfaTab } from "./MfaTab";
import { ProviderKeysTab } from "./ProviderKeysTab";
import { SsoTab } from "./SsoTab";
import { ErrorNote } from "./parts";
import "./settings.css";

/** The settings' tabs: [URL segment, label]. */
const TABS: ReadonlyArray<readonly [string, string]> = [
  ["keys", "API keys"],
  ["members", "Members"],
  ["sso", "SSO"],
  ["provider-keys", "Provider keys"],
  ["security", "Security"],
  ["notifications", "Notification channels"],
  ["data-planes", "Data planes"],
];

/** Settings of the project, its workspace and organization, one tab per URL
 * (`/projects/:id/settings/:tab`); the tab list is Radix's (arrow keys move between tabs). */
export function SettingsPage() {
  const { tab = "keys" } = useParams();
  const { projectId, dp } = useProjectContext();
  const navigate = useNavigate();
  const project = useProject(projectId);
  if (!TABS.some(([key]) => key === tab)) return <Navigate to={`/projects/${projectId}/settings/keys`} replace />;
  const orgId = project.data?.org_id;
  const workspaceId = project.data?.workspace_id;

  return (
    <div className="page settings-page">
      <div className="page-head">
        <h1>Settings</h1>
        {project.data && <span className="muted">Project {project.data.name}</span>}
      </div>
      <Tabs.Root value={tab} onValueChange={(next) => navigate(`/projects/${projectId}/settings/${next}`)}
        className="settings-tabs">
        <Tabs.List aria-label="Settings sections" className="settings-tablist">
          {TABS.map(([key, label]) => <Tabs.Trigger key={key} value={key}>{label}</Tabs.Trigger>)}
        </Tabs.List>
        {/* Every panel exists (hidden unless chosen) so that each tab's aria-controls names
            an element; only the chosen one has content. */}
        {TABS.map(([key]) => (
          <Tabs.Content key={key} value={key} forceMount className="settings-panel">
            {key === tab && <>
              <ErrorNote error={project.error} what="read this project" />
              {project.isPending ? <p role="status" className="muted">Loading…</p>
                : tab === "keys" ? <KeysTab projectId={projectId} workspaceId={workspaceId} />
                : tab === "members" ? <MembersTab orgId={orgId} workspaceId={workspaceId} projectId={projectId} />
                : tab === "sso" ? <SsoTab orgId={orgId} />
                : tab === "provider-keys" ? <ProviderKeysTab dp={dp} />
                : tab === "security" ? <MfaTab />
                : tab === "notifications" ? <ChannelsTab orgId={orgId} workspaceId={workspaceId} projectId={projectId} />
                : <DataPlanesTab current={dp.plane.id} />}
            </>}
          </Tabs.Content>
        ))}
      </Tabs.Root>
    </div>
  );
}
