// Test-only page: what the panel's softphone does, reduced to the media path.
// The browser offers (fake microphone), waits for ICE gathering to complete (no trickle),
// POSTs its offer to /offer and applies the server's answer.

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

window.start = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({
    // A steady tone would be removed as noise by Chromium's audio processing.
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.pc = pc;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.addEventListener("track", (event) => {
    document.getElementById("remote").srcObject = event.streams[0] || new MediaStream([event.track]);
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  // Chromium gathers host candidates on every interface and no flag limits that to loopback
  // (its IP handling policies only choose between public/private interfaces), so the test page
  // signals its 127.0.0.1 candidates only: the server never learns another address.
  const offer = pc.localDescription.sdp
    .split("\r\n")
    .filter((line) => !line.startsWith("a=candidate:") || line.split(" ")[4] === "127.0.0.1")
    .join("\r\n");
  const response = await fetch("/offer", { method: "POST", body: offer });
  if (!response.ok) throw new Error(`offer refused: ${response.status}`);
  const answer = await response.text();
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  return { offer, answer };
};

window.inboundAudio = async () => {
  const stats = await window.pc.getStats();
  for (const report of stats.values()) {
    if (report.type === "inbound-rtp" && report.kind === "audio") {
      return {
        packetsReceived: report.packetsReceived || 0,
        totalAudioEnergy: report.totalAudioEnergy || 0,
        audioLevel: report.audioLevel || 0,
        codec: stats.get(report.codecId) ? stats.get(report.codecId).mimeType : null,
      };
    }
  }
  return null;
};

window.selectedPair = async () => {
  const stats = await window.pc.getStats();
  for (const report of stats.values()) {
    if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded") {
      const local = stats.get(report.localCandidateId);
      const remote = stats.get(report.remoteCandidateId);
      return { local: local.address, remote: remote.address };
    }
  }
  return null;
};
