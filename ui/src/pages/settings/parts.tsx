// What every settings tab shares: sections, API errors as messages, the shown-once secret,
// and a confirmation dialog for what cannot be undone.
import { AlertDialog } from "radix-ui";
import { type ReactNode, useId, useState } from "react";
import { ApiError } from "../../api/client";

/** A titled block of a tab (h2), with a one-line explanation and actions at its right. */
export function Section({ title, description, actions, children }: {
  title: string;
  description?: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
}) {
  const id = useId();
  return (
    <section className="settings-section" aria-labelledby={id}>
      <div className="settings-section-head">
        <div>
          <h2 id={id}>{title}</h2>
          {description && <p className="muted">{description}</p>}
        </div>
        {actions}
      </div>
      {children}
    </section>
  );
}

/** An API error as a message: a 403 says the permission is missing (never a crash). */
export function ErrorNote({ error, what }: { error: Error | null | undefined; what?: string }) {
  if (!error) return null;
  const denied = error instanceof ApiError && (error.status === 403 || error.status === 401);
  return (
    <p className="error settings-error" role="alert">
      {denied
        ? <><strong>You don't have permission{what ? ` to ${what}` : ""}.</strong> {error.message}</>
        : <>{what ? `Could not ${what}: ` : ""}{error.message}</>}
    </p>
  );
}

/** A secret the API hands out once: a clear warning, the value, a copy button. */
export function SecretOnce({ label, secret, children, onDone, lost }: {
  label: string;
  secret: string;
  children?: ReactNode;
  onDone: () => void;
  /** What to do when it is lost. */
  lost?: string;
}) {
  const [copied, setCopied] = useState<"yes" | "failed" | null>(null);
  const id = useId();
  async function copy() {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("yes");
    } catch {
      setCopied("failed");
    }
  }
  return (
    <div className="secret-once" role="region" aria-label={label}>
      <p className="secret-warning">
        <strong>Copy this now: it will not be shown again.</strong> Only a hash is stored; {lost ?? "if you lose it, revoke it and create another."}
      </p>
      {children}
      <div className="secret-row">
        <label htmlFor={id}>{label}</label>
        <input id={id} readOnly value={secret} className="secret-value" spellCheck={false}
          onFocus={(e) => e.currentTarget.select()} />
        <button type="button" onClick={() => void copy()}>Copy</button>
        <button type="button" className="primary" onClick={onDone}>Done</button>
      </div>
      <p className="muted" role="status">
        {copied === "yes" ? "Copied to the clipboard." : copied === "failed" ? "The browser refused the clipboard: select the value and copy it." : ""}
      </p>
    </div>
  );
}

/** A button that asks first (an alert dialog: Escape or Cancel keep things as they are). */
export function ConfirmButton({ label, title, description, confirm, onConfirm, disabled, className }: {
  label: string;
  title: string;
  description: ReactNode;
  confirm: string;
  onConfirm: () => void;
  disabled?: boolean;
  className?: string;
}) {
  return (
    <AlertDialog.Root>
      <AlertDialog.Trigger asChild>
        <button type="button" className={className ?? "danger"} disabled={disabled}>{label}</button>
      </AlertDialog.Trigger>
      <AlertDialog.Portal>
        <AlertDialog.Overlay className="dialog-overlay" />
        <AlertDialog.Content className="dialog">
          <AlertDialog.Title>{title}</AlertDialog.Title>
          <AlertDialog.Description>{description}</AlertDialog.Description>
          <div className="dialog-actions">
            <AlertDialog.Cancel asChild><button type="button">Cancel</button></AlertDialog.Cancel>
            <AlertDialog.Action asChild>
              <button type="button" className="danger solid" onClick={onConfirm}>{confirm}</button>
            </AlertDialog.Action>
          </div>
        </AlertDialog.Content>
      </AlertDialog.Portal>
    </AlertDialog.Root>
  );
}

/** A table's placeholder row while loading or when empty. */
export function EmptyRow({ colSpan, loading, children }: { colSpan: number; loading: boolean; children: ReactNode }) {
  return (
    <tr><td colSpan={colSpan} className="muted empty-cell">{loading ? "Loading…" : children}</td></tr>
  );
}

/** Permissions as small badges. */
export function Permissions({ values }: { values: readonly string[] }) {
  if (values.length === 0) return <span className="muted">none</span>;
  return <span className="perm-list">{values.map((p) => <code key={p} className="perm">{p}</code>)}</span>;
}
