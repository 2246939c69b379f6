// Pure logic of the notification channels tab (unit-tested in channels.test.ts): the form
// <-> the API's create and update bodies. Secrets (Slack's webhook URL, a webhook's URL and
// signing secret, an email channel's SMTP URL) are write-only: a read shows a hint, and an
// edit sends them only when typed again. The API replaces a channel's whole config on an
// update (keeping only a webhook's secret when it is left out), so a config change that
// would drop a stored secret URL asks for it again instead.

export type ChannelType = "email" | "slack" | "webhook";
export type Severity = "critical" | "warning" | "resolution";
export const SEVERITIES: readonly Severity[] = ["critical", "warning", "resolution"];
export const TYPE_LABELS: Record<ChannelType, string> = { email: "Email", slack: "Slack", webhook: "Webhook" };
export type ScopeKind = "org" | "workspace" | "project";

export interface ChannelForm {
  name: string;
  type: ChannelType;
  /** Email: addresses separated by commas, spaces or lines. */
  recipients: string;
  fromAddress: string;
  /** Secrets: empty = unchanged on an edit. */
  smtpUrl: string;
  /** Email: remove the stored SMTP URL (use the data plane's mail server). */
  clearSmtpUrl: boolean;
  slackUrl: string;
  webhookUrl: string;
  secret: string;
  scope: ScopeKind;
  workspaceId: string;
  projectId: string;
  severities: Severity[];
  enabled: boolean;
}

/** What a read returns of a channel (the API's ChannelOut, loosely typed). */
export interface ChannelLike {
  name: string;
  type: string;
  scope: Record<string, unknown>;
  severities: string[];
  enabled: boolean;
  config: Record<string, unknown>;
}

export function emptyChannelForm(): ChannelForm {
  return {
    name: "", type: "slack", recipients: "", fromAddress: "", smtpUrl: "", clearSmtpUrl: false,
    slackUrl: "", webhookUrl: "", secret: "", scope: "org", workspaceId: "", projectId: "",
    severities: [...SEVERITIES], enabled: true,
  };
}

/** A stored channel as the edit form starts: public fields filled, secrets empty. */
export function channelToForm(c: ChannelLike): ChannelForm {
  const form = emptyChannelForm();
  const scope = c.scope;
  return {
    ...form, name: c.name, type: (["email", "slack", "webhook"].includes(c.type) ? c.type : "webhook") as ChannelType,
    recipients: Array.isArray(c.config.recipients) ? (c.config.recipients as unknown[]).map(String).join(", ") : "",
    fromAddress: typeof c.config.from_address === "string" ? c.config.from_address : "",
    scope: typeof scope.project_id === "string" ? "project" : typeof scope.workspace_id === "string" ? "workspace" : "org",
    workspaceId: typeof scope.workspace_id === "string" ? scope.workspace_id : "",
    projectId: typeof scope.project_id === "string" ? scope.project_id : "",
    severities: SEVERITIES.filter((s) => c.severities.includes(s)),
    enabled: c.enabled,
  };
}

