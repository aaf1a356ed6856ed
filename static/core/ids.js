// User names, conversation ids and message bodies as the wire protocol (docs/PROTOCOL.md)
// defines them. Pure functions: no DOM, no state.

export const NAME_RE = /^[a-z0-9_.-]{1,32}$/;
export const MAX_BODY_BYTES = 4096;

const encoder = new TextEncoder();

export const byteLength = (s) => encoder.encode(s).length;
export const normalizeName = (s) => String(s || '').trim().toLowerCase();
export const dmId = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);
export const kindOf = (id) => (id === 'public' ? 'public' : id.startsWith('dm:') ? 'direct' : id.startsWith('g:') ? 'group' : 'other');

// peerOf is the other member of a direct conversation (me for notes to self).
export const peerOf = (id, me) => id.split(':').slice(1).find((u) => u !== me) || me;

// nameProblem explains what is wrong with a user name, or answers ''.
export function nameProblem(name) {
  if (!name) return 'Enter a user name.';
  if (name.length > 32) return 'A user name has at most 32 characters.';
  return NAME_RE.test(name) ? '' : 'Use only lowercase letters a–z, digits, “_”, “-” and “.”';
}

// newCid is a fresh client id for a send.
export function newCid() {
  if (crypto.randomUUID) return crypto.randomUUID(); // only in secure contexts
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}
