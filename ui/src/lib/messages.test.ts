import { describe, expect, it } from "vitest";
import { conversationOf } from "./messages";

describe("conversationOf", () => {
  it("reads chat_history and the answer as a conversation", () => {
    const conv = conversationOf(
      { chat_history: [{ role: "system", content: "Be brief." }, { role: "user", content: [{ type: "text", text: "Hi" }] }] },
      { role: "assistant", content: "Hello!", tool_calls: [{ id: "c1", type: "function", function: { name: "lookup", arguments: "{\"q\":1}" } }] },
    );
    expect(conv).toEqual([
      { role: "system", text: "Be brief.", toolCalls: [] },
      { role: "user", text: "Hi", toolCalls: [] },
      { role: "assistant", text: "Hello!", toolCalls: [{ id: "c1", name: "lookup", arguments: "{\"q\":1}" }] },
    ]);
  });

  it("takes the answer from content alone or from choices", () => {
    const hist = { chat_history: [{ role: "user", content: "q" }] };
    expect(conversationOf(hist, { content: "a" }).at(-1)).toEqual({ role: "assistant", text: "a", toolCalls: [] });
    expect(conversationOf(hist, { choices: [{ message: { role: "assistant", content: "b" } }] }).at(-1)?.text).toBe("b");
  });

  it("finds no conversation where there are no messages", () => {
    expect(conversationOf({ query: "x" }, { content: "a" })).toEqual([]);
    expect(conversationOf(null, null)).toEqual([]);
  });
});
