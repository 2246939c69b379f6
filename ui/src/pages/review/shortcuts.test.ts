import { describe, expect, it } from "vitest";
import { actionForKey, isTypingTarget } from "./shortcuts";

const body = { tagName: "BODY" };

describe("actionForKey", () => {
  it("maps the digits 1 to 5 to a rating, other digits to nothing", () => {
    for (const n of [1, 2, 3, 4, 5]) expect(actionForKey({ key: String(n), target: body })).toEqual({ type: "rate", value: n });
    expect(actionForKey({ key: "0", target: body })).toBeNull();
    expect(actionForKey({ key: "6", target: body })).toBeNull();
  });

  it("maps navigation, skip, submit, help and close", () => {
    expect(actionForKey({ key: "j", target: body })).toEqual({ type: "next" });
    expect(actionForKey({ key: "ArrowRight", target: body })).toEqual({ type: "next" });
    expect(actionForKey({ key: "k", target: body })).toEqual({ type: "previous" });
    expect(actionForKey({ key: "ArrowLeft", target: body })).toEqual({ type: "previous" });
    expect(actionForKey({ key: "s", target: body })).toEqual({ type: "skip" });
    expect(actionForKey({ key: "Enter", target: body })).toEqual({ type: "submit" });
    expect(actionForKey({ key: "?", target: body })).toEqual({ type: "help" });
    expect(actionForKey({ key: "Escape", target: body })).toEqual({ type: "close" });
    expect(actionForKey({ key: "u", target: body })).toEqual({ type: "thumbs", value: true });
    expect(actionForKey({ key: "d", target: body })).toEqual({ type: "thumbs", value: false });
    expect(actionForKey({ key: "x", target: body })).toBeNull();
  });

  it("never fires while typing in a field", () => {
    for (const target of [{ tagName: "INPUT", type: "text" }, { tagName: "INPUT" }, { tagName: "textarea" },
      { tagName: "SELECT" }, { tagName: "DIV", isContentEditable: true }, { tagName: "INPUT", type: "search" }]) {
      for (const key of ["1", "s", "j", "k", "?", "Enter", "ArrowLeft"]) expect(actionForKey({ key, target })).toBeNull();
    }
  });

  it("never fires with a modifier held (the browser's own shortcuts)", () => {
    expect(actionForKey({ key: "1", ctrlKey: true, target: body })).toBeNull();
    expect(actionForKey({ key: "k", metaKey: true, target: body })).toBeNull();
    expect(actionForKey({ key: "s", altKey: true, target: body })).toBeNull();
  });

  it("leaves focused controls their own keys, and works from them otherwise", () => {
    expect(actionForKey({ key: "Enter", target: { tagName: "BUTTON" } })).toBeNull();
    expect(actionForKey({ key: "Enter", target: { tagName: "A" } })).toBeNull();
    expect(actionForKey({ key: "3", target: { tagName: "BUTTON" } })).toEqual({ type: "rate", value: 3 });
    const radio = { tagName: "INPUT", type: "radio" };
    expect(actionForKey({ key: "ArrowRight", target: radio })).toBeNull();
    expect(actionForKey({ key: "j", target: radio })).toEqual({ type: "next" });
    expect(actionForKey({ key: "Enter", target: radio })).toEqual({ type: "submit" });
  });
});

describe("isTypingTarget", () => {
  it("counts text fields, not buttons or choices", () => {
    expect(isTypingTarget(null)).toBe(false);
    expect(isTypingTarget({ tagName: "INPUT", type: "checkbox" })).toBe(false);
    expect(isTypingTarget({ tagName: "INPUT", type: "radio" })).toBe(false);
    expect(isTypingTarget({ tagName: "INPUT", type: "number" })).toBe(true);
    expect(isTypingTarget({ tagName: "BUTTON" })).toBe(false);
  });
});
