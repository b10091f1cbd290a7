"use strict";
// Shared helpers. Everything that came from a webhook or the phone is put in the page with
// textContent (via el()), never innerHTML: an SMS saying <img src=x onerror=...> stays text.

const TOKEN = new URLSearchParams(location.search).get("token") || "";

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A JSON request to the inspector with the run's token; resolves to [status, body]. */
async function api(method, path, payload) {
  const options = { method, headers: { "X-Dialtone-Token": TOKEN, Accept: "application/json" } };
  if (payload !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(payload);
  }
  const answer = await fetch(path, options);
  let body = {};
  try {
    body = await answer.json();
  } catch (_) {
    body = { error: `HTTP ${answer.status}` };
  }
  return [answer.status, body];
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

/** Only http(s) URLs are ever used as a src. */
function httpUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

function digitsOf(text) {
  return String(text || "").replace(/[^0-9]/g, "");
}
