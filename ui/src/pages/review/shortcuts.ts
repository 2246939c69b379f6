// The queue page's keyboard shortcuts: which key does what, and when a key is the page's
// at all (never while the reviewer types in a field, never with a modifier held).

export type ShortcutAction =
  | { type: "rate"; value: 1 | 2 | 3 | 4 | 5 }
  | { type: "thumbs"; value: boolean }
  | { type: "next" }
  | { type: "previous" }
  | { type: "skip" }
  | { type: "submit" }
  | { type: "help" }
  | { type: "close" };

/** What the help dialog lists, in its order. */
export const SHORTCUTS: ReadonlyArray<readonly [keys: string, what: string]> = [
  ["1 – 5", "Rate (the queue's rating)"],
  ["u / d", "Thumbs up / thumbs down"],
  ["Enter", "Submit the score and open the next item"],
  ["s", "Skip this item"],
  ["j or →", "Next item"],
  ["k or ←", "Previous item"],
  ["?", "Show or hide these shortcuts"],
  ["Esc", "Close this list"],
];

/** The part of a DOM element the decision needs (an Element satisfies it). */
export interface KeyTarget {
  tagName?: string;
  isContentEditable?: boolean;
  type?: string;
}

export interface KeyLike {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
  target: KeyTarget | null;
}

const CHOICE_INPUTS = new Set(["radio", "checkbox", "button", "submit", "reset", "range"]);

/** Whether keys typed at ``target`` are text for it (an input, a text area, a select, an
 * editor): then no shortcut fires. */
export function isTypingTarget(target: KeyTarget | null): boolean {
  if (!target) return false;
  if (target.isContentEditable) return true;
  const tag = (target.tagName ?? "").toUpperCase();
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") return !CHOICE_INPUTS.has((target.type ?? "text").toLowerCase());
  return false;
}

/** The action for a key press, or null when the key is not the page's. */
export function actionForKey(e: KeyLike): ShortcutAction | null {
  if (e.ctrlKey || e.metaKey || e.altKey) return null;
  if (isTypingTarget(e.target)) return null;
  const tag = (e.target?.tagName ?? "").toUpperCase();
  const type = (e.target?.type ?? "").toLowerCase();
  // Native keys of focused controls stay theirs: Enter on a button or a link, arrows that
  // move between radio buttons.
  const onButton = tag === "BUTTON" || tag === "A" || tag === "SUMMARY";
  const onChoice = tag === "INPUT" && (type === "radio" || type === "range");
  switch (e.key) {
    case "1": case "2": case "3": case "4": case "5":
      return { type: "rate", value: Number(e.key) as 1 | 2 | 3 | 4 | 5 };
    case "u": return { type: "thumbs", value: true };
    case "d": return { type: "thumbs", value: false };
    case "s": return { type: "skip" };
    case "j": return { type: "next" };
    case "k": return { type: "previous" };
    case "ArrowRight": return onChoice ? null : { type: "next" };
    case "ArrowLeft": return onChoice ? null : { type: "previous" };
    case "Enter": return onButton ? null : { type: "submit" };
    case "?": return { type: "help" };
    case "Escape": return { type: "close" };
    default: return null;
  }
}