export function splitRecipients(text: string): string[] {
  return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

const EMAIL = /^[^\s@<>,]+@[^\s@<>,]+\.[^\s@<>,]+$/;

export type ChannelErrors = Record<string, string>;

function scopeBody(form: ChannelForm, errors: ChannelErrors): Record<string, unknown> {
  if (form.scope === "workspace") {
    if (!form.workspaceId) errors.scope = "Choose the workspace.";
    return { workspace_id: form.workspaceId };
  }
  if (form.scope === "project") {
    if (!form.projectId) errors.scope = "Choose the project.";
    return { project_id: form.projectId };
  }
  return { org: true };
}

function emailConfig(form: ChannelForm, errors: ChannelErrors): Record<string, unknown> {
  const recipients = splitRecipients(form.recipients);
  if (recipients.length === 0 || recipients.length > 100) errors["config.recipients"] = "Enter 1 to 100 email addresses.";
  const bad = recipients.find((r) => !EMAIL.test(r));
  if (bad) errors["config.recipients"] = `"${bad}" is not an email address.`;
  const config: Record<string, unknown> = { recipients };
  if (form.fromAddress.trim()) config.from_address = form.fromAddress.trim();
  return config;
}

/** The body of ``POST .../notification-channels``, or the problems by field. */
export function createBody(form: ChannelForm): { body: Record<string, unknown> } | { errors: ChannelErrors } {
  const errors: ChannelErrors = {};
  if (!form.name.trim()) errors.name = "Give the channel a name.";
  if (form.severities.length === 0) errors.severities = "Choose at least one severity.";
  let config: Record<string, unknown>;
  if (form.type === "email") {
    config = emailConfig(form, errors);
    if (form.smtpUrl.trim()) config.smtp_url = form.smtpUrl.trim();
  } else if (form.type === "slack") {
    if (!form.slackUrl.trim()) errors["config.webhook_url"] = "Enter the Slack incoming-webhook URL.";
    config = { webhook_url: form.slackUrl.trim() };
  } else {
    if (!form.webhookUrl.trim()) errors["config.url"] = "Enter the URL to call.";
    config = { url: form.webhookUrl.trim() };
    if (form.secret) {
      if (form.secret.length < 16 || form.secret.length > 512) errors["config.secret"] = "A signing secret has 16 to 512 characters (or leave it empty: one is generated).";
      config.secret = form.secret;
    }
  }
  const scope = scopeBody(form, errors);
  if (Object.keys(errors).length > 0) return { errors };
  return { body: { name: form.name.trim(), type: form.type, config, scope, severities: form.severities, enabled: form.enabled } };
}

/** The body of ``PATCH .../notification-channels/{id}``: the public fields, and a config
 * only when something in it changed. A secret not typed is never sent (the stored one is
 * kept): for Slack and webhooks the config is left out; a webhook's new secret needs its
 * URL typed too (the config is replaced as a whole); an email channel's new recipients or
 * sender with a stored SMTP URL need that URL again, or "remove" ticked. */
export function updateBody(form: ChannelForm, before: ChannelLike): { body: Record<string, unknown> } | { errors: ChannelErrors } {
  const errors: ChannelErrors = {};
  if (!form.name.trim()) errors.name = "Give the channel a name.";
  if (form.severities.length === 0) errors.severities = "Choose at least one severity.";
  const body: Record<string, unknown> = {
    name: form.name.trim(), scope: scopeBody(form, errors), severities: form.severities, enabled: form.enabled,
  };
  if (form.type === "email") {
    const config = emailConfig(form, errors);
    const was = channelToForm(before);
    const publicChanged = splitRecipients(form.recipients).join(",") !== splitRecipients(was.recipients).join(",")
      || form.fromAddress.trim() !== was.fromAddress.trim();
    const hasStoredSmtp = typeof before.config.smtp_url_hint === "string";
    if (form.smtpUrl.trim()) {
      body.config = { ...config, smtp_url: form.smtpUrl.trim() };
    } else if (form.clearSmtpUrl && hasStoredSmtp) {
      body.config = config;
    } else if (publicChanged) {
      if (hasStoredSmtp) errors["config.smtp_url"] = "The SMTP URL is write-only: enter it again to change the recipients or sender, or tick “Remove the SMTP URL”.";
      body.config = config;
    }
  } else if (form.type === "slack") {
    if (form.slackUrl.trim()) body.config = { webhook_url: form.slackUrl.trim() };
  } else {
    if (form.secret && (form.secret.length < 16 || form.secret.length > 512)) errors["config.secret"] = "A signing secret has 16 to 512 characters.";
    if (form.webhookUrl.trim()) {
      body.config = form.secret ? { url: form.webhookUrl.trim(), secret: form.secret } : { url: form.webhookUrl.trim() };
    } else if (form.secret) {
      errors["config.url"] = "The URL is write-only: enter it again to change the signing secret.";
    }
  }
  if (Object.keys(errors).length > 0) return { errors };
  return { body };
}

/** The channel's target for the table: recipients, or the hint of a secret URL. */
export function describeTarget(c: ChannelLike): string {
  const cfg = c.config;
  if (c.type === "email") {
    const list = Array.isArray(cfg.recipients) ? (cfg.recipients as unknown[]).map(String) : [];
    const shown = list.slice(0, 3).join(", ") + (list.length > 3 ? ` and ${list.length - 3} more` : "");
    return typeof cfg.smtp_url_hint === "string" ? `${shown} (SMTP host ${cfg.smtp_url_hint})` : shown;
  }
  if (c.type === "slack") return typeof cfg.webhook_url_hint === "string" ? `webhook host ${cfg.webhook_url_hint}` : "webhook";
  const host = typeof cfg.url_hint === "string" ? `host ${cfg.url_hint}` : "URL";
  return cfg.has_secret ? `${host} · signed` : host;
}

/** The scope for the table, with the names the page knows. */
export function describeScope(scope: Record<string, unknown>, names: { workspaces: ReadonlyMap<string, string>; projects: ReadonlyMap<string, string> }): string {
  if (typeof scope.project_id === "string") return `Project ${names.projects.get(scope.project_id) ?? scope.project_id}`;
  if (typeof scope.workspace_id === "string") return `Workspace ${names.workspaces.get(scope.workspace_id) ?? scope.workspace_id}`;
  return "Organization";
}
