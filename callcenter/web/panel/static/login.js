// Login page: POST /panel/api/login, errors in a live region (role="alert"), then the panel.

const form = document.getElementById("login-form");
const loginInput = document.getElementById("login");
const passwordInput = document.getElementById("password");
const errorBox = document.getElementById("login-error");
const notice = document.getElementById("login-notice");
const submit = document.getElementById("login-submit");

const params = new URLSearchParams(window.location.search);
if (params.has("expiree")) {
  notice.textContent = "Votre session a expiré. Reconnectez-vous.";
  notice.hidden = false;
}

function minutes(seconds) {
  const m = Math.max(1, Math.ceil(Number(seconds || 0) / 60));
  return m === 1 ? "1 minute" : `${m} minutes`;
}

function showError(message, fields) {
  errorBox.textContent = message;
  for (const input of [loginInput, passwordInput]) {
    input.setAttribute("aria-invalid", fields.includes(input) ? "true" : "false");
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const login = loginInput.value.trim();
  const password = passwordInput.value;
  const missing = [];
  if (!login) missing.push(loginInput);
  if (!password) missing.push(passwordInput);
  if (missing.length) {
    showError(
      missing.length === 2
        ? "Saisissez votre identifiant et votre mot de passe."
        : missing[0] === loginInput
          ? "Saisissez votre identifiant."
          : "Saisissez votre mot de passe.",
      missing,
    );
    missing[0].focus();
    return;
  }
  submit.disabled = true;
  errorBox.textContent = "";
  let response;
  let body = null;
  try {
    response = await fetch("/panel/api/login", {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ login, password }),
    });
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
  } catch (err) {
    submit.disabled = false;
    showError("Connexion au serveur impossible. Vérifiez le réseau et réessayez.", []);
    return;
  }
  submit.disabled = false;
  if (response.ok) {
    window.location.assign("/panel/");
    return;
  }
  passwordInput.value = "";
  if (response.status === 423) {
    const wait = body && body.retry_after_s;
    showError(
      `Compte verrouillé après trop d’essais infructueux. Réessayez dans ${minutes(wait)}.`,
      [],
    );
  } else if (response.status === 429) {
    showError("Trop de tentatives de connexion depuis ce poste. Patientez une minute.", []);
  } else if (response.status === 401) {
    showError(
      (body && body.error) || "Identifiant ou mot de passe incorrect.",
      [loginInput, passwordInput],
    );
  } else {
    showError((body && body.error) || "Le service est momentanément indisponible.", []);
  }
  passwordInput.focus();
});
