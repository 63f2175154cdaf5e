// The review's keys: which command a key pressed asks for (the page does it). The README's
// table and the page's own "Keys" list say the same.

const typing = (target) =>
  target instanceof HTMLElement &&
  (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));

const LETTERS = {
  a: { name: "approve" },
  x: { name: "tick" },
  t: { name: "ask", action: "add" },
  "+": { name: "ask", action: "add" },
  r: { name: "ask", action: "remove" },
  "-": { name: "ask", action: "remove" },
  "?": { name: "help" },
};

// The command `event` asks for, or null: {name: "move", by, extend}, {name: "jump", to,
// extend}, "loupe", "escape", "approve", "tick", {name: "reject", number}, {name: "ask",
// action}, "selectAll", "help", or "leaveField" (Esc in a field). `inLoupe`: arrows up and down
// then move by one; `columns`: by a row of the grid otherwise.
export const command = (event, { inLoupe, columns }) => {
  const key = event.key;
  if (typing(event.target)) {
    return key === "Escape" ? { name: "leaveField" } : null;
  }
  const held = event.ctrlKey || event.metaKey;
  if (held && key.toLowerCase() === "a") {
    return { name: "selectAll" };
  }
  if (held || event.altKey) {
    return null;
  }
  const extend = event.shiftKey;
  const step = inLoupe ? 1 : columns;
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: step, ArrowUp: -step, j: 1, k: -1 };
  const by = moves[key] ?? moves[key.toLowerCase()];
  if (by !== undefined) {
    return { name: "move", by, extend };
  }
  if (key === "Home" || key === "End") {
    return { name: "jump", to: key === "Home" ? "first" : "last", extend };
  }
  if (key === " " || key === "Enter") {
    return { name: "loupe" };
  }
  if (key === "Escape") {
    return { name: "escape" };
  }
  if (/^[1-9]$/.test(key)) {
    return { name: "reject", number: Number(key) };
  }
  return LETTERS[key.toLowerCase()] || null;
};
