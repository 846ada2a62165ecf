// h builds an element: h('button', {class: 'x', onclick: f, 'aria-label': 'Send'}, 'text', child).
// Attributes starting with "on" become listeners; false, null and undefined attributes and
// children are left out, so conditional markup reads as one expression.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === false || c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace swaps an element's children, keeping focus on the control that had it when the
// new markup has one with the same data-focus key (lists re-render as events arrive; a
// keyboard user must not be thrown back to the top of the page).
export function replace(el, ...children) {
  const active = document.activeElement;
  const key = active && el.contains(active) ? active.dataset.focus : undefined;
  el.replaceChildren();
  append(el, children);
  if (key) {
    const again = el.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// svg icons, decorative: the control around them carries the name.
const icons = {
  chat: 'M4 5h16v11H9l-5 4V5z',
  bell_off: 'M12 22a2 2 0 0 0 2-2h-4a2 2 0 0 0 2 2zm7-5-1-1.5V11a6 6 0 0 0-4.5-5.8V4a1.5 1.5 0 0 0-3 0v1.2A6 6 0 0 0 6 11v4.5L5 17h14zM3 3l18 18',
  dots: 'M12 6.5a1.5 1.5 0 1 1 0-3 1.5 1.5 0 0 1 0 3zm0 7a1.5 1.5 0 1 1 0-3 1.5 1.5 0 0 1 0 3zm0 7a1.5 1.5 0 1 1 0-3 1.5 1.5 0 0 1 0 3z',
  pen: 'M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4',
  minus: 'M6 12h12',
  check: 'M5 12l5 5 9-10',
  clip: 'M16 7l-7.5 7.5a2 2 0 0 0 3 3L19 10a4 4 0 0 0-6-6l-7.5 7.5a6 6 0 0 0 8.5 8.5L20 14',
  close: 'M6 6l12 12M18 6 6 18',
};

export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', icons[name]);
  svg.append(path);
  return svg;
}
