// Browser softphone: ring tone (WebAudio), microphone (getUserMedia), one RTCPeerConnection
// per call. Signalling goes through the panel WebSocket: the browser makes the SDP offer (full
// ICE gathering, no trickle) in an {"type":"answer"} message and applies the server's
// "answer_sdp" (RFC 8829 JSEP: offer/answer; RFC 8445 ICE).

const GATHER_TIMEOUT_MS = 2000;
const RING_ON_S = 1.5; // French ring cadence: 1.5 s on, 3.5 s off, 440 Hz
const RING_PERIOD_S = 5;

/** French explanation of a getUserMedia failure. */
export function microphoneError(err) {
  const name = err && err.name;
  switch (name) {
    case "InsecureContext":
      return "Le micro n’est utilisable que sur une connexion sécurisée (adresse en https://). " +
        "Demandez l’adresse sécurisée du poste à votre responsable.";
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "L’accès au micro a été refusé. Autorisez le micro pour ce site dans le navigateur " +
        "(icône à gauche de l’adresse), puis cliquez à nouveau sur « Répondre ».";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "Aucun micro n’a été trouvé. Branchez un casque ou un micro, puis cliquez à " +
        "nouveau sur « Répondre ».";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "Le micro est déjà utilisé par une autre application ou ne répond pas. Fermez " +
        "l’autre application (visioconférence, téléphone logiciel), puis réessayez.";
    default:
      return "Le micro n’a pas pu être ouvert. Vérifiez votre casque et réessayez.";
  }
}

/** RTCIceServer list from the hello message's "ice_servers" (strings or objects). */
export function iceServers(list) {
  if (!Array.isArray(list)) return [];
  const out = [];
  for (const item of list) {
    if (item && typeof item === "object" && item.urls) {
      out.push(item);
    } else if (typeof item === "string") {
      // "turn:user:pass@host:3478?transport=udp" -> {urls, username, credential}
      const m = /^(turns?):([^:@]+):([^@]+)@(.+)$/.exec(item);
      if (m) out.push({ urls: `${m[1]}:${m[4]}`, username: m[2], credential: m[3] });
      else out.push({ urls: item });
    }
  }
  return out;
}

/** Ring tone made with an oscillator (no audio file), repeated until stopped. */
class Ringer {
  constructor() {
    this.ctx = null;
    this.timer = null;
  }

  context() {
    if (!this.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      this.ctx = new Ctx();
    }
    return this.ctx;
  }

  /** Browsers start audio only after a user gesture: resume on the first click or key. */
  unlock() {
    const ctx = this.context();
    if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
  }

  burst() {
    const ctx = this.ctx;
    if (!ctx) return;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = 440;
    const t = ctx.currentTime;
    gain.gain.setValueAtTime(0, t);
    gain.gain.linearRampToValueAtTime(0.25, t + 0.02);
    gain.gain.setValueAtTime(0.25, t + RING_ON_S - 0.02);
    gain.gain.linearRampToValueAtTime(0, t + RING_ON_S);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + RING_ON_S);
  }

  start() {
    if (this.timer !== null) return;
    const ctx = this.context();
    if (!ctx) return;
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    this.burst();
    this.timer = window.setInterval(() => this.burst(), RING_PERIOD_S * 1000);
  }

  stop() {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
      this.timer = null;
    }
  }

  get ringing() {
    return this.timer !== null;
  }
}

function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      window.clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = window.setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * The softphone of one agent page.
 * @param {{send: (msg: object) => boolean, audio: HTMLAudioElement,
 *          onError: (message: string) => void, onMedia: (state: string) => void}} opts
 */
export class Softphone {
  constructor({ send, audio, onError, onMedia }) {
    this.send = send;
    this.audio = audio;
    this.onError = onError || (() => {});
    this.onMedia = onMedia || (() => {});
    this.ringer = new Ringer();
    this.iceServers = [];
    this.pc = null;
    this.stream = null;
    this.callId = null;
    this.muted = false;
    this.held = false;
    this.answering = false;
    const unlock = () => this.ringer.unlock();
    document.addEventListener("pointerdown", unlock, { once: true });
    document.addEventListener("keydown", unlock, { once: true });
    const phone = this;
    window.ccSoftphone = {
      get pc() {
        return phone.pc;
      },
      stats: () => phone.stats(),
    };
  }

