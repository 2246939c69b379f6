// The two planes' typed clients (openapi-fetch over the types generated from their specs).
//
// The control plane: same origin as the page (it serves the app), authenticated by the
// HttpOnly session cookie; unsafe requests carry the session's CSRF token from the
// apiary_csrf cookie as X-CSRF-Token. The data plane: called directly (its own origin under
// a separate deployment) with a short-lived data-plane token the control plane issues for
// the current project (POST /v1/auth/token); the token lives in memory only. No API key
// ever reaches the browser.
import createClient, { type Middleware } from "openapi-fetch";
import type { paths as ControlPaths } from "./control";
import type { components as DataComponents, paths as DataPaths } from "./data";

export type EventOut = DataComponents["schemas"]["EventOut"];
export type ExportRequest = DataComponents["schemas"]["ExportRequest"];

/** Where the control plane (and this app) is mounted, without a trailing slash. */
export function controlPlaneBase(): string {
  return new URL(".", document.baseURI).href.replace(/\/$/, "");
}

/** The router's basename: the path of the mount point. */
export function appBasename(): string {
  return new URL(".", document.baseURI).pathname.replace(/\/$/, "") || "/";
}

export function readCookie(name: string): string | null {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

/** An API answer that is not 2xx, with the planes' {message, errorCode} body. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly errorCode: string, message: string,
    /** The body's ``details`` (e.g. ``field``: the request field a 400 is about). */
    readonly details: Readonly<Record<string, unknown>> = {}) {
    super(message);
  }
}

export function apiError(status: number, body: unknown): ApiError {
  const b = (typeof body === "object" && body !== null ? body : {}) as { message?: unknown; errorCode?: unknown; details?: unknown };
  const details = typeof b.details === "object" && b.details !== null ? b.details as Record<string, unknown> : {};
  return new ApiError(status, typeof b.errorCode === "string" ? b.errorCode : "http_error",
    typeof b.message === "string" ? b.message : `request failed (${status})`, details);
}

const csrf: Middleware = {
  onRequest({ request }) {
    if (!["GET", "HEAD", "OPTIONS"].includes(request.method)) {
      const token = readCookie("apiary_csrf");
      if (token) request.headers.set("X-CSRF-Token", token);
    }
    return request;
  },
};

export const cp = createClient<ControlPaths>({ baseUrl: controlPlaneBase(), credentials: "same-origin" });
cp.use(csrf);

/** Unwrap an openapi-fetch answer: the data, or an ApiError. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.response.ok && result.data !== undefined) return result.data;
  throw apiError(result.response.status, result.error);
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

export interface DataPlane {
  id: string;
  name: string;
  url: string;
}

/** A data plane's client for one project, with its tokens from the control plane. */
export class ProjectDataPlane {
  readonly client: ReturnType<typeof createClient<DataPaths>>;
  private cached: CachedToken | null = null;
  private pending: Promise<string> | null = null;

  constructor(readonly plane: DataPlane, readonly projectId: string) {
    this.client = createClient<DataPaths>({ baseUrl: plane.url, credentials: "omit" });
    this.client.use({
      onRequest: async ({ request }) => {
        request.headers.set("Authorization", `Bearer ${await this.token()}`);
        return request;
      },
      onResponse: ({ response }) => {
        if (response.status === 401) this.cached = null; // expired or revoked: fetch anew
        return response;
      },
    });
  }

  /** A token for this project, renewed 30 s before it expires. */
  async token(): Promise<string> {
    if (this.cached && Date.now() < this.cached.expiresAt - 30_000) return this.cached.token;
    if (!this.pending) {
      this.pending = (async () => {
        try {
          const issued = unwrap(await cp.POST("/v1/auth/token", {
            body: { audience: this.plane.id, project_id: this.projectId },
          }));
          this.cached = { token: issued.access_token, expiresAt: Date.now() + issued.expires_in * 1000 };
          return issued.access_token;
        } finally {
          this.pending = null;
        }
      })();
    }
    return this.pending;
  }
}
