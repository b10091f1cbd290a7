"use strict";
// The browser phone (sandbox mode): the sandbox's phone API, relayed by the inspector under
// /api/phone/, exactly as the terminal phone uses it, so both can be open at once.

const Phone = (() => {
  const $ = (id) => document.getElementById(id);
  let me = "";
  let current = null; // the call the phone is on
  let ringing = null; // a call ringing the phone
  let finishKey = "#";
  let events = null; // the phone's event stream
  let mic = null; // {recorder, timer, stream} while the microphone records
  const ended = new Set(); // calls whose end has been seen (a short call can end before the
  // answer to "call" or "answer" arrives)

  function note(text, cls) {
    const list = $("transcript");
    list.append(el("li", { class: cls || "", text }));
    list.scrollTop = list.scrollHeight;
  }

  function bubble(from, body, media, mine) {
    const parts = [el("span", { class: "who", text: mine ? "You" : from }),
      el("span", { class: "text", text: body || (media.length ? "" : "(no text)") })];
    for (const url of media) {
      const safe = httpUrl(url);
      parts.push(el("a", { href: safe, target: "_blank", rel: "noreferrer noopener", text: url }));
      if (safe) {
        const img = el("img", { src: safe, alt: `media ${url}`, loading: "lazy" });
        img.addEventListener("error", () => img.remove());
        parts.push(img);
      }
    }
    const list = $("messages");
    list.append(el("li", { class: mine ? "mine" : "theirs" }, parts));
    list.scrollTop = list.scrollHeight;
  }

  function showState(text) {
    $("call-state").textContent = text;
    $("call").hidden = Boolean(current || ringing);
    $("hangup").hidden = !current;
    $("answer").hidden = !ringing;
    $("decline").hidden = !ringing;
    if (!current) $("recorder").hidden = true;
  }

  function speak(text, language) {
    if (!("speechSynthesis" in window)) return;
    const utterance = new SpeechSynthesisUtterance(text);
    if (language) utterance.lang = language;
    window.speechSynthesis.speak(utterance);
  }

  function play(url) {
    const safe = httpUrl(url);
    if (!safe) return;
    const audio = new Audio(safe);
    audio.play().catch(() => note(`could not play ${url} (not reachable from this browser)`, "warn"));
  }

  function mine(event) {
    return event.from_ === me || event.to === me;
  }

  // live: this happened just now (speak it, play it); false while catching up after a reload.
  function handle(event, live) {
    const sid = event.call_sid;
    switch (event.type) {
      case "message":
        // Twilio's own answer to STOP, START or HELP, as the terminal phone labels it.
        bubble(event.auto_reply ? `Twilio (automatic reply for ${event.from_})` : event.from_,
          event.body, event.media_urls || [], false);
        break;
      case "message_status":
        if (live && ["undelivered", "failed"].includes(event.status)) {
          bubble("", `Text to ${event.to} ${event.status}${event.error_code ? ` (error ${event.error_code})` : ""}`, [], false);
        }
        break;
      case "ringing":
        if (!live) break;
        ringing = sid;
        note(`Incoming call from ${event.from_}`, "ring");
        showState(`Incoming call from ${event.from_}`);
        break;
      case "call_status":
        if (!live || !mine(event)) break;
        if (event.status === "in-progress" && !ended.has(sid)) {
          current = sid;
          if (ringing === sid) ringing = null;
          showState("Connected");
        } else if (event.status === "ringing" && event.from_ === me) {
          showState("Ringing…");
        }
        break;
      case "say":
        note(`Says: ${event.text}`, "say");
        if (live) speak(event.text, event.language);
        break;
      case "play":
        note(`Plays: ${event.url}`);
        if (live) play(event.url);
        break;
      case "pause":
        note(`(pause, ${event.seconds} s)`, "muted");
        break;
      case "gather": {
        const keys = event.num_digits ? `${event.num_digits} key${event.num_digits === 1 ? "" : "s"}` : `keys, then ${event.finish_on_key || "a pause"}`;
        note(`Press ${keys} on the keypad`, "prompt");
        break;
      }
      case "record":
        finishKey = (event.finish_on_key || "#").includes("#") ? "#" : (event.finish_on_key || "#")[0];
        note(`Recording: type or speak, then Stop recording (or press ${finishKey})`, "prompt");
        if (live) {
          $("recorder").hidden = false;
          $("speech").focus();
        }
        break;
      case "dial":
        note(`Dialling ${event.kind} ${event.target}`);
        break;
      case "connected":
        note(`Connected to another call`);
        break;
      case "call_sms":
        note(`The call sent a text to ${event.to}`, "muted");
        break;
      case "call_ended":
        note(`Call ended: ${event.status} (${event.reason})`, "end");
        if (!live) break;
        ended.add(sid);
        if (current === sid) current = null;
        if (ringing === sid) ringing = null;
        stopMic(false);
        showState(`Call ended: ${event.status}`);
        break;
      case "error":
        note(`Problem: ${event.text}`, event.fatal === false ? "warn" : "bad");
        break;
      default:
        break;
    }
  }

  async function act(method, path, payload) {
    const [status, body] = await api(method, `/api/phone/${path}`, payload);
    if (status >= 400) note(`Refused: ${body.error || `HTTP ${status}`}`, "bad");
    return [status, body];
  }

  async function send(event) {
    event.preventDefault();
    const body = $("body").value;
    const media = $("media").value.split(/\s+/).filter(Boolean);
    const [status, answer] = await act("POST", "messages", { body, media });
    if (status === 201) {
      bubble(me, body, media, true);
      if (answer.notice) {
        const list = $("messages");
        list.append(el("li", { class: "notice", text: answer.notice }));
        list.scrollTop = list.scrollHeight;
      }
      $("body").value = "";
      $("media").value = "";
    }
  }

  async function call() {
    $("transcript").replaceChildren(); // before calling: the app answers at once
    const [status, body] = await act("POST", "calls", {});
    if (status === 201 && !ended.has(body.sid)) {
      current = body.sid;
      showState("Calling…");
    }
  }

  async function press(key) {
    if (!current) {
      note("Not on a call: press Call first.", "warn");
      return;
    }
    await act("POST", "calls/current/digits", { digits: key });
    note(`you pressed ${key}`, "muted");
  }

  async function stopMic(sendFinish) {
    if (mic) {
      clearInterval(mic.timer);
      if (mic.recorder.state !== "inactive") mic.recorder.stop();
      mic.stream.getTracks().forEach((track) => track.stop());
      mic = null;
      $("mic").textContent = "Use microphone";
    }
    if (sendFinish && current) await act("POST", "calls/current/digits", { digits: finishKey });
  }

  async function useMic() {
    if (mic) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      note(`The microphone is not available (${error.name}): type instead.`, "warn");
      return;
    }
    const chunks = [];
    const recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      const audio = $("recorded");
      audio.src = URL.createObjectURL(new Blob(chunks, { type: recorder.mimeType }));
      audio.hidden = false;
    };
    recorder.start();
    // The sandbox cannot take audio: while the microphone is on, it is told "speaking" each
    // second (a space counts as speech), and the recording stays in this page to listen to.
    const timer = setInterval(() => act("POST", "calls/current/digits", { digits: " " }), 1000);
    mic = { recorder, timer, stream };
    $("mic").textContent = "Microphone on…";
  }

  function keypad() {
    const pad = $("keypad");
    for (const key of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
      pad.append(el("button", { type: "button", class: "key", onclick: () => press(key) }, key));
    }
  }

  function follow(after, history) {
    const url = `/api/phone_events?token=${encodeURIComponent(TOKEN)}&after=${after}`;
    const source = new EventSource(url);
    events = source;
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      // Up to `history`: what happened before this page opened, shown quietly (texts only).
      if (event.id > history) handle(event, true);
      else if (event.type === "message") handle(event, false);
    };
    source.onerror = () => {
      if (!current) $("call-state").textContent = "The sandbox does not answer; retrying…";
    };
    source.onopen = () => {
      if (!current && !ringing) showState("No call");
    };
  }

  async function start() {
    $("phone").hidden = false;
    keypad();
    $("compose").addEventListener("submit", send);
    $("call").addEventListener("click", call);
    $("hangup").addEventListener("click", () => act("POST", "calls/current/hangup", {}));
    $("answer").addEventListener("click", async () => {
      const sid = ringing;
      $("transcript").replaceChildren(); // before answering: the call speaks at once
      const [status] = await act("POST", `calls/${sid}/answer`, {});
      if (status === 200 && !ended.has(sid)) {
        current = sid;
        ringing = null;
        showState("Connected");
      }
    });
    $("decline").addEventListener("click", async () => {
      await act("POST", `calls/${ringing}/decline`, {});
      ringing = null;
      showState("Declined");
    });
    $("say-it").addEventListener("click", async () => {
      const words = $("speech").value.replaceAll(finishKey, "");
      if (words) await act("POST", "calls/current/digits", { digits: words });
      $("speech").value = "";
    });
    $("mic").addEventListener("click", useMic);
    // On a call, the keyboard's digits, * and # are the keypad (unless typing in a field).
    document.addEventListener("keydown", (event) => {
      const typing = event.target.closest && event.target.closest("input, textarea, select");
      if (!current || typing || event.ctrlKey || event.metaKey || event.altKey) return;
      if ("0123456789*#".includes(event.key) && event.key.length === 1) {
        event.preventDefault();
        press(event.key);
      }
    });
    $("stop-recording").addEventListener("click", () => stopMic(true).then(() => ($("recorder").hidden = true)));
    const [status, info] = await act("GET", "info");
    if (status !== 200) return;
    me = info.phone_number;
    $("phone-number").textContent = me;
    $("sandbox-number").textContent = info.sandbox_number;
    current = info.current_call || null;
    // Recent texts come back after a reload, quietly (nothing is spoken twice).
    showState(current ? "On a call" : "No call");
    follow(Math.max(0, info.last_event - 300), info.last_event);
  }

  function stop() {
    if (events) events.close();
  }

  return { start, stop };
})();
