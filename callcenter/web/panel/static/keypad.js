// DTMF keypad: twelve buttons in telephone order (ITU-T E.161 layout).

export const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
const NAMES = { "*": "étoile", "#": "dièse" };

/**
 * Build the keypad buttons in `container`; `onKey(digit)` on activation.
 * Returns the buttons (to enable/disable them).
 */
export function buildKeypad(container, onKey) {
  const buttons = [];
  for (const key of KEYS) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = key;
    button.dataset.key = key;
    // The accessible name starts with the visible text (WCAG 2.5.3 Label in Name).
    if (NAMES[key]) button.setAttribute("aria-label", `${key} ${NAMES[key]}`);
    button.addEventListener("click", () => onKey(key));
    container.append(button);
    buttons.push(button);
  }
  return buttons;
}
