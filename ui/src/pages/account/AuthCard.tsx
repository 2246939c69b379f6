import type { ReactNode } from "react";
import "./account.css";

/** The frame of the pages a visitor sees before the app: the brand, then a card. */
export function AuthCard({ children }: { children: ReactNode }) {
  return (
    <main className="auth">
      <div className="auth-card">
        <div className="auth-brand"><span className="brand" aria-hidden="true">⬢</span> Apiary</div>
        {children}
      </div>
    </main>
  );
}
