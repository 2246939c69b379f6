import type { ChatMessage } from "../lib/messages";

/** A chat read as a conversation: each message with its role, text and tool calls. */
export function Conversation({ messages }: { messages: readonly ChatMessage[] }) {
  return (
    <ol className="conversation" aria-label="Conversation">
      {messages.map((m, i) => (
        <li key={i} className={`msg role-${m.role}`}>
          <span className="role">{m.role}</span>
          {m.text && <div className="msg-text">{m.text}</div>}
          {m.toolCalls.map((t, j) => (
            <div key={j} className="tool-call">
              <span className="role">tool call</span> <code>{t.name}</code>
              <pre>{t.arguments}</pre>
            </div>
          ))}
        </li>
      ))}
    </ol>
  );
}
