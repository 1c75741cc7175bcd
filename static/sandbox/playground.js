// The sandbox playground (templates/sandbox/playground.html): sends the form to the portal's
// OpenAI-compatible API with the browser's session and CSRF token, and shows the answer as its
// server-sent events arrive. Everything the script needs comes from data- attributes of
// #playground; there is no inline script (the site's Content-Security-Policy forbids it).
(function () {
  "use strict";

  const root = document.getElementById("playground");
  if (!root) return;

  const config = root.dataset;
  const form = document.getElementById("playground-form");
  const fields = form.elements;
  const runButton = document.getElementById("run");
  const stopButton = document.getElementById("stop");
  const state = document.getElementById("run-state");
  const errorBox = document.getElementById("run-error");
  const output = document.getElementById("output");
  const stats = {
    rate: document.getElementById("stat-rate"),
    first: document.getElementById("stat-first"),
    prompt: document.getElementById("stat-prompt"),
    completion: document.getElementById("stat-completion"),
    finish: document.getElementById("stat-finish"),
    job: document.getElementById("stat-job"),
  };
  const promptLabel = form.querySelector('label[for="id_prompt"]');
  const maxTokensCap = document.getElementById("max-tokens-cap");

  let controller = null; // the AbortController of the request in flight
  let jobId = null;

  // --- The request, from the form -------------------------------------------------------------

  function mode() {
    const checked = form.querySelector('input[name="mode"]:checked');
    return checked ? checked.value : "completion";
  }

  // "a, b" or one per line; \n and \t stand for a line break and a tab.
  function stopList(text) {
    return text
      .split(/[,\n]/)
      .map((part) => part.trim().replace(/\\n/g, "\n").replace(/\\t/g, "\t"))
      .filter((part) => part.length > 0);
  }

  function numberOf(field, fallback) {
    const value = Number(field.value);
    return field.value.trim() === "" || Number.isNaN(value) ? fallback : value;
  }

  function requestBody(forStream) {
    const body = {
      model: fields.model.value,
      max_tokens: Math.round(numberOf(fields.max_tokens, 16)),
      temperature: numberOf(fields.temperature, 1),
      top_p: numberOf(fields.top_p, 1),
    };
    const stop = stopList(fields.stop.value);
    if (stop.length) body.stop = stop;
    if (mode() === "chat") {
      body.messages = [{ role: "user", content: fields.prompt.value }];
    } else {
      body.prompt = fields.prompt.value;
    }
    if (forStream) {
      body.stream = true;
      body.stream_options = { include_usage: true };
    }
    return body;
  }

  function endpoint() {
    return mode() === "chat" ? config.chatUrl : config.completionsUrl;
  }

  // --- Showing progress -------------------------------------------------------------------------

  function setRunning(running) {
    runButton.disabled = running;
    stopButton.disabled = !running;
    root.classList.toggle("running", running);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function resetOutput() {
    output.textContent = "";
    errorBox.hidden = true;
    errorBox.textContent = "";
    for (const key of Object.keys(stats)) stats[key].textContent = "—";
    jobId = null;
  }

  function showJob(id) {
    if (!id) return;
    const link = document.createElement("a");
    link.href = config.jobPath.replace("{id}", id);
    link.textContent = "record";
    link.dataset.testid = "job-record";
    stats.job.replaceChildren(link);
  }

  function seconds(ms) {
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s";
  }

  // Tokens per second while generating: from the first token on. Frames that arrive together leave
  // too short a span to measure; then the whole request's time is the span.
  function rate(tokens, startedAt, firstAt, endAt) {
    if (!tokens || firstAt === null) return "—";
    let span = endAt - firstAt;
    if (span < 20) span = endAt - startedAt;
    return span > 0 ? (tokens / (span / 1000)).toFixed(1) : "—";
  }

  // The OpenAI error body, {"error": {"message", "type", "param", "code"}}, as a sentence.
  function errorText(status, body) {
    const error = body && body.error;
    if (!error || !error.message) return "The sandbox answered with status " + status + ".";
    return error.message + (error.code ? " (" + error.code + ")" : "");
  }

  async function responseError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (ignored) {
      // not JSON: a proxy's page, say
    }
    let message = errorText(response.status, body);
    const retry = response.headers.get("Retry-After");
    if (retry && response.headers.get("x-should-retry") !== "false") {
      message += " Try again in " + retry + " s.";
    }
    return message;
  }

  // --- Running ----------------------------------------------------------------------------------

  async function run(event) {
    event.preventDefault();
    if (controller) return;
    if (!fields.prompt.value.trim()) {
      showError(mode() === "chat" ? "Write a message first." : "Write a prompt first.");
      fields.prompt.focus();
      return;
    }
    resetOutput();
    setRunning(true);
    state.textContent = "Waiting for the sandbox…";
    controller = new AbortController();
    const chat = mode() === "chat";
    const startedAt = performance.now();
    let firstAt = null;
    let chunks = 0;
    let usage = null;
    let ended = false;
    let finish = null;

    function handle(payload) {
      if (payload.error) {
        showError(errorText(200, payload));
        ended = true;
        return;
      }
      for (const choice of payload.choices || []) {
        if (choice.index !== 0) continue;
        const text = chat ? (choice.delta && choice.delta.content) || "" : choice.text || "";
        if (text) {
          if (firstAt === null) {
            firstAt = performance.now();
            stats.first.textContent = seconds(firstAt - startedAt);
            state.textContent = "Generating…";
          }
          output.textContent += text;
          chunks += 1;
          stats.rate.textContent = rate(chunks, startedAt, firstAt, performance.now());
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (payload.usage) usage = payload.usage;
    }

    try {
      const response = await fetch(endpoint(), {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "text/event-stream",
          "X-CSRFToken": config.csrfToken,
          "X-Sandbox-Client": "playground",
        },
        body: JSON.stringify(requestBody(true)),
        signal: controller.signal,
      });
      jobId = response.headers.get("X-Sandbox-Job");
      showJob(jobId);
      if (!response.ok) {
        showError(await responseError(response));
        state.textContent = "Refused.";
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let boundary;
        while (!ended && (boundary = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, boundary);
          buffer = buffer.slice(boundary + 2);
          const data = frame
            .split("\n")
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, ""))
            .join("\n");
          if (!data) continue;
          if (data === "[DONE]") {
            ended = true;
            break;
          }
          handle(JSON.parse(data));
        }
      }
      const endAt = performance.now();
      if (usage) {
        stats.prompt.textContent = String(usage.prompt_tokens);
        stats.completion.textContent = String(usage.completion_tokens);
        stats.rate.textContent = rate(usage.completion_tokens, startedAt, firstAt, endAt);
      }
      stats.finish.textContent = finish || "—";
      if (errorBox.hidden) {
        state.textContent = ended ? "Done in " + seconds(endAt - startedAt) + "." : "The stream ended early.";
        if (!ended) showError("The connection closed before the answer was complete. Try again.");
      } else {
        state.textContent = "Failed.";
      }
    } catch (error) {
      if (error.name === "AbortError") {
        state.textContent = "Stopped.";
      } else {
        showError("Could not reach the sandbox: " + error.message);
        state.textContent = "Failed.";
      }
    } finally {
      controller = null;
      setRunning(false);
      if (jobId) refreshRecords();
    }
  }

  // After a run: today's use and the recent jobs as the server now renders them (this page again,
  // read as HTML), so the new job and its tokens show without a reload.
  async function refreshRecords() {
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const selector of ['[data-testid="sandbox-usage"]', '[data-testid="recent-jobs"]']) {
        const now = document.querySelector(selector);
        const next = fresh.querySelector(selector);
        if (now && next) now.replaceWith(document.importNode(next, true));
      }
      root.dataset.refreshed = String(Number(root.dataset.refreshed || 0) + 1);
    } catch (ignored) {
      // the numbers stay as they were until the next reload
    }
  }

  // Stop: drop the connection (the server cancels a job whose client went away) and ask for the
  // cancellation outright, so the job ends even if the connection lingers in a proxy.
  function stop() {
    if (!controller) return;
    controller.abort();
    if (jobId) {
      fetch(config.cancelPath.replace("{id}", jobId), {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": config.csrfToken, Accept: "application/json" },
      }).catch(() => {});
    }
  }

  // --- The code snippets, following the form ----------------------------------------------------

  function shellQuote(text) {
    return "'" + text.replace(/'/g, "'\\''") + "'";
  }

  function python(value) {
    // JSON's strings, numbers and lists read the same in Python.
    return JSON.stringify(value);
  }

  function updateSnippets() {
    const body = requestBody(false);
    const chat = mode() === "chat";
    const example = fields.prompt.value || fields.prompt.placeholder;
    if (chat) body.messages[0].content = example;
    else body.prompt = example;
    const url = config.baseUrl + (chat ? "chat/completions" : "completions");
    const curl = document.getElementById("snippet-curl");
    const py = document.getElementById("snippet-python");
    if (curl) {
      curl.textContent =
        "curl " + url + " \\\n" +
        '  -H "Authorization: Bearer $PORTAL_API_TOKEN" \\\n' +
        '  -H "Content-Type: application/json" \\\n' +
        "  -d " + shellQuote(JSON.stringify(body));
    }
    if (py) {
      const args = ["    model=" + python(body.model)];
      if (chat) args.push("    messages=" + python(body.messages));
      else args.push("    prompt=" + python(body.prompt));
      args.push("    max_tokens=" + body.max_tokens, "    temperature=" + body.temperature, "    top_p=" + body.top_p);
      if (body.stop) args.push("    stop=" + python(body.stop));
      args.push("    stream=True");
      const piece = chat ? "(chunk.choices[0].delta.content or \"\")" : "chunk.choices[0].text";
      py.textContent = [
        "import os",
        "",
        "from openai import OpenAI",
        "",
        "client = OpenAI(base_url=" + python(config.baseUrl) + ', api_key=os.environ["PORTAL_API_TOKEN"])',
        "stream = client." + (chat ? "chat.completions" : "completions") + ".create(",
        args.join(",\n") + ",",
        ")",
        "for chunk in stream:",
        "    if chunk.choices:",
        "        print(" + piece + ', end="", flush=True)',
      ].join("\n");
    }
    const modelBase = document.getElementById("model-base-url");
    if (modelBase) {
      modelBase.textContent = modelBase.textContent.replace(/\/sandbox\/[^/]+\/v1\/$/, "/sandbox/" + body.model + "/v1/");
    }
    const lmEval = document.getElementById("snippet-lm-eval");
    if (lmEval) {
      const option = fields.model.selectedOptions[0];
      lmEval.textContent = lmEval.textContent
        .replace(/model=[^,]*,/, "model=" + body.model + ",")
        .replace(/\/sandbox\/[^/]+\/v1\/completions/, "/sandbox/" + body.model + "/v1/completions")
        .replace(/max_length=\d+/, "max_length=" + ((option && option.dataset.promptTokens) || "1536"));
    }
  }

  // --- Wiring -----------------------------------------------------------------------------------

  function modelChanged() {
    const option = fields.model.selectedOptions[0];
    if (!option) return;
    const cap = option.dataset.maxTokens;
    fields.max_tokens.max = cap;
    if (maxTokensCap) maxTokensCap.textContent = cap;
    if (Number(fields.max_tokens.value) > Number(cap)) fields.max_tokens.value = cap;
  }

  function modeChanged() {
    if (promptLabel) promptLabel.textContent = mode() === "chat" ? "Your message" : "Prompt";
  }

  form.addEventListener("submit", run);
  stopButton.addEventListener("click", stop);
  fields.model.addEventListener("change", modelChanged);
  form.addEventListener("change", modeChanged);
  form.addEventListener("input", updateSnippets);
  form.addEventListener("change", updateSnippets);
  modelChanged();
  modeChanged();
  updateSnippets();
  root.dataset.ready = "true";
})();
