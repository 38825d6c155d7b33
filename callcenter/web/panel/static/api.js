// Fetch wrapper for the panel's JSON API: same-origin cookie session, X-CSRF-Token on every
// non-GET request, 401 -> back to the login page (the session expired or was revoked).

const LOGIN_URL = "/panel/login";
let csrfToken = null;

/** Error of an API call, with a French message fit for the user. */
export class ApiError extends Error {
  constructor(status, body) {
    super(messageFor(status, body));
    this.name = "ApiError";
    this.status = status;
    this.body = body || {};
  }
}

const FALLBACK = {
  400: "La demande est incomplète ou incorrecte.",
  403: "Cette action ne vous est pas autorisée.",
  404: "Élément introuvable.",
  409: "Cette action n’est pas possible dans votre état actuel.",
  423: "Compte verrouillé.",
  429: "Trop de demandes : réessayez dans un instant.",
  501: "Cette fonction n’est pas disponible sur ce service.",
};

function messageFor(status, body) {
  if (body && typeof body.error === "string" && body.error) return body.error;
  if (status === 0) return "Connexion au serveur impossible. Vérifiez le réseau.";
  if (FALLBACK[status]) return FALLBACK[status];
  if (status >= 500) return "Le service est momentanément indisponible. Réessayez.";
  return `Erreur inattendue (${status}).`;
}

/** Leave for the login page, saying why. */
export function toLogin(reason = "expiree") {
  window.location.assign(`${LOGIN_URL}?${encodeURIComponent(reason)}=1`);
}

/** GET /panel/api/session: the user and the CSRF token (to be called at page load). */
export async function loadSession() {
  const session = await request("GET", "/panel/api/session");
  csrfToken = session.csrf_token;
  return session;
}

/**
 * One JSON request. Resolves with the parsed body (null for 204); rejects with ApiError.
 * @param {string} method
 * @param {string} path
 * @param {object} [body]
 */
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET" && method !== "HEAD") {
    if (csrfToken) headers["X-CSRF-Token"] = csrfToken;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, null);
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
  }
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body === undefined ? {} : body);

/** POST /panel/api/logout then the login page. */
export async function logout() {
  try {
    await request("POST", "/panel/api/logout");
  } finally {
    window.location.assign(LOGIN_URL);
  }
}

/** Percent-encode one path segment (a SIP Call-ID may hold "/" or "@"). */
export const seg = (value) => encodeURIComponent(String(value));
