import { describe, expect, it } from "vitest";
import { type ChannelForm, type ChannelLike, channelToForm, createBody, describeScope, describeTarget, emptyChannelForm, splitRecipients, updateBody } from "./channels";

function form(over: Partial<ChannelForm> = {}): ChannelForm {
  return { ...emptyChannelForm(), name: "on-call", ...over };
}

const slack: ChannelLike = { name: "on-call", type: "slack", scope: { org: true }, severities: ["critical", "warning", "resolution"], enabled: true, config: { webhook_url_hint: "…com" } };
const webhook: ChannelLike = { name: "hook", type: "webhook", scope: { project_id: "p1" }, severities: ["critical"], enabled: true, config: { url_hint: "…e.io", has_secret: true } };
const email: ChannelLike = { name: "mail", type: "email", scope: { workspace_id: "w1" }, severities: ["warning"], enabled: false, config: { recipients: ["a@x.io", "b@x.io"], smtp_url_hint: "…l.io" } };

describe("createBody", () => {
  it("makes each type's body with its scope and severities", () => {
    expect(createBody(form({ slackUrl: " https://hooks.slack.com/services/T/B/x " }))).toEqual({ body: {
      name: "on-call", type: "slack", config: { webhook_url: "https://hooks.slack.com/services/T/B/x" }, scope: { org: true },
      severities: ["critical", "warning", "resolution"], enabled: true } });
    const hook = createBody(form({ type: "webhook", webhookUrl: "https://h.example.com/a", secret: "s".repeat(20), scope: "project", projectId: "p1", severities: ["critical"] }));
    expect(hook).toEqual({ body: { name: "on-call", type: "webhook", config: { url: "https://h.example.com/a", secret: "s".repeat(20) },
      scope: { project_id: "p1" }, severities: ["critical"], enabled: true } });
    // No secret typed: the server generates one (returned once).
    const generated = createBody(form({ type: "webhook", webhookUrl: "https://h.example.com/a" }));
    expect("body" in generated && generated.body.config).toEqual({ url: "https://h.example.com/a" });
    expect(createBody(form({ type: "email", recipients: "a@x.io, b@x.io\nc@x.io", scope: "workspace", workspaceId: "w1" })))
      .toMatchObject({ body: { config: { recipients: ["a@x.io", "b@x.io", "c@x.io"] }, scope: { workspace_id: "w1" } } });
  });

  it("names the field of each problem as the API does", () => {
    expect(createBody(form({ name: "", slackUrl: "" }))).toEqual({ errors: { name: "Give the channel a name.", "config.webhook_url": "Enter the Slack incoming-webhook URL." } });
    expect(createBody(form({ type: "webhook", webhookUrl: "https://x.io", secret: "short" }))).toMatchObject({ errors: { "config.secret": expect.stringMatching(/16 to 512/) } });
    expect(createBody(form({ type: "email", recipients: "a@x.io, nope" }))).toEqual({ errors: { "config.recipients": "\"nope\" is not an email address." } });
    expect(createBody(form({ type: "email", recipients: "" }))).toMatchObject({ errors: { "config.recipients": expect.any(String) } });
    expect(createBody(form({ slackUrl: "https://x.io", severities: [] }))).toEqual({ errors: { severities: "Choose at least one severity." } });
    expect(createBody(form({ slackUrl: "https://x.io", scope: "project", projectId: "" }))).toEqual({ errors: { scope: "Choose the project." } });
  });
});

describe("updateBody: secrets are write-only", () => {
  it("leaves a Slack or webhook config out unless a secret is typed", () => {
    const body = updateBody({ ...channelToForm(slack), name: "renamed" }, slack);
    expect(body).toEqual({ body: { name: "renamed", scope: { org: true }, severities: ["critical", "warning", "resolution"], enabled: true } });
    expect(updateBody({ ...channelToForm(slack), slackUrl: "https://hooks.slack.com/new" }, slack))
      .toMatchObject({ body: { config: { webhook_url: "https://hooks.slack.com/new" } } });
    expect(updateBody(channelToForm(webhook), webhook)).not.toHaveProperty("body.config");
  });

  it("sends a webhook's new URL alone (the server keeps the secret), and a new secret only with its URL", () => {
    expect(updateBody({ ...channelToForm(webhook), webhookUrl: "https://new.example.com" }, webhook))
      .toMatchObject({ body: { config: { url: "https://new.example.com" } } });
    expect(updateBody({ ...channelToForm(webhook), secret: "x".repeat(32) }, webhook))
      .toEqual({ errors: { "config.url": "The URL is write-only: enter it again to change the signing secret." } });
    expect(updateBody({ ...channelToForm(webhook), webhookUrl: "https://new.example.com", secret: "x".repeat(32) }, webhook))
      .toMatchObject({ body: { config: { url: "https://new.example.com", secret: "x".repeat(32) } } });
  });

  it("never drops an email channel's stored SMTP URL by accident", () => {
    const same = updateBody(channelToForm(email), email);
    expect(same).not.toHaveProperty("body.config");
    expect(updateBody({ ...channelToForm(email), recipients: "c@x.io" }, email)).toMatchObject({ errors: { "config.smtp_url": expect.stringMatching(/write-only/) } });
    expect(updateBody({ ...channelToForm(email), recipients: "c@x.io", clearSmtpUrl: true }, email))
      .toMatchObject({ body: { config: { recipients: ["c@x.io"] } } });
    expect(updateBody({ ...channelToForm(email), recipients: "c@x.io", smtpUrl: "smtps://u:p@mail.x.io" }, email))
      .toMatchObject({ body: { config: { recipients: ["c@x.io"], smtp_url: "smtps://u:p@mail.x.io" } } });
    const noSmtp = { ...email, config: { recipients: ["a@x.io"] } };
    expect(updateBody({ ...channelToForm(noSmtp), recipients: "c@x.io" }, noSmtp)).toMatchObject({ body: { config: { recipients: ["c@x.io"] } } });
  });
});

describe("the table", () => {
  it("reads a stored channel back into the form, secrets empty", () => {
    expect(channelToForm(email)).toMatchObject({ type: "email", recipients: "a@x.io, b@x.io", smtpUrl: "", scope: "workspace", workspaceId: "w1", severities: ["warning"], enabled: false });
    expect(channelToForm(webhook)).toMatchObject({ scope: "project", projectId: "p1", webhookUrl: "", secret: "" });
  });
  it("shows hints, never a secret", () => {
    expect(describeTarget(slack)).toBe("webhook host …com");
    expect(describeTarget(webhook)).toBe("host …e.io · signed");
    expect(describeTarget(email)).toBe("a@x.io, b@x.io (SMTP host …l.io)");
    expect(describeTarget({ ...email, config: { recipients: ["1@x.io", "2@x.io", "3@x.io", "4@x.io", "5@x.io"] } })).toBe("1@x.io, 2@x.io, 3@x.io and 2 more");
  });
  it("names the scope", () => {
    const names = { workspaces: new Map([["w1", "prod"]]), projects: new Map<string, string>() };
    expect(describeScope({ workspace_id: "w1" }, names)).toBe("Workspace prod");
    expect(describeScope({ project_id: "p9" }, names)).toBe("Project p9");
    expect(describeScope({ org: true }, names)).toBe("Organization");
  });
  it("splits recipients on commas, semicolons and whitespace", () => {
    expect(splitRecipients(" a@x.io;b@x.io ,\n c@x.io ")).toEqual(["a@x.io", "b@x.io", "c@x.io"]);
  });
});
