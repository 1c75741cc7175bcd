// What every page's chrome needs from script (portal.css does the rest; nothing here is required):
// - the header's links fold behind a "Menu" button on narrow screens (without this script the
//   button stays hidden and the links wrap onto more lines);
// - a wide table or code block that scrolls inside its own box (.table-scroll, pre) can be reached
//   and scrolled by keyboard;
// - filter forms (details[data-fold-narrow]) start folded on phones;
// - Copy buttons (button.copy[data-copy="<id>"]) copy that element's text, or select it where the
//   clipboard is not available; a button marked hidden is shown only once it can work.
(function () {
  "use strict";

  var header = document.querySelector(".topbar");
  var button = header && header.querySelector(".menu-toggle");
  var nav = header && header.querySelector("nav");
  if (button && nav) {
    var setOpen = function (open) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
      header.classList.toggle("menu-open", open);
    };
    header.classList.add("has-menu");
    button.hidden = false;
    button.addEventListener("click", function () {
      setOpen(button.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("menu-open")) {
        setOpen(false);
        button.focus();
      }
    });
  }

  // Filter forms fold on phones (they would fill the first screen), unless a filter is in use.
  if (window.matchMedia && window.matchMedia("(max-width: 700px)").matches) {
    document.querySelectorAll("details[data-fold-narrow]:not([data-in-use])").forEach(function (box) {
      box.open = false;
    });
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      // Read at click time: the playground rewrites its snippets as the form changes.
      var target = document.getElementById(button.dataset.copy);
      if (!target) return;
      var done = function () {
        button.textContent = "Copied";
        window.setTimeout(function () { button.textContent = "Copy"; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(target.textContent).then(done, function () { selectText(target); });
      } else {
        selectText(target);
      }
    });
  });

  function focusableWhenScrolling() {
    document.querySelectorAll(".table-scroll, pre").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth || box.scrollHeight > box.clientHeight) {
        if (!box.hasAttribute("tabindex")) {
          box.setAttribute("tabindex", "0");
          box.dataset.scrollFocus = "added";
        }
      } else if (box.dataset.scrollFocus === "added") {
        box.removeAttribute("tabindex");
        delete box.dataset.scrollFocus;
      }
    });
  }
  focusableWhenScrolling();
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) window.cancelAnimationFrame(pending);
    pending = window.requestAnimationFrame(focusableWhenScrolling);
  });
})();
