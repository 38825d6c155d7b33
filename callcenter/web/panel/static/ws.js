// The panel WebSocket (/panel/ws): same origin, ws: or wss: after the page's scheme,
// reconnection with exponential back-off and jitter, application ping every 25 s.
// After each (re)connection the server sends "hello": the page resynchronises from it.

import { loadSession } from "./api.js";

const PING_MS = 25000;
const MAX_BACKOFF_MS = 30000;

export class PanelSocket {
  /** @param {{onMessage: (msg: object) => void, onLink: (up: boolean, attempt: number) => void}} opts */
  constructor({ onMessage, onLink }) {
    this.onMessage = onMessage;
    this.onLink = onLink || (() => {});
    this.ws = null;
    this.attempt = 0;
    this.pingTimer = null;
    this.retryTimer = null;
    this.stopped = false;
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/panel/ws`;
  }

  connect() {
    if (this.stopped) return;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.attempt = 0;
      this.onLink(true, 0);
      this.pingTimer = window.setInterval(() => this.send({ type: "ping" }), PING_MS);
    });
    ws.addEventListener("message", (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (msg && typeof msg.type === "string") this.onMessage(msg);
    });
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return;
      window.clearInterval(this.pingTimer);
      this.ws = null;
      if (this.stopped) return;
      this.attempt += 1;
      this.onLink(false, this.attempt);
      const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.attempt - 1));
      const delay = base / 2 + Math.random() * (base / 2);
      this.retryTimer = window.setTimeout(() => this.retry(), delay);
    });
  }

  async retry() {
    // A refused upgrade looks like any network error: ask the API whether the session is
    // still valid (a 401 sends the page to the login form).
    try {
      await loadSession();
    } catch (err) {
      if (err && err.status === 401) return;
    }
    this.connect();
  }

  /** Send one JSON message; false when the socket is not open. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close() {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000);
  }
}