  setIceServers(list) {
    this.iceServers = iceServers(list);
  }

  ring(callId) {
    this.callId = callId;
    this.ringer.start();
  }

  stopRing() {
    this.ringer.stop();
  }

  get ringing() {
    return this.ringer.ringing;
  }

  /** Answer the call ringing: microphone, offer with all candidates, "answer" message. */
  async answer(callId) {
    if (this.answering || this.pc) return false;
    this.answering = true;
    this.callId = callId;
    this.stopRing();
    try {
      if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        const err = new Error("insecure context");
        err.name = "InsecureContext";
        throw err;
      }
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true },
          video: false,
        });
      } catch (err) {
        this.onError(microphoneError(err));
        return false;
      }
      this.stream = stream;
      const config = this.iceServers.length ? { iceServers: this.iceServers } : {};
      const pc = new RTCPeerConnection(config);
      this.pc = pc;
      for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
      pc.addEventListener("track", (event) => {
        const [remote] = event.streams;
        this.audio.srcObject = remote || new MediaStream([event.track]);
        const played = this.audio.play();
        if (played && played.catch) played.catch(() => {});
      });
      pc.addEventListener("connectionstatechange", () => this.onMedia(pc.connectionState));
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitForGathering(pc, GATHER_TIMEOUT_MS);
      if (this.pc !== pc) return false; // hung up meanwhile
      const sent = this.send({ type: "answer", call_id: callId, sdp: pc.localDescription.sdp });
      if (!sent) {
        this.onError("La liaison avec le serveur est coupée : l’appel n’a pas pu être pris.");
        this.close();
        return false;
      }
      return true;
    } catch (err) {
      if (err && err.name === "InsecureContext") this.onError(microphoneError(err));
      else this.onError("L’appel n’a pas pu être établi dans le navigateur.");
      this.close();
      return false;
    } finally {
      this.answering = false;
    }
  }

  /** The server's SDP answer ("answer_sdp"). */
  async applyAnswer(callId, sdp) {
    // Another tab's answer to its own offer (the server broadcasts to the agent's panels).
    if (!this.pc || callId !== this.callId || this.pc.signalingState !== "have-local-offer") return;
    try {
      await this.pc.setRemoteDescription({ type: "answer", sdp });
    } catch (err) {
      this.onError("La réponse du serveur n’a pas pu être appliquée : l’audio ne passera pas.");
    }
  }

  reject(callId) {
    this.stopRing();
    this.send({ type: "reject", call_id: callId });
  }

  /** Toggle mute: the local track stops sending sound; the server is told. */
  setMuted(muted) {
    this.muted = muted;
    if (this.stream) for (const track of this.stream.getAudioTracks()) track.enabled = !muted;
    this.send({ type: "mute", call_id: this.callId, muted });
  }

  setHeld(held) {
    this.held = held;
    this.send({ type: held ? "hold" : "resume", call_id: this.callId });
  }

  dtmf(digit) {
    if (!/^[0-9*#]$/.test(digit)) return;
    this.send({ type: "dtmf", call_id: this.callId, digit });
  }

  hangup() {
    if (this.callId) this.send({ type: "hangup", call_id: this.callId });
    this.close();
  }

  /** Release the peer connection and the microphone (idempotent). */
  close() {
    this.stopRing();
    if (this.pc) {
      try {
        this.pc.close();
      } catch (err) {
        /* already closed */
      }
    }
    this.pc = null;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    if (this.audio) this.audio.srcObject = null;
    this.muted = false;
    this.held = false;
  }

  /** For tests and diagnostics: inbound audio energy/level and outbound packets. */
  async stats() {
    const out = { inboundAudioEnergy: 0, inboundAudioLevel: 0, outboundPackets: 0 };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    report.forEach((s) => {
      const audio = s.kind === "audio" || s.mediaType === "audio";
      if (s.type === "inbound-rtp" && audio) {
        out.inboundAudioEnergy += s.totalAudioEnergy || 0;
        out.inboundAudioLevel = Math.max(out.inboundAudioLevel, s.audioLevel || 0);
      } else if (s.type === "outbound-rtp" && audio) {
        out.outboundPackets += s.packetsSent || 0;
      }
    });
    return out;
  }
}
