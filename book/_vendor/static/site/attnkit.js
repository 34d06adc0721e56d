/* The website's own behaviour; book/_ext/attnkit_site.py loads it on every page,
 * before MathJax and the widget manager. No network, no framework. */
(function () {
  "use strict";

  /* 1. MathJax 2's Hub.Queue, on top of MathJax 3.
   * The widget manager (@jupyter-widgets/html-manager) typesets a label with
   * MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]), the MathJax 2 API; the page
   * runs MathJax 3, whose object has no Hub ("Cannot read properties of undefined
   * (reading 'Queue')"), so TeX in a widget would never be typeset. Every object
   * assigned to window.MathJax (Sphinx's configuration, then MathJax itself) gets a
   * Hub whose Queue typesets the element with MathJax 3 once MathJax has started. */
  function whenMathJaxReady(callback, tries) {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise && mj.typesetPromise) {
      mj.startup.promise.then(function () { callback(mj); });
    } else if ((tries || 0) < 200) {
      setTimeout(function () { whenMathJaxReady(callback, (tries || 0) + 1); }, 50);
    }
  }
  function queue() {
    var jobs = Array.prototype.slice.call(arguments);
    jobs.forEach(function (job) {
      var element = Array.isArray(job) ? job[2] : null;
      whenMathJaxReady(function (mj) {
        if (element && element.classList) element.classList.add("mathjax_process");
        mj.typesetPromise(element ? [element] : undefined).catch(function (err) {
          console.warn("MathJax could not typeset a widget label:", err);
        });
      });
    });
  }
  function addHub(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      Object.defineProperty(mj, "Hub", { value: { Queue: queue }, configurable: true });
    }
  }
  var current = window.MathJax;
  addHub(current);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = value; addHub(value); },
  });

  /* 2. Search result snippets without TeX. Sphinx cuts a snippet out of the page's
   * text, which holds the TeX source of every formula (MathJax has not run on it). */
  var SYMBOLS = {
    top: "\u1d40", cdot: "\u00b7", times: "\u00d7", le: "\u2264", leq: "\u2264",
    ge: "\u2265", geq: "\u2265", approx: "\u2248", infty: "\u221e", sum: "\u03a3",
    in: "\u2208", to: "\u2192", rightarrow: "\u2192", mapsto: "\u21a6", ldots: "\u2026",
    dots: "\u2026", cdots: "\u22ef", alpha: "\u03b1", beta: "\u03b2", gamma: "\u03b3",
    delta: "\u03b4", epsilon: "\u03b5", theta: "\u03b8", lambda: "\u03bb", mu: "\u03bc",
    sigma: "\u03c3", tau: "\u03c4", Omega: "\u03a9", Theta: "\u0398", ell: "\u2113",
    neq: "\u2260", pm: "\u00b1", lVert: "\u2016", rVert: "\u2016", mid: "|",
  };
  var SUPERSCRIPTS = { "0": "\u2070", "1": "\u00b9", "2": "\u00b2", "3": "\u00b3",
    "4": "\u2074", "5": "\u2075", "6": "\u2076", "7": "\u2077", "8": "\u2078", "9": "\u2079" };
  function texToText(tex) {
    var t = tex.replace(/\\[()[\]]|\$\$?/g, " ");
    for (var k = 0; k < 4; k++) {  // nested fractions and roots, inside out
      t = t.replace(/\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}/g, "($1)/($2)")
           .replace(/\\sqrt\{([^{}]*)\}/g, "\u221a($1)");
    }
    t = t.replace(/\\(?:operatorname|mathrm|mathbf|mathit|text|textrm|mathcal)\{([^{}]*)\}/g, "$1")
         .replace(/\^\{?([0-9])\}?/g, function (_, d) { return SUPERSCRIPTS[d]; })
         .replace(/\\([A-Za-z]+)/g, function (_, name) { return SYMBOLS[name] || name; })
         .replace(/\\[,;:! ]|~|&|\\\\/g, " ")
         .replace(/[{}\\$]/g, "")
         .replace(/\s+/g, " ");
    return t.trim();
  }
  window.attnkitTexToText = texToText;
  function patchSearch() {
    /* global Search */
    if (typeof Search === "undefined" || !Search.htmlToText || Search.attnkitPatched) return;
    var original = Search.htmlToText;
    Search.htmlToText = function (htmlString, anchor) {
      var doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".math, mjx-container").forEach(function (m) {
        m.replaceWith(doc.createTextNode(" " + texToText(m.textContent) + " "));
      });
      return original(doc.documentElement.outerHTML, anchor);
    };
    Search.attnkitPatched = true;
  }

  /* 3. Figures open full size: a click on a figure opens the image file itself. */
  function linkFigures() {
    document.querySelectorAll("main .cell_output img, main figure img").forEach(function (img) {
      if (img.closest("a") || !img.getAttribute("src") || img.src.startsWith("data:")) return;
      var a = document.createElement("a");
      a.href = img.src;
      a.className = "attnkit-figure-link";
      a.setAttribute("aria-label", "Open the figure at full size");
      img.parentNode.insertBefore(a, img);
      a.appendChild(img);
    });
  }

  /* 4. Land on a link's target once the page has settled. The browser scrolls to
   * #target before MathJax has typeset the formulas above it; typesetting changes their
   * height and the target drifts (a citation would land below the screen on the
   * bibliography). Scroll to it again when MathJax is done and when images have loaded. */
  function rescrollToTarget() {
    if (!location.hash) return;
    var el = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (el) el.scrollIntoView({ block: "start" });
  }
  whenMathJaxReady(function () { rescrollToTarget(); });
  window.addEventListener("load", rescrollToTarget);

  /* 5. Explorers by keyboard, with names a screen reader announces.
   * The widget manager draws a ToggleButtons control as a row of buttons after an
   * unattached label, and a SelectionSlider as a noUiSlider handle (role="slider")
   * whose value text is the option's index. Each control, once drawn, gets:
   * - a name: the group of buttons is role="group" labelled by its label; each button
   *   says whether it is pressed (aria-pressed); the slider handle is labelled by the
   *   control's label and its value text is the readout (the option shown, "1024");
   * - arrow keys on the buttons (Left/Up and Right/Down move to the previous/next
   *   option and choose it, Home/End the first/last), as on the slider; Tab reaches
   *   every button and Enter or Space chooses the focused one.
   * Widgets are drawn after the page has loaded, so this runs on every change of
   * the explorers' DOM. */
  var uid = 0;
  function labelId(label) {
    if (!label.id) label.id = "attnkit-control-label-" + (++uid);
    return label.id;
  }
  function controlLabel(control) {
    var label = control.querySelector(":scope > .widget-label");
    return label && label.textContent.trim() ? label : null;
  }
  function syncButtons(group) {
    group.querySelectorAll("button.widget-toggle-button").forEach(function (b) {
      var pressed = b.classList.contains("mod-active") ? "true" : "false";
      if (b.getAttribute("aria-pressed") !== pressed) b.setAttribute("aria-pressed", pressed);
    });
  }
  function onButtonKey(event) {
    var keys = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1, Home: "first", End: "last" };
    var step = keys[event.key];
    var button = event.target.closest && event.target.closest("button.widget-toggle-button");
    if (step === undefined || !button) return;
    var buttons = Array.prototype.slice.call(
      button.parentNode.querySelectorAll("button.widget-toggle-button"));
    var i = buttons.indexOf(button);
    var j = step === "first" ? 0 : step === "last" ? buttons.length - 1
      : Math.min(Math.max(i + step, 0), buttons.length - 1);
    event.preventDefault();
    if (j !== i) { buttons[j].focus(); buttons[j].click(); }
  }
  function labelControls(root) {
    root.querySelectorAll(".widget-toggle-buttons").forEach(function (control) {
      var row = control.querySelector("button.widget-toggle-button");
      if (!row) return;
      var group = row.parentNode;
      if (!group.hasAttribute("role")) {
        group.setAttribute("role", "group");
        group.addEventListener("keydown", onButtonKey);
      }
      var label = controlLabel(control);
      if (label) group.setAttribute("aria-labelledby", labelId(label));
      syncButtons(group);
    });
    root.querySelectorAll(".widget-slider").forEach(function (control) {
      var handle = control.querySelector("[role='slider']");
      if (!handle) return;
      var label = controlLabel(control);
      if (label) handle.setAttribute("aria-labelledby", labelId(label));
      else if (!handle.hasAttribute("aria-label")) handle.setAttribute("aria-label", "choose a view");
      var readout = control.querySelector(".widget-readout");
      var text = readout ? readout.textContent.trim() : "";
      if (text && handle.getAttribute("aria-valuetext") !== text) handle.setAttribute("aria-valuetext", text);
      if (readout && !readout.hasAttribute("aria-hidden")) {
        /* The readout repeats the handle's value text; it is not an input of its own. */
        readout.setAttribute("aria-hidden", "true");
        readout.removeAttribute("contenteditable");
      }
    });
  }
  var pending = false;
  function watchControls() {
    labelControls(document);
    new MutationObserver(function () {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(function () { pending = false; labelControls(document); });
    }).observe(document.body, { subtree: true, childList: true, attributes: true,
                                 attributeFilter: ["class", "aria-valuenow"], characterData: true });
  }

  /* 6. The primary sidebar (the book's title, search, navigation, the PDF link) is a
   * landmark, so no content of the page lies outside one (axe: region). */
  function landmarkSidebar() {
    var sidebar = document.querySelector(".bd-sidebar-primary");
    if (sidebar && !sidebar.hasAttribute("role")) {
      sidebar.setAttribute("role", "complementary");
      sidebar.setAttribute("aria-label", "Book navigation");
    }
  }

  /* 7. A display formula wider than its column scrolls inside its own box (attnkit.css);
   * a keyboard user must be able to reach it to scroll it (axe: scrollable-region-focusable),
   * so a formula that overflows, once typeset and whenever the window changes size, is put
   * in the tab order, and taken out again when it fits. */
  function focusableWideMath() {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (c) {
      if (c.scrollWidth > c.clientWidth + 1) {
        if (!c.hasAttribute("tabindex")) c.setAttribute("tabindex", "0");
      } else if (c.getAttribute("tabindex") === "0") {
        c.removeAttribute("tabindex");
      }
    });
  }
  whenMathJaxReady(function () {
    focusableWideMath();
    if (document.fonts && document.fonts.ready) document.fonts.ready.then(focusableWideMath);
  });
  window.addEventListener("load", function () { window.setTimeout(focusableWideMath, 0); });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(focusableWideMath, 100);
  });

  function onReady() {
    landmarkSidebar();
    patchSearch();
    linkFigures();
    watchControls();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", onReady);
  } else {
    onReady();
  }
})();
