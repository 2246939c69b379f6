// Chat messages of an event, for the conversation view: inputs.chat_history (OpenAI-style
// messages, as the OTLP mapping and the HoneyHive SDK store them) followed by the answer in
// outputs (a message, or outputs.choices, or outputs.content). Nothing that is not a
// message is turned into one: an event without them has no conversation (empty list).

export interface ToolCall {
  id?: string;
  name: string;
  arguments: string;
}

export interface ChatMessage {
  role: string;
  text: string;
  toolCalls: ToolCall[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (isRecord(part) && typeof part.text === "string" ? part.text
        : typeof part === "string" ? part : JSON.stringify(part)))
      .join("\n");
  }
  if (content == null) return "";
  return JSON.stringify(content);
}

function toolCallsOf(m: Record<string, unknown>): ToolCall[] {
  const calls = m.tool_calls;
  if (!Array.isArray(calls)) return [];
  return calls.filter(isRecord).map((c) => {
    const fn = isRecord(c.function) ? c.function : c;
    const args = fn.arguments;
    return {
      id: typeof c.id === "string" ? c.id : undefined,
      name: typeof fn.name === "string" ? fn.name : "(tool)",
      arguments: typeof args === "string" ? args : JSON.stringify(args ?? {}),
    };
  });
}

export function toMessage(v: unknown, defaultRole?: string): ChatMessage | null {
  if (!isRecord(v)) return null;
  const role = typeof v.role === "string" ? v.role : defaultRole;
  if (role === undefined) return null;
  if (!("content" in v) && !Array.isArray(v.tool_calls)) return null;
  return { role, text: textOf(v.content), toolCalls: toolCallsOf(v) };
}

export function conversationOf(inputs: unknown, outputs: unknown): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (isRecord(inputs) && Array.isArray(inputs.chat_history)) {
    for (const m of inputs.chat_history) {
      const message = toMessage(m);
      if (message) out.push(message);
    }
  }
  if (out.length === 0) return out; // an answer alone is not a conversation
  if (isRecord(outputs)) {
    const direct = toMessage(outputs, "assistant");
    if (direct) {
      out.push(direct);
    } else if (Array.isArray(outputs.choices) && outputs.choices.length > 0) {
      const first = outputs.choices[0];
      const message = toMessage(isRecord(first) && isRecord(first.message) ? first.message : first, "assistant");
      if (message) out.push(message);
    }
  }
  return out;
}
