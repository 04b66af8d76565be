/* sparse_lens circuit viewer: the node panel.
 *
 * SparseLensNodePanel.render(panel, ctx) fills `panel` for ctx.node (null: the circuit's overview):
 * the node's identity, the task-loss change when it alone is ablated (from the circuit, from the
 * full model), its in/out edges (clickable: ctx.select(id)), its activation on task pairs by class,
 * its head's attention pattern (q/k channels) and its top/bottom pretraining contexts at several
 * quantiles. Token and attention views are circuitsvis components (window.CircuitsVis).
 */
(function () {
  "use strict";

  var dom = window.SparseLensDom;
  var el = dom.el, fmt = dom.fmt, signed = dom.signed, visible = dom.visible;

  var SINK = "⟨sink⟩";
  var ids = 0;

  function ordinal(n) {
    var tens = n % 100, ones = n % 10;
    var suffix = tens >= 11 && tens <= 13 ? "th" : ones === 1 ? "st" : ones === 2 ? "nd" : ones === 3 ? "rd" : "th";
    return n + suffix;
  }

  function tokenText(view, id) {
    var s = view.vocab[String(id)];
    return s === undefined ? "<" + id + ">" : s;
  }

  /* A circuitsvis component rendered into a fresh element (returned). */
  function circuitsvis(component, props) {
    var id = "sl-cv-" + (++ids);
    var box = el("div", { id: id, className: "sl-cv" });
    box._render = function () {
      if (!window.CircuitsVis) {
        box.textContent = "(circuitsvis is not loaded)";
        return;
      }
      window.CircuitsVis.render(id, window.CircuitsVis[component], props);
    };
    return box;
  }

  function coloredTokens(view, tokens, values, extent, focus) {
    var props = {
      tokens: tokens.map(function (t) { return tokenText(view, t); }),
      values: values, minValue: -extent, maxValue: extent,
      positiveColor: "#2166ac", negativeColor: "#c0392b",  // the graph's colours for + and -
    };
    var box = circuitsvis("ColoredTokens", props);
    if (focus !== undefined && focus !== null) box.dataset.focus = String(focus);
    return box;
  }

  function section(title, note) {
    var s = el("section", { className: "sl-section" });
    s.appendChild(el("h4", { text: title }));
    if (note) s.appendChild(el("div", { className: "sl-note", text: note }));
    return s;
  }

  function table(head, rows) {
    var t = el("table", { className: "sl-table" });
    var tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", { text: h })); });
    t.appendChild(tr);
    rows.forEach(function (r) {
      var row = el("tr");
      r.forEach(function (c) { row.appendChild(c instanceof Node ? el("td", {}, [c]) : el("td", { text: c })); });
      t.appendChild(row);
    });
    return t;
  }

  function nodeLink(ctx, id, text) {
    var a = el("a", { href: "#", className: "sl-node-link", text: text || ctx.model.nodes[id].label, "data-node": String(id) });
    a.addEventListener("click", function (event) {
      event.preventDefault();
      event.stopPropagation();
      if (id > 1) ctx.select(id);
    });
    a.addEventListener("mouseenter", function () { if (ctx.preview) ctx.preview(id); });
    a.addEventListener("mouseleave", function () { if (ctx.preview) ctx.preview(null); });
    return a;
  }

  /* ---------------------------------------------------------------- overview (nothing pinned) */
  function overview(panel, ctx) {
    var nodes = ctx.model.nodes.slice(2);
    panel.appendChild(el("div", { className: "sl-hint", text: "Hover a node to see its edges; click it to pin it and open its panel here. Scroll to zoom, drag to pan." }));
    var s = section("Nodes that matter most", "Task-loss change when the node alone is mean-ablated from the circuit (on " +
      ctx.view.meta.settings.n_pairs + " held-out pairs; the circuit's loss there is " + fmt(ctx.view.meta.panel_losses.circuit) + ").");
    var ranked = nodes.slice().sort(function (a, b) { return (b.ablation ? b.ablation.circuit : 0) - (a.ablation ? a.ablation.circuit : 0); });
    s.appendChild(table(["node", "Δ circuit", "Δ full model"], ranked.slice(0, 15).map(function (d) {
      return [nodeLink(ctx, d.id), signed(d.ablation && d.ablation.circuit), signed(d.ablation && d.ablation.full)];
    })));
    panel.appendChild(s);
    pruningCharts(panel, ctx.view.meta.diagnostics || {}, ctx.view.meta);
  }

  /* The authors' viewer's two plots: task loss against k along the bisection, and the mask training. */
  function pruningCharts(panel, diag, meta) {
    if (!diag.bisection && !diag.mask_training) return;
    var s = section("How pruning got here");
    var W = 420, H = 150, m = { left: 44, right: 44, top: 10, bottom: 30 };
    function chart(title) {
      s.appendChild(el("div", { className: "sl-sub", text: title }));
      var svg = d3.select(s).append("svg").attr("class", "sl-chart").attr("width", W).attr("height", H);
      return svg.append("g").attr("transform", "translate(" + m.left + "," + m.top + ")");
    }
    var w = W - m.left - m.right, h = H - m.top - m.bottom;
    var b = diag.bisection;
    if (b) {
      var g = chart("Task loss vs k, the nodes kept (every k the bisection tried; target and chosen k marked)");
      var pts = b.points.filter(function (p) { return p[0] > 0; });
      var x = d3.scaleLog().domain(d3.extent(pts, function (p) { return p[0]; })).nice().range([0, w]);
      var y = d3.scaleLinear().domain([0, d3.max(pts, function (p) { return p[1]; }) * 1.05]).nice().range([h, 0]);
      g.append("g").attr("transform", "translate(0," + h + ")").call(d3.axisBottom(x).ticks(5, "~s"));
      g.append("g").call(d3.axisLeft(y).ticks(4));
      g.append("line").attr("class", "sl-target").attr("x1", 0).attr("x2", w).attr("y1", y(b.target)).attr("y2", y(b.target));
      g.append("path").attr("class", "sl-line").attr("d", d3.line().x(function (p) { return x(p[0]); }).y(function (p) { return y(p[1]); })(pts));
      g.selectAll("circle").data(pts).join("circle").attr("r", 2.5).attr("cx", function (p) { return x(p[0]); })
        .attr("cy", function (p) { return y(p[1]); }).attr("class", function (p) { return p[0] === b.k ? "sl-chosen" : "sl-point"; });
      g.append("text").attr("class", "sl-chart-note").attr("x", w).attr("y", h + 26).attr("text-anchor", "end").text("k (log)");
      if (b.k) g.append("text").attr("class", "sl-chart-note").attr("x", x(b.k) + 5).attr("y", y(b.target) - 4).text("k = " + b.k);
    }
    var t = diag.mask_training;
    if (t) {
      var g2 = chart("Mask training: task loss (blue, left) and kept nodes (grey, right) per step");
      var xs = d3.scaleLinear().domain(d3.extent(t.step)).range([0, w]);
      var yl = d3.scaleLinear().domain([0, d3.max(t.task_loss) * 1.05]).nice().range([h, 0]);
      var yk = d3.scaleLinear().domain([0, d3.max(t.kept) * 1.05]).nice().range([h, 0]);
      g2.append("g").attr("transform", "translate(0," + h + ")").call(d3.axisBottom(xs).ticks(5));
      g2.append("g").call(d3.axisLeft(yl).ticks(4));
      g2.append("g").attr("transform", "translate(" + w + ",0)").call(d3.axisRight(yk).ticks(4, "~s"));
      var line = function (ys, key) { return d3.line().x(function (_, i) { return xs(t.step[i]); }).y(function (v) { return ys(v); })(t[key]); };
      g2.append("path").attr("class", "sl-line sl-kept").attr("d", line(yk, "kept"));
      g2.append("path").attr("class", "sl-line").attr("d", line(yl, "task_loss"));
      g2.append("text").attr("class", "sl-chart-note").attr("x", w).attr("y", h + 26).attr("text-anchor", "end").text("step");
    }
    panel.appendChild(s);
  }

  /* ---------------------------------------------------------------- sections of a node */
  function identity(panel, ctx, d) {
    panel.appendChild(el("h3", { className: "sl-node-title", text: d.label }));
    panel.appendChild(el("code", { className: "sl-node-name", text: d.name }));
    var facts = [["kind", d.kind.replace(/_/g, " ")], ["layer", String(d.layer)]];
    if (d.head !== null) facts.push(["head", String(d.head)]);
    facts.push([d.kind === "neuron" ? "neuron" : (d.head !== null ? "channel" : "residual channel"), String(d.channel)]);
    facts.push(["mean (ablation value)", fmt(d.mean, 4)]);
    var dl = el("div", { className: "sl-facts" });
    facts.forEach(function (f) { dl.appendChild(el("span", {}, [el("b", { text: f[0] + " " }), el("span", { text: f[1] })])); });
    panel.appendChild(dl);
  }

  function ablation(panel, ctx, d) {
    var L = ctx.view.meta.panel_losses;
    var s = section("Ablating this node", "Task loss on " + ctx.view.meta.settings.n_pairs + " held-out pairs, the node replaced by its mean.");
    var a = d.ablation || {};
    s.appendChild(table(["setting", "loss before", "loss after", "Δ loss"], [
      ["only this node ablated from the circuit", fmt(L.circuit), fmt(L.circuit + a.circuit), signed(a.circuit)],
      ["only this node ablated (full model)", fmt(L.full), fmt(L.full + a.full), signed(a.full)],
    ]));
    panel.appendChild(s);
  }

  function edgeList(ctx, ids, incoming) {
    var model = ctx.model;
    var sorted = ids.slice().sort(function (a, b) {
      var wa = model.edges[a].weight, wb = model.edges[b].weight;
      return Math.abs(wb === null ? 0 : wb) - Math.abs(wa === null ? 0 : wa);
    });
    var list = el("div", { className: "sl-edge-list" });
    var limit = 40;
    function fill(n) {
      list.innerHTML = "";
      sorted.slice(0, n).forEach(function (i) {
        var e = model.edges[i];
        var other = incoming ? e.source : e.target;
        var row = el("div", { className: "sl-edge-row" });
        row.appendChild(el("span", { className: "sl-edge-w " + (e.weight === null ? "" : e.weight >= 0 ? "sl-pos" : "sl-neg"),
          text: e.weight === null ? "q·k" : signed(e.weight, 3) }));
        row.appendChild(other > 1 ? nodeLink(ctx, other) : el("span", { text: model.nodes[other].label }));
        row.appendChild(el("span", { className: "sl-edge-kind", text: e.kind }));
        list.appendChild(row);
      });
      if (sorted.length > n) {
        var more = el("button", { type: "button", className: "sl-more", text: "show all " + sorted.length });
        more.addEventListener("click", function (event) { event.stopPropagation(); fill(sorted.length); });
        list.appendChild(more);
      }
    }
    fill(limit);
    return list;
  }

  function edges(panel, ctx, d) {
    var s = section("Edges", "Weights of the model between this node and other circuit nodes; the strongest first. Click a node to go there.");
    s.appendChild(el("div", { className: "sl-sub", text: "in (" + ctx.model.incoming[d.id].length + ")" }));
    s.appendChild(edgeList(ctx, ctx.model.incoming[d.id], true));
    s.appendChild(el("div", { className: "sl-sub", text: "out (" + ctx.model.outgoing[d.id].length + ")" }));
    s.appendChild(edgeList(ctx, ctx.model.outgoing[d.id], false));
    panel.appendChild(s);
  }

  function taskPairs(panel, ctx, d) {
    var t = d.task;
    if (!t) return;
    var meta = ctx.view.meta;
    var s = section("On task pairs", "Activation at the last token (where " + (meta.completions ? "‹" + visible(meta.completions[0]) +
      "› vs ‹" + visible(meta.completions[1]) + "›" : "the completion") + " is predicted), positive vs negative prompt of each pair.");
    s.appendChild(table(["", "positive", "negative", "difference"], [
      ["mean, circuit", fmt(t.circuit.positive), fmt(t.circuit.negative), signed(t.circuit.difference)],
      ["mean, full model", fmt(t.full.positive), fmt(t.full.negative), signed(t.full.difference)],
    ]));
    if (t.pairs && t.pairs.length) {
      s.appendChild(el("div", { className: "sl-sub", text: "first pairs (circuit)" }));
      s.appendChild(table(["pair", "positive", "negative", "difference"], t.pairs.map(function (p, i) {
        return [String(i), fmt(p[0]), fmt(p[1]), signed(p[0] - p[1])];
      })));
    }
    var extent = 1e-6;
    (t.examples || []).forEach(function (ex) {
      ex.positive.concat(ex.negative).forEach(function (v) { extent = Math.max(extent, Math.abs(v)); });
    });
    (t.examples || []).forEach(function (ex, i) {
      var tokens = ctx.view.task_examples[i];
      s.appendChild(el("div", { className: "sl-sub", text: "pair " + i + ": every token's activation (circuit), positive then negative prompt" }));
      s.appendChild(coloredTokens(ctx.view, tokens.positive, ex.positive, extent));
      s.appendChild(coloredTokens(ctx.view, tokens.negative, ex.negative, extent));
      if (ex.positive.length === ex.negative.length) {
        var diff = ex.positive.map(function (v, j) { return v - ex.negative[j]; });
        s.appendChild(el("div", { className: "sl-note", text: "difference (positive − negative), on the positive prompt's tokens" }));
        s.appendChild(coloredTokens(ctx.view, tokens.positive, diff, extent));
      }
    });
    panel.appendChild(s);
  }

  function attention(panel, ctx, d) {
    if (d.kind !== "q" && d.kind !== "k") return;
    var A = ctx.view.attention;
    var head = A && A.heads[d.layer + "." + d.head];
    if (!head) return;
    var sink = head.sink_share;
    var s = section("Attention of head L" + d.layer + " h" + d.head + " (circuit)",
      "On one task prompt; the first key is the attention sink, so each row's share of it is visible. Sink share at the last token: " +
      (100 * sink[sink.length - 1]).toFixed(1) + "% (mean over queries " + (100 * sink.reduce(function (a, b) { return a + b; }, 0) / sink.length).toFixed(1) + "%).");
    var tokens = [SINK].concat(A.tokens.map(function (t) { return tokenText(ctx.view, t); }));
    s.appendChild(circuitsvis("AttentionPattern", { tokens: tokens, attention: head.pattern, maxValue: 1, minValue: 0, showAxisLabels: true, maskUpperTri: true }));
    panel.appendChild(s);
  }

  function contexts(panel, ctx, d) {
    var c = d.contexts;
    if (!c) return;
    var settings = ctx.view.meta.settings;
    var s = section("Pretraining contexts", "Over " + settings.n_windows + " windows of " + settings.window +
      " tokens of the corpus's validation split (full model): max " + fmt(c.max) + ", min " + fmt(c.min) + ", mean " + fmt(c.mean) +
      ", nonzero on " + (100 * c.active_fraction).toFixed(0) + "% of tokens. Each example ends a few tokens after the token it was picked for (outlined).");
    var extent = Math.max(Math.abs(c.max), Math.abs(c.min), 1e-6);
    var names = { top: "top activations", bottom: "bottom activations" };
    c.levels.forEach(function (level) {
      var title = names[level.level] || ("near the " + ordinal(Math.round(level.quantile * 100)) + " percentile (" + fmt(level.threshold) + ")");
      var box = el("div", { className: "sl-level", "data-level": level.level });
      box.appendChild(el("div", { className: "sl-sub", text: title }));
      level.examples.forEach(function (ex) {
        var row = el("div", { className: "sl-example" });
        row.appendChild(el("span", { className: "sl-example-value", text: fmt(ex.value) }));
        row.appendChild(coloredTokens(ctx.view, ex.tokens, ex.values, extent, ex.focus));
        box.appendChild(row);
      });
      s.appendChild(box);
    });
    panel.appendChild(s);
  }

  /* Outline each example's picked token once circuitsvis has drawn it. */
  function markFocus(panel) {
    var pending = panel.querySelectorAll(".sl-cv[data-focus]");
    var left = 0;
    pending.forEach(function (box) {
      var tokens = box.querySelectorAll(".colored-tokens > span, .colored-tokens > div");
      var i = +box.dataset.focus;
      if (tokens.length > i) {
        tokens[i].classList.add("sl-focus-token");
        box.removeAttribute("data-focus");
      } else left++;
    });
    return left;
  }

  function render(panel, ctx) {
    panel.innerHTML = "";
    panel.scrollTop = 0;
    var d = ctx.node;
    if (!d) {
      overview(panel, ctx);
    } else {
      identity(panel, ctx, d);
      ablation(panel, ctx, d);
      edges(panel, ctx, d);
      taskPairs(panel, ctx, d);
      attention(panel, ctx, d);
      contexts(panel, ctx, d);
    }
    panel.querySelectorAll(".sl-cv").forEach(function (box) { box._render(); });
    var tries = 0;
    (function retry() {
      if (markFocus(panel) && ++tries < 40) setTimeout(retry, 50);
    })();
    panel.dataset.node = d ? String(d.id) : "";
  }

  window.SparseLensNodePanel = { render: render };
})();
