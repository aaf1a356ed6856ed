// Small DOM helpers of the web client.

export const $ = (sel) => document.querySelector(sel);

// el builds an element; strings and `text` always become text nodes, never HTML.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

export function showFieldError(id, message, input) {
  const node = document.getElementById(id);
  node.textContent = message;
  node.hidden = !message;
  if (input) input.setAttribute('aria-invalid', String(!!message));
}

export function formatTime(ts) {
  const d = new Date(ts);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === new Date().toDateString()) return time;
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
}

// storage wraps localStorage; every call may throw (storage disabled, over quota).
export const storage = {
  get: (key) => localStorage.getItem(key),
  set: (key, value) => localStorage.setItem(key, value),
  remove: (key) => localStorage.removeItem(key),
};
