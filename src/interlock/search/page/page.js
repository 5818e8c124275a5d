// The search page: POST the query, then follow the task's event stream.
//
// Rendering rule: nothing the server sends is ever parsed as markup. Titles,
// snippets, follow-ups and URLs are data and go in through textContent and
// setAttribute. The summary arrives HTML-escaped (the server's own layer of
// defence); we decode those entities ourselves into plain text and insert
// that as text nodes too. Decoding with innerHTML (or DOMParser) would hand
// model output to the HTML parser, the very thing the escaping guards
// against, so the only markup this file makes is elements it creates itself.
(() => {
  "use strict";

  const API = "/api/v1/search";
  const KEY_STORAGE = "interlock.search.api-key";
  const MARKER = /\[(\d{1,3})\]/g;
  const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("search-form"),
    q: $("q"),
    num: $("num"),
    safe: $("safe"),
    keyBox: $("key-box"),
    key: $("key"),
    keySummary: $("key-summary"),
    keyForget: $("key-forget"),
    status: $("status"),
    statusText: $("status-text"),
    stop: $("stop"),
    error: $("error"),
    errorText: $("error-text"),
    retry: $("retry"),
    answer: $("answer"),
    summary: $("summary"),
    pending: $("summary-pending"),
    followups: $("followups"),
    followupList: $("followup-list"),
    sources: $("sources"),
    sourcesMeta: $("sources-meta"),
    results: $("results"),
  };

  // One search at a time. `run` numbers them, so a late answer to an old
  // search (a fetch, an event) is recognised and ignored.
  const state = {
    run: 0,
    query: "",
    source: null, // the EventSource of the running search
    raw: "", // the summary as received: escaped text, deltas concatenated
    citations: new Map(), // marker number -> citation
    retryTimer: 0,
  };

  // -- text in, text out ----------------------------------------------------

  /** The text an HTML-escaped string stands for (character references only). */
  function unescapeHtml(text) {
    return text.replace(/&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]{2,6});/g, (whole, ref) => {
      if (ref[0] !== "#") return Object.hasOwn(ENTITIES, ref) ? ENTITIES[ref] : whole;
      const hex = ref[1] === "x" || ref[1] === "X";
      const code = Number.parseInt(ref.slice(hex ? 2 : 1), hex ? 16 : 10);
      const valid = code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff);
      return valid ? String.fromCodePoint(code) : whole;
    });
  }

  /** ``text`` without a character reference cut off at its end ("&l"), which
   * the next delta completes: shown half-decoded it would flicker. */
  function withoutPartialReference(text) {
    return text.replace(/&#?[a-zA-Z0-9]{0,7}$/, "");
  }

  /** An absolute http(s) URL fit for an href, or null. */
  function safeHref(url) {
    if (typeof url !== "string") return null;
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function asText(value) {
    return typeof value === "string" ? value : "";
  }

  // -- rendering --------------------------------------------------------------

  function resultItem(result, index) {
    const rank = Number.isInteger(result.rank) ? result.rank : index + 1;
    const href = safeHref(result.url);
    const item = element("li", "result");
    item.id = `result-${rank}`;

    const badge = element("span", "rank", rank);
    badge.setAttribute("aria-hidden", "true");

    const body = element("div", "result-body");
    const heading = element("h3", "result-title");
    const title = asText(result.title) || asText(result.url) || "Untitled";
    if (href) {
      const link = element("a", "result-link", title);
      link.href = href;
      link.rel = "noopener noreferrer";
      heading.append(link);
    } else {
      heading.append(element("span", "result-link is-unlinked", title));
    }

    const meta = element("p", "result-meta");
    if (asText(result.source)) meta.append(element("span", "badge", result.source));
    if (href) meta.append(element("span", "host", new URL(href).host));

    body.append(heading, meta);
    if (asText(result.snippet)) body.append(element("p", "snippet", result.snippet));
    item.append(badge, body);
    return item;
  }

  function renderResults(data) {
    const results = Array.isArray(data.results) ? data.results : [];
    ui.results.replaceChildren(...results.map(resultItem));
    const parts = [`${results.length} ${results.length === 1 ? "result" : "results"}`];
    if (asText(data.backend)) parts.push(data.backend);
    if (Number.isFinite(data.took_ms)) parts.push(`${Math.round(data.took_ms)} ms`);
    ui.sourcesMeta.textContent = parts.join(" · ");
    ui.sources.hidden = false;
    if (results.length === 0) {
      ui.results.replaceChildren(element("li", "empty", "No results for this query."));
    }
  }

  function citationLink(marker, citation) {
    const link = element("a", "cite", marker);
    link.href = `#result-${citation.rank}`;
    const title = asText(citation.title);
    link.setAttribute("aria-label", title ? `Source ${citation.n}: ${title}` : `Source ${citation.n}`);
    if (title) link.title = title;
    return link;
  }

  /** The summary so far, as text nodes, with each marker that has a citation
   * a link to its result; markers without one (not cited yet, or invented)
   * stay text. Rebuilt whole on each delta: summaries are short. */
  function renderSummary() {
    const raw = isRunning() ? withoutPartialReference(state.raw) : state.raw;
    const text = unescapeHtml(raw);
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(MARKER)) {
      const citation = state.citations.get(Number(match[1]));
      if (!citation) continue;
      parts.push(text.slice(last, match.index), citationLink(match[0], citation));
      last = match.index + match[0].length;
    }
    parts.push(text.slice(last));
    ui.summary.replaceChildren(...parts); // strings become text nodes
    ui.pending.hidden = text.length > 0 || !isRunning();
  }

  /** Only citations whose marker and rank are integers: the rank goes into an href. */
  function setCitations(list) {
    const valid = Array.isArray(list) ? list : [];
    state.citations = new Map(
      valid
        .filter((c) => c && Number.isInteger(c.n) && Number.isInteger(c.rank))
        .map((c) => [c.n, c]),
    );
  }

  function renderFollowups(questions) {
    const chips = questions
      .filter((q) => typeof q === "string" && q.trim())
      .map((question) => {
        const button = element("button", "chip", question);
        button.type = "button";
        button.addEventListener("click", () => {
          ui.q.value = question;
          search(question);
        });
        const item = element("li");
        item.append(button);
        return item;
      });
    ui.followupList.replaceChildren(...chips);
    ui.followups.hidden = chips.length === 0;
  }

  function setStatus(text, { busy = false } = {}) {
    ui.status.hidden = !text;
    ui.status.classList.toggle("is-busy", busy);
    ui.statusText.textContent = text || "";
    ui.stop.hidden = !busy;
  }

  function showError(message, { retryAfter = 0 } = {}) {
    finish();
    setStatus("");
    ui.errorText.textContent = message || "The search failed.";
    ui.error.hidden = false;
    clearInterval(state.retryTimer);
    if (retryAfter > 0) countDown(retryAfter);
    else ui.retry.disabled = false;
  }

  /** Retry stays disabled until the gateway's Retry-After has passed. */
  function countDown(seconds) {
    let left = Math.ceil(seconds);
    const tick = () => {
      if (left <= 0) {
        clearInterval(state.retryTimer);
        ui.retry.disabled = false;
        ui.retry.textContent = "Retry";
        return;
      }
      ui.retry.disabled = true;
      ui.retry.textContent = `Retry in ${left} s`;
      left -= 1;
    };
    tick();
    state.retryTimer = setInterval(tick, 1000);
  }

  function resetView() {
    clearInterval(state.retryTimer);
    ui.retry.textContent = "Retry";
    ui.retry.disabled = false;
    ui.error.hidden = true;
    ui.answer.hidden = true;
    ui.sources.hidden = true;
    ui.followups.hidden = true;
    ui.results.replaceChildren();
    ui.followupList.replaceChildren();
    state.raw = "";
    state.citations = new Map();
    renderSummary();
  }

  // -- the search -------------------------------------------------------------

  function isRunning() {
    return state.source !== null;
  }

  /** Close the stream; what has arrived stays on the page. */
  function finish() {
    if (state.source) state.source.close();
    state.source = null;
    state.run += 1;
    // While streaming the region is busy, so screen readers wait and read
    // the finished answer once rather than every rebuilt fragment.
    ui.summary.setAttribute("aria-busy", "false");
    ui.pending.hidden = true;
  }

  function requestHeaders() {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const key = ui.key.value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    return headers;
  }

  function retryAfterSeconds(response) {
    const value = response.headers.get("Retry-After");
    if (!value) return 0;
    const seconds = Number(value);
    if (Number.isFinite(seconds)) return Math.max(0, seconds);
    const date = Date.parse(value);
    return Number.isNaN(date) ? 0 : Math.max(0, (date - Date.now()) / 1000);
  }

  function errorMessage(body, fallback) {
    const message = body && body.error && body.error.message;
    return typeof message === "string" && message ? message : fallback;
  }

  function refused(response, body) {
    if (response.status === 401) {
      ui.keyBox.open = true;
      showError(errorMessage(body, "An API key is needed.") + " Enter an API key and retry.");
      ui.key.focus();
    } else if (response.status === 429) {
      const wait = retryAfterSeconds(response);
      const message = errorMessage(body, "Too many searches.");
      showError(wait ? `${message} Try again in ${Math.ceil(wait)} s.` : message, {
        retryAfter: wait,
      });
    } else {
      showError(errorMessage(body, `The gateway answered ${response.status}.`));
    }
  }

  async function search(query) {
    query = query.trim();
    if (!query) {
      ui.q.focus();
      return;
    }
    finish();
    const run = state.run;
    state.query = query;
    resetView();
    rememberQuery(query);
    setStatus("Searching…", { busy: true });
    ui.stop.hidden = true; // nothing to stop until the stream opens

    let response;
    let body = null;
    try {
      response = await fetch(API, {
        method: "POST",
        headers: requestHeaders(),
        cache: "no-store",
        body: JSON.stringify({
          query,
          num_results: Number(ui.num.value),
          streaming: true,
          safe_search: ui.safe.checked,
        }),
      });
      body = await response.json().catch(() => null);
    } catch {
      if (run === state.run) showError("Could not reach the gateway. Check the connection and retry.");
      return;
    }
    if (run !== state.run) return;
    if (!response.ok || !body || typeof body.task_id !== "string") {
      refused(response, body);
      return;
    }
    follow(body.task_id);
  }

  function follow(taskId) {
    const source = new EventSource(`${API}/stream/${encodeURIComponent(taskId)}`);
    state.source = source;
    const run = state.run;
    ui.summary.setAttribute("aria-busy", "true");
    setStatus("Searching…", { busy: true });

    // EventSource resends Last-Event-ID on reconnect and the server resumes
    // after it, so each handler sees each event once.
    const on = (name, handle) => {
      source.addEventListener(name, (event) => {
        if (run !== state.run) return;
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        if (data && typeof data === "object") handle(data);
      });
    };

    on("results", (data) => {
      renderResults(data);
      ui.answer.hidden = false;
      ui.pending.hidden = false;
      setStatus("Writing the summary…", { busy: true });
    });
    on("summary", (data) => {
      state.raw += asText(data.text);
      ui.answer.hidden = false;
      renderSummary();
    });
    on("citations", (data) => {
      setCitations(data.citations);
      renderSummary();
    });
    on("followups", (data) => {
      renderFollowups(Array.isArray(data.followups) ? data.followups : []);
    });
    on("complete", (data) => {
      if (typeof data.summary === "string") state.raw = data.summary;
      finish();
      renderSummary();
      ui.answer.hidden = false;
      if (!state.raw) ui.summary.replaceChildren(element("p", "muted", "No summary for this query."));
      setStatus("");
    });

    // "error" is both the server's event (a MessageEvent with data) and
    // EventSource's own signal that the connection dropped (no data).
    source.addEventListener("error", (event) => {
      if (run !== state.run) return;
      if (typeof event.data === "string") {
        let data = null;
        try {
          data = JSON.parse(event.data);
        } catch {
          /* a malformed error event is still an error */
        }
        showError(errorMessage(data, "The search failed."));
      } else if (source.readyState === EventSource.CLOSED) {
        recover(taskId, run);
      } else {
        setStatus("Connection lost; reconnecting…", { busy: true });
      }
    });
    source.addEventListener("open", () => {
      if (run === state.run && ui.statusText.textContent.startsWith("Connection lost")) {
        setStatus("Writing the summary…", { busy: true });
      }
    });
  }

  /** The stream was refused for good (the browser gives up on a non-200):
   * ask for the task's state once and show what it reached. */
  async function recover(taskId, run) {
    try {
      const response = await fetch(`${API}/status/${encodeURIComponent(taskId)}`, {
        cache: "no-store",
      });
      const task = await response.json();
      if (run !== state.run) return;
      if (!response.ok) return refused(response, task);
      if (task.status !== "completed") {
        return showError(errorMessage(task, asText(task.error) || "The search did not finish."));
      }
      renderResults(task);
      setCitations(task.citations);
      state.raw = asText(task.summary);
      finish();
      renderSummary();
      renderFollowups(Array.isArray(task.followups) ? task.followups : []);
      ui.answer.hidden = false;
      setStatus("");
    } catch {
      if (run === state.run) showError("Lost the connection to the gateway.");
    }
  }

  function stop() {
    if (!isRunning()) return;
    finish();
    setStatus("Stopped.");
  }

  // -- page wiring ----------------------------------------------------------

  function rememberQuery(query) {
    const url = new URL(window.location.href);
    url.searchParams.set("q", query);
    window.history.replaceState(null, "", url);
  }

  function loadKey() {
    try {
      ui.key.value = window.sessionStorage.getItem(KEY_STORAGE) || "";
    } catch {
      /* storage disabled: the key lives in the field only */
    }
    showKeyState();
  }

  function saveKey() {
    try {
      const key = ui.key.value.trim();
      if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
      else window.sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      /* as above */
    }
    showKeyState();
  }

  function showKeyState() {
    ui.keySummary.textContent = ui.key.value.trim() ? "API key (set)" : "API key";
  }

  function isEditable(target) {
    return (
      target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
    );
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(ui.q.value);
  });
  ui.stop.addEventListener("click", stop);
  ui.retry.addEventListener("click", () => search(state.query || ui.q.value));
  ui.key.addEventListener("input", saveKey);
  ui.keyForget.addEventListener("click", () => {
    ui.key.value = "";
    saveKey();
    ui.key.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (isEditable(event.target)) return;
    event.preventDefault();
    ui.q.focus();
    ui.q.select();
  });

  loadKey();
  const initial = new URL(window.location.href).searchParams.get("q");
  if (initial) {
    ui.q.value = initial;
    search(initial);
  }
})();
