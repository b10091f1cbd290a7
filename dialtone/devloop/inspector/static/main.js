"use strict";
// Start-up: what this run is, the phone (sandbox) or the QR code (a real number), the timeline.

(async () => {
  const run = document.getElementById("run");
  const [status, info] = await api("GET", "/api/info");
  if (status !== 200) {
    run.textContent = info.error || `The inspector refused this page (HTTP ${status}).`;
    run.className = "run bad";
    return;
  }
  const describe = (connected) => {
    run.replaceChildren(
      el("span", { class: "pill", text: info.mode }), " ",
      el("strong", { text: info.phone_number || "" }), " ",
      el("span", { class: "muted", text: `webhooks to ${info.public_url}` }), " ",
      el("span", { class: connected ? "live" : "offline", text: connected ? "● live" : "○ reconnecting…" }));
  };
  describe(false);
  document.getElementById("filter").addEventListener("input", (e) => Timeline.setFilter(e.target.value));
  if (info.sandbox) {
    Phone.start();
  } else if (info.phone_number) {
    document.getElementById("qr").hidden = false;
    document.getElementById("qr-number").textContent = info.phone_number;
    document.getElementById("qr-image").src = `/api/qr.svg?token=${encodeURIComponent(TOKEN)}`;
  }
  const timeline = Timeline.connect(async (connected) => {
    describe(connected);
    if (!connected && (await refused())) {
      // A page left open across make dev runs: this run has another token, so everything is
      // refused. Say so, instead of "reconnecting" for ever.
      timeline.close();
      Phone.stop();
      run.textContent = "This page is from an earlier make dev. Open the Inspector URL the " +
        "running make dev printed below its banner.";
      run.className = "run bad";
      for (const id of ["phone", "qr"]) document.getElementById(id).hidden = true;
    }
  });
})();

/** Whether the inspector answers but refuses this page's token (false if it does not answer). */
async function refused() {
  try {
    const [status] = await api("GET", "/api/info");
    return status === 403;
  } catch (_) {
    return false; // make dev is not running: the event stream keeps trying
  }
}
