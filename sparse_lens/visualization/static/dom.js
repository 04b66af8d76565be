/* sparse_lens circuit viewer: small DOM and number-formatting helpers shared by node_panel.js and
 * circuit_viewer.js (loaded before both, as window.SparseLensDom).
 */
(function () {
  "use strict";

  /* An element with attributes ("text" sets its text, "className" its class) and children (nulls skipped). */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  /* A number with `digits` decimals (3 by default); "—" for a missing value. */
  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "—";
    return Number(x).toFixed(digits === undefined ? 3 : digits);
  }

  /* fmt with an explicit "+" on positive numbers. */
  function signed(x, digits) {
    if (x === null || x === undefined) return "—";
    return (x > 0 ? "+" : "") + fmt(x, digits);
  }

  /* A token as text, its line ends and tabs made visible. */
  function visible(token) {
    return String(token).replace(/\n/g, "↵").replace(/\t/g, "⇥");
  }

  window.SparseLensDom = { el: el, fmt: fmt, signed: signed, visible: visible };
})();
