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

  function onReady() {
    patchSearch();
    linkFigures();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", onReady);
  } else {
    onReady();
  }
})();
