// The application form: a live character count for the use case, and focus on the error
// summary when the server sent the form back with errors. Without script the form works the
// same: the summary is announced (role=alert) and the server counts the characters.
(function () {
  "use strict";

  // The server counts Unicode characters of the trimmed text, with a line break as one.
  function length(text) {
    return Array.from(text.trim()).length;
  }

  function formatted(n) {
    return n.toLocaleString("en-US");
  }

  function counter(textarea) {
    const visible = document.getElementById(textarea.id + "_count");
    const live = document.getElementById(textarea.id + "_count_live");
    if (!visible) {
      return;
    }
    const minimum = parseInt(textarea.dataset.minChars, 10) || 0;
    const maximum = parseInt(textarea.dataset.maxChars, 10) || Infinity;
    let timer = null;

    function message() {
      const n = length(textarea.value);
      if (n < minimum) {
        return { text: formatted(n) + " of at least " + formatted(minimum) + " characters: " + formatted(minimum - n) + " to go", ok: false };
      }
      if (n > maximum) {
        return { text: formatted(n) + " characters: " + formatted(n - maximum) + " over the limit of " + formatted(maximum), ok: false };
      }
      return { text: formatted(n) + " characters: enough (at least " + formatted(minimum) + ")", ok: true };
    }

    function update() {
      const result = message();
      visible.textContent = result.text;
      visible.classList.toggle("char-count-ok", result.ok);
      // Screen readers hear the count once the typing pauses, not on every key.
      if (live) {
        clearTimeout(timer);
        timer = setTimeout(function () {
          live.textContent = result.text;
        }, 1200);
      }
    }

    visible.hidden = false;
    textarea.addEventListener("input", update);
    const shown = message();
    visible.textContent = shown.text;
    visible.classList.toggle("char-count-ok", shown.ok);
  }

  function summaryFocus() {
    const summary = document.getElementById("error-summary");
    if (!summary) {
      return;
    }
    summary.focus();
    // A link to a group of checkboxes focuses its first enabled box, not the list around it.
    summary.addEventListener("click", function (event) {
      const link = event.target.closest("a[href^='#']");
      if (!link) {
        return;
      }
      const target = document.getElementById(link.getAttribute("href").slice(1));
      if (!target) {
        return;
      }
      event.preventDefault();
      const input = target.matches("input, select, textarea") ? target : target.querySelector("input:not([disabled]), select, textarea");
      target.scrollIntoView({ block: "center" });
      (input || target).focus({ preventScroll: true });
    });
  }

  document.querySelectorAll("textarea[data-min-chars]").forEach(counter);
  summaryFocus();
})();
