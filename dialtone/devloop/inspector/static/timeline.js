"use strict";
// The live timeline: every request the app answered, grouped by call or message SID, newest
// group first. Events arrive over server-sent events; a reload gets the recent ones again.

const Timeline = (() => {
  const groups = new Map(); // sid -> {node, list, numbers: Set}
  const KIND = { webhook: "Webhook", status: "Status callback", api: "API", other: "Request" };
  const VERDICT = {
    valid: ["ok", "✔ signature valid"],
    off: ["warn", "signature not checked (VALIDATE_SIGNATURES=false)"],
    missing: ["bad", "✖ signature missing"],
    mismatch: ["bad", "✖ signature does not match"],
    "bad-host": ["bad", "✖ host is not valid"],
  };
  const SHOWN = ["From", "To", "Body", "Digits", "CallStatus", "MessageStatus", "ErrorCode",
    "CallDuration", "RecordingUrl", "NumMedia"];
  let filter = "";

  function groupTitle(event) {
    const sid = event.group;
    if (event.kind === "api") return event.path === "/make_call" ? "Outbound call" : "Outbound text";
    if (sid.startsWith("CA")) return "Call";
    if (sid.startsWith("SM") || sid.startsWith("MM")) return "Text";
    return "Request";
  }

  function groupFor(event) {
    const key = event.group || `event-${event.id}`;
    let group = groups.get(key);
    if (!group) {
      const list = el("ol", { class: "entries" });
      const numbers = el("span", { class: "numbers" });
      const badge = el("span", { class: "badge", text: groupTitle(event) });
      const heading = el("h3", {}, badge, " ",
        el("code", { class: "sid", text: event.group || `#${event.id}` }), " ", numbers);
      const node = el("li", { class: "group", "data-sid": key }, heading, list);
      group = { node, list, badge, numbers: new Set(), numbersNode: numbers };
      groups.set(key, group);
    }
    if (event.kind === "api") group.badge.textContent = groupTitle(event);
    for (const number of event.numbers || []) group.numbers.add(number);
    group.numbersNode.textContent = [...group.numbers].join(" ↔ ");
    return group;
  }

  function formOf(event) {
    const form = {};
    for (const [name, value] of event.form || []) if (!(name in form)) form[name] = value;
    return form;
  }

  function verdictOf(event) {
    const verdict = event.webhook && event.webhook.verdict;
    return verdict ? VERDICT[verdict] || ["warn", verdict] : null;
  }

  function statusClass(status) {
    if (status >= 500) return "s5";
    if (status >= 400) return "s4";
    return "s2";
  }

  function answerView(answer) {
    const parts = [];
    if (answer.steps && answer.steps.length) {
      // Nested verbs (a Say inside a Gather) come indented two spaces a level.
      parts.push(el("ol", { class: "steps", "aria-label": "What the answer does" },
        answer.steps.map((step) => {
          const depth = Math.min(2, (step.length - step.trimStart().length) / 2);
          return el("li", { class: depth ? `depth-${depth}` : null, text: step.trim() });
        })));
    } else if (answer.answer) {
      parts.push(el("pre", { class: "raw", text: answer.answer }));
    } else {
      parts.push(el("p", { class: "muted", text: `No body (HTTP ${answer.status})` }));
    }
    if (answer.twiml) {
      parts.push(el("details", {}, el("summary", { text: "TwiML" }),
        el("pre", { class: "twiml", text: answer.twiml })));
    }
    return parts;
  }

  function summaryLine(event) {
    const form = formOf(event);
    const line = el("div", { class: "line" },
      el("time", { text: clock(event.time) }), " ",
      el("span", { class: "kind", text: event.replay_of ? `Replay of #${event.replay_of}` : KIND[event.kind] }), " ",
      el("strong", { class: "route", text: `${event.method} ${event.path}${event.query ? "?" + event.query : ""}` }), " ",
      el("span", { class: `http ${statusClass(event.status)}`, text: String(event.status) }), " ",
      el("span", { class: "muted", text: `${event.duration_ms} ms` }));
    const verdict = verdictOf(event);
    if (verdict) line.append(" ", el("span", { class: `verdict ${verdict[0]}`, text: verdict[1] }));
    if (event.kind === "status") {
      const status = form.MessageStatus || form.CallStatus;
      if (status) line.append(" ", el("span", { class: "pill", text: status }));
    }
    return line;
  }

  function highlights(event) {
    const form = formOf(event);
    const shown = SHOWN.filter((name) => form[name] !== undefined && name !== "MessageStatus");
    if (event.kind === "api" && event.json && typeof event.json === "object") {
      return el("dl", { class: "highlights" }, Object.entries(event.json).flatMap(([name, value]) =>
        [el("dt", { text: name }), el("dd", { text: typeof value === "string" ? value : JSON.stringify(value) })]));
    }
    if (!shown.length) return null;
    return el("dl", { class: "highlights" }, shown.flatMap((name) =>
      [el("dt", { text: name }), el("dd", { text: form[name] })]));
  }

  function paramsTable(event) {
    const rows = (event.form || []).map(([name, value]) =>
      el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: value })));
    return el("details", { class: "params" },
      el("summary", { text: `Parameters (${rows.length})` }),
      el("table", {}, el("tbody", {}, rows)));
  }

  function replayControls(event, entry) {
    const result = el("div", { class: "replay-result", "aria-live": "polite" });
    const inputs = (event.form || []).map(([name, value], index) => {
      const id = `p-${event.id}-${index}`;
      return [name, el("div", { class: "param" }, el("label", { for: id, text: name }),
        el("input", { id, value, "data-name": name }))];
    });
    const editor = el("details", { class: "edit" }, el("summary", { text: "Edit parameters" }),
      el("div", { class: "params-grid" }, inputs.map(([, row]) => row)),
      el("button", { type: "button", onclick: () => run(true) }, "Replay edited"));
    const button = el("button", { type: "button", class: "replay", onclick: () => run(false) }, "Replay");

    async function run(edited) {
      result.replaceChildren(el("p", { class: "muted", text: "Replaying…" }));
      const payload = { id: event.id };
      if (edited) payload.params = [...editor.querySelectorAll("input")].map((i) => [i.dataset.name, i.value]);
      const [status, body] = await api("POST", "/api/replay", payload);
      if (status !== 200) {
        result.replaceChildren(el("p", { class: "alert", role: "alert", text: body.error || `HTTP ${status}` }));
        return;
      }
      result.replaceChildren(compare(event, body));
    }
    entry.append(el("div", { class: "replay-bar" }, button, editor), result);
  }

  function compare(old, fresh) {
    const side = (title, answer) => el("div", { class: "side-by-side" },
      el("h4", { text: title }),
      el("p", {}, el("span", { class: `http ${statusClass(answer.status)}`, text: String(answer.status) }),
        " ", el("span", { class: "muted", text: `${answer.duration_ms} ms` })),
      answerView(answer));
    const changed = fresh.changes.length
      ? el("ul", { class: "changes", "aria-label": "What changed" }, fresh.changes.map((line) =>
        el("li", { class: line.startsWith("+") ? "added" : line.startsWith("-") ? "removed" : "", text: line })))
      : el("p", { class: "same", text: "Same answer as before." });
    return el("div", { class: "compare" },
      el("div", { class: "columns" }, side("Before", old), side("After", fresh)),
      el("h4", { text: "What changed" }), changed);
  }

  function entryFor(event) {
    const verdict = verdictOf(event);
    const bad = verdict && verdict[0] === "bad";
    const entry = el("li", { class: `entry ${event.kind}${bad ? " bad" : ""}`, "data-id": event.id },
      summaryLine(event));
    if (bad) {
      entry.append(el("div", { class: "alert", role: "alert" },
        el("strong", { text: `Refused: ${verdict[1].replace("✖ ", "")}. ` }),
        `Checked against ${event.webhook.url || "(no URL)"}. `, event.verdict_help));
    }
    // A status callback is one line and its tools: the group's heading has the numbers.
    const compact = event.kind === "status" && !bad && !event.steps.length;
    const shown = compact ? null : highlights(event);
    if (shown) entry.append(shown);
    if (!compact) {
      entry.append(el("div", { class: "answer" }, el("h4", { text: "Answer" }), answerView(event)));
    }
    const tools = compact ? el("div", { class: "tools" }) : entry;
    if (compact) entry.append(tools);
    if ((event.form || []).length) tools.append(paramsTable(event));
    if ((event.kind === "webhook" || event.kind === "status") && event.method === "POST") {
      replayControls(event, tools);
    }
    return entry;
  }

  function matches(group) {
    if (!filter) return true;
    return [...group.numbers].some((number) => digitsOf(number).includes(filter));
  }

  function add(event) {
    const group = groupFor(event);
    // In the order the requests started: a status callback can be answered before the API
    // request that caused it.
    const entry = entryFor(event);
    entry.dataset.time = event.time;
    const later = [...group.list.children].find((node) => Number(node.dataset.time) > event.time);
    group.list.insertBefore(entry, later || null);
    const root = document.getElementById("timeline");
    if (root.firstChild !== group.node) root.prepend(group.node); // the newest activity on top
    group.node.hidden = !matches(group);
    document.getElementById("empty").hidden = true;
  }

  function setFilter(text) {
    filter = digitsOf(text);
    for (const group of groups.values()) group.node.hidden = !matches(group);
  }

  function connect(onState) {
    const source = new EventSource(`/api/events?token=${encodeURIComponent(TOKEN)}`);
    source.onmessage = (message) => add(JSON.parse(message.data));
    source.onopen = () => onState(true);
    source.onerror = () => onState(false);
    return source;
  }

  return { connect, setFilter };
})();
