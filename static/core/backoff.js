// Reconnect decisions: how long to wait, and what a close means. Pure functions.

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30000;
export const STABLE_MS = 10000; // a connection up this long resets the backoff
export const MAX_ATTEMPT = 20;

const AUTH_CLOSE_RE = /auth|token|user|credential|login|unauthori[sz]ed/i;

// backoffDelay is a full-jitter exponential delay: uniform in [0, min(cap, base·2^attempt)).
export function backoffDelay(attempt, random = Math.random) {
  return random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
}

// nextAttempt is the attempt counter after one more try (bounded, so 2^attempt stays finite).
export const nextAttempt = (attempt) => Math.min(attempt + 1, MAX_ATTEMPT);

// closeAction decides what a close event means: 'login' (the credentials were refused or the
// token expired: back to the login form, with a message) or 'reconnect' (with an optional
// banner). 4000 slow consumer, 1001 going away and network errors all come back.
export function closeAction(ev, hasToken) {
  const reason = ev.reason || '';
  if (ev.code === 1008 && AUTH_CLOSE_RE.test(reason)) return { action: 'login', message: reason };
  if (ev.code === 4001 && hasToken) return { action: 'login', message: 'Your session expired. Sign in again.' };
  const banner = reason && ![1000, 1001, 1006, 4000].includes(ev.code) ? `Disconnected (${ev.code}): ${reason}` : '';
  return { action: 'reconnect', banner };
}

// resetsBackoff reports whether a connection that was up for upFor ms earned a fresh backoff.
export const resetsBackoff = (upFor) => upFor >= STABLE_MS;

// shouldProbe reports whether a failed handshake is worth a plain GET to learn why: the first
// failure, then every fifth.
export const shouldProbe = (failures) => failures === 1 || failures % 5 === 0;

// probeAction decides from the plain GET of /ws what a failed handshake meant.
export function probeAction(status, message, retryAfterSeconds) {
  if (status === 401 || (status === 400 && /user/i.test(message))) return { action: 'login', message };
  if (status === 403) return { action: 'banner', message: 'The server refused the connection: ' + (message || 'forbidden') };
  if (status === 503) return { action: 'wait', afterMs: (Number(retryAfterSeconds) || 0) * 1000 };
  return { action: 'none' };
}
