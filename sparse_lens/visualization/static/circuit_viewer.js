/* sparse_lens circuit viewer: the whole circuit as one graph (d3), laid out by layer and node kind.
 *
 * Rows, bottom (embedding) to top (logits): for each layer the attention read, the q/k/v channels
 * grouped by head, the attention write, the MLP read, the neurons and the MLP write. Residual reads
 * and writes sit on vertical lanes, one per residual channel: the residual stream, which every
 * write -> read edge follows. Neurons and head groups are placed near the lanes they connect to.
 *
 * SparseLensViewer.mount(element, view) draws the data written by
 * sparse_lens.visualization.viewer.export_circuit_view into `element`. Several viewers may share a
 * page: nothing here uses a global id.
 */
(function () {
  "use strict";

  var dom = window.SparseLensDom;
  var el = dom.el, fmt = dom.fmt, signed = dom.signed, visible = dom.visible;

  var RESIDUAL_KINDS = { attn_read: 1, attn_write: 1, mlp_read: 1, mlp_write: 1 };
  var ROW_KINDS = ["attn_read", "qkv", "attn_write", "mlp_read", "neuron", "mlp_write"];
  var ROW_LABELS = {
    attn_read: "attn read", qkv: "q · k · v", attn_write: "attn write",
    mlp_read: "mlp read", neuron: "neurons", mlp_write: "mlp write",
  };
  var POSITIVE = "#2166ac";
  var NEGATIVE = "#c0392b";
  var STRUCTURAL = "#8a8a8a";

  /* ------------------------------------------------------------------ model of the graph */
  function buildModel(view) {
    var nodes = view.nodes;
    var E = view.edges;
    var n = E.source.length;
    var kinds = view.edge_kinds;
    var maxByKind = {};
    for (var i = 0; i < n; i++) {
      var w = E.weight[i];
      if (w === null) continue;
      var k = kinds[E.kind[i]];
      maxByKind[k] = Math.max(maxByKind[k] || 0, Math.abs(w));
    }
    var edges = new Array(n);
    var incoming = nodes.map(function () { return []; });
    var outgoing = nodes.map(function () { return []; });
    for (var j = 0; j < n; j++) {
      var kind = kinds[E.kind[j]];
      var weight = E.weight[j];
      var rel = weight === null ? 1 : (maxByKind[kind] ? Math.abs(weight) / maxByKind[kind] : 0);
      edges[j] = { id: j, source: E.source[j], target: E.target[j], weight: weight, kind: kind, rel: rel };
      outgoing[E.source[j]].push(j);
      incoming[E.target[j]].push(j);
    }
    return { nodes: nodes, edges: edges, incoming: incoming, outgoing: outgoing, maxByKind: maxByKind };
  }

  /* ------------------------------------------------------------------ layout */
  function layout(model, meta) {
    var nodes = model.nodes;
    var nLayers = meta.cfg.n_layers;
    var lanes = Array.from(new Set(nodes.filter(function (d) { return RESIDUAL_KINDS[d.kind]; })
      .map(function (d) { return d.channel; }))).sort(function (a, b) { return a - b; });

    // Rows bottom to top; empty rows are kept (the structure stays readable) but made short.
    var rows = [{ key: "embed", label: "embedding", layer: -1 }];
    for (var l = 0; l < nLayers; l++) {
      ROW_KINDS.forEach(function (k) { rows.push({ key: k + "@" + l, kind: k, layer: l, label: "L" + l + " " + ROW_LABELS[k] }); });
    }
    rows.push({ key: "unembed", label: "logits", layer: nLayers });
    var rowOf = {};
    rows.forEach(function (r, i) { r.index = i; r.nodes = []; rowOf[r.key] = r; });
    nodes.forEach(function (d) {
      var key = d.kind === "embed" || d.kind === "unembed" ? d.kind
        : (d.kind === "q" || d.kind === "k" || d.kind === "v" ? "qkv" : d.kind) + "@" + d.layer;
      rowOf[key].nodes.push(d);
      d.row = rowOf[key];
    });

    // Horizontal units: one per lane, per neuron, per head channel; the widest row sets the scale.
    var headGroups = {};
    rows.forEach(function (r) {
      if (r.kind !== "qkv") return;
      var groups = d3.groups(r.nodes, function (d) { return d.head; }).map(function (g) {
        var members = g[1].slice().sort(function (a, b) {
          return "qkv".indexOf(a.kind) - "qkv".indexOf(b.kind) || a.channel - b.channel;
        });
        return { layer: r.layer, head: g[0], nodes: members };
      });
      headGroups[r.layer] = groups;
      r.width = d3.sum(groups, function (g) { return g.nodes.length + 1.5; });
    });
    // Lanes may sit closer together than neurons and channels, which carry labels.
    var offUnits = 1;
    rows.forEach(function (r) {
      if (r.kind === "neuron") offUnits = Math.max(offUnits, r.nodes.length);
      if (r.kind === "qkv") offUnits = Math.max(offUnits, r.width || 0);
    });
    var laneStep = Math.max(11, Math.min(44, 1000 / Math.max(lanes.length, 1)));
    var step = Math.max(18, Math.min(44, 1000 / offUnits));
    var laneSpan = Math.max(lanes.length - 1, 0) * laneStep;
    var width = Math.max(offUnits * step, laneSpan + laneStep, 320);
    var x0 = (width - laneSpan) / 2;
    var laneX = {};
    lanes.forEach(function (c, i) { laneX[c] = x0 + i * laneStep; });

    // y: bottom to top.
    var heights = rows.map(function (r) {
      if (r.key === "embed" || r.key === "unembed") return 56;
      return r.nodes.length ? (r.kind === "qkv" ? 80 : 66) : 26;
    });
    var total = d3.sum(heights);
    var y = total;
    rows.forEach(function (r, i) {
      y -= heights[i];
      r.y = y + heights[i] / 2;
      r.top = y;
      r.height = heights[i];
    });

    nodes.forEach(function (d) {
      if (RESIDUAL_KINDS[d.kind]) { d.x = laneX[d.channel]; d.y = d.row.y; }
    });
    var embed = nodes[0], unembed = nodes[1];
    embed.y = rowOf.embed.y; unembed.y = rowOf.unembed.y;
    embed.x = unembed.x = width / 2;

    // Off-lane rows: each neuron (or head group) wants the mean x of the residual nodes it
    // touches; d3-force keeps them on their row and apart.
    function wanted(ids) {
      var xs = [];
      ids.forEach(function (d) {
        model.incoming[d.id].concat(model.outgoing[d.id]).forEach(function (e) {
          var edge = model.edges[e];
          var other = nodes[edge.source === d.id ? edge.target : edge.source];
          if (RESIDUAL_KINDS[other.kind]) xs.push(other.x);
        });
      });
      return xs.length ? d3.mean(xs) : width / 2;
    }
    function spread(items, radius) {
      if (!items.length) return;
      items.forEach(function (it) { it.x = it.want; it.fy = 0; it.y = 0; });
      var sim = d3.forceSimulation(items)
        .force("x", d3.forceX(function (it) { return it.want; }).strength(0.3))
        .force("collide", d3.forceCollide(function (it) { return radius(it); }).strength(1).iterations(3))
        .stop();
      for (var t = 0; t < 200; t++) sim.tick();
      // keep the row inside the drawing
      var lo = d3.min(items, function (it) { return it.x - radius(it); });
      var hi = d3.max(items, function (it) { return it.x + radius(it); });
      var shift = lo < 0 ? -lo : (hi > width ? width - hi : 0);
      if (hi - lo > width) shift = -lo + (width - (hi - lo)) / 2;
      items.forEach(function (it) { it.x += shift; });
    }
    rows.forEach(function (r) {
      if (r.kind === "neuron") {
        var items = r.nodes.map(function (d) { return { node: d, want: wanted([d]) }; });
        spread(items, function () { return step / 2; });
        items.sort(function (a, b) { return a.x - b.x; });
        items.forEach(function (it, i) { it.node.x = it.x; it.node.y = r.y; it.node.slot = i; });
      } else if (r.kind === "qkv") {
        var groups = (headGroups[r.layer] || []).map(function (g) {
          return { group: g, want: wanted(g.nodes), w: (g.nodes.length + 0.5) * step };
        });
        spread(groups, function (it) { return it.w / 2 + step / 2; });
        groups.forEach(function (it) {
          var g = it.group;
          g.x0 = it.x - it.w / 2;
          g.x1 = it.x + it.w / 2;
          g.y = r.y;
          g.nodes.forEach(function (d, i) { d.x = g.x0 + (i + 0.75) * step; d.y = r.y; d.slot = i; });
        });
      }
    });
    var allGroups = [];
    Object.keys(headGroups).forEach(function (l) { allGroups = allGroups.concat(headGroups[l]); });
    return { rows: rows, lanes: lanes, laneX: laneX, width: width, height: total, step: step, laneStep: laneStep,
      groups: allGroups };
  }

  /* ------------------------------------------------------------------ edge geometry */
  var link = d3.linkVertical().x(function (p) { return p[0]; }).y(function (p) { return p[1]; });

  function edgePath(model, geo, e) {
    var s = model.nodes[e.source], t = model.nodes[e.target];
    var sx = s.x, sy = s.y, tx = t.x, ty = t.y;
    if (s.kind === "embed") sx = t.x;
    if (t.kind === "unembed") tx = s.x;
    if (e.kind === "q-k") {
      var h = 8 + Math.abs(tx - sx) * 0.35;
      return "M" + sx + "," + sy + "Q" + (sx + tx) / 2 + "," + (sy - h) + " " + tx + "," + ty;
    }
    if (Math.abs(sx - tx) < 0.5) {
      // a residual link along its lane: bowed to the right so links of one lane stay apart
      var bow = 3 + Math.abs(ty - sy) * 0.05;
      return "M" + sx + "," + sy + "Q" + (sx + bow) + "," + (sy + ty) / 2 + " " + tx + "," + ty;
    }
    return link({ source: [sx, sy], target: [tx, ty] });
  }

  /* ------------------------------------------------------------------ header */
  function header(root, meta) {
    var L = meta.losses || {};
    var h = el("div", { className: "sl-header" });
    var title = el("div", { className: "sl-title" });
    title.appendChild(el("span", { className: "sl-task", text: meta.task || "circuit" }));
    title.appendChild(el("span", { className: "sl-model", text: " · " + (meta.model || "model") }));
    if (meta.completions) {
      title.appendChild(el("span", { className: "sl-completions" }, [
        el("span", { text: "completions: A " }), el("code", { text: visible(meta.completions[0]) }),
        el("span", { text: " vs B " }), el("code", { text: visible(meta.completions[1]) })]));
    }
    h.appendChild(title);
    var stats = el("div", { className: "sl-stats" });
    function chip(label, value, tip) {
      var c = el("span", { className: "sl-chip" }, [el("b", { text: label + " " }), el("span", { text: value })]);
      if (tip) c.title = tip;
      stats.appendChild(c);
    }
    function byKind(obj) {
      return Object.keys(obj || {}).filter(function (k) { return obj[k]; })
        .map(function (k) { return k.replace(/_/g, " ") + " " + obj[k]; }).join(" · ");
    }
    chip("target", fmt(meta.target_loss, 2), "target task loss of the pruning (fit pairs)");
    chip("nodes", String(meta.n_nodes), byKind(meta.nodes_by_kind));
    chip("edges", String(meta.n_edges), byKind(meta.edges_by_kind));
    chip("fit loss", fmt(L.fit_loss) + (L.fit_loss_calibrated !== undefined ? " (cal. " + fmt(L.fit_loss_calibrated) + ")" : ""),
      "task loss of the circuit on the fit pairs at the chosen k, raw and calibrated");
    chip("held-out sufficiency", fmt(L.test_sufficiency_loss) +
      (L.test_sufficiency_loss_calibrated !== undefined ? " (cal. " + fmt(L.test_sufficiency_loss_calibrated) + ")" : ""),
      "task loss with only the circuit intact (everything else mean-ablated), held-out pairs");
    chip("necessity", fmt(L.test_necessity_loss), "task loss with only the circuit's nodes mean-ablated, held-out pairs");
    chip("full model", fmt(L.test_full_loss), "task loss of the unpruned model, held-out pairs");
    chip("calibration", "×" + fmt(meta.calibration.scale, 2) + " " + signed(meta.calibration.shift, 2),
      "logit-difference calibration d' = scale·d + shift");
    h.appendChild(stats);
    var kinds = el("div", { className: "sl-kinds" });
    kinds.textContent = "nodes: " + (byKind(meta.nodes_by_kind) || "none") + "   |   edges: " + (byKind(meta.edges_by_kind) || "none");
    h.appendChild(kinds);
    if (L.reachable === 0) {
      h.appendChild(el("div", { className: "sl-warning", text: L.skipped ? "The model has not learned this task: pruning was skipped and the 'circuit' is the whole model."
        : "The target loss was not reached even with every node: the 'circuit' is the whole model." }));
    }
    root.appendChild(h);
  }

  /* ------------------------------------------------------------------ mount */
  var counter = 0;

  function mount(root, view, options) {
    options = options || {};
    counter += 1;
    var uid = "slv" + counter;
    root.classList.add("sl-viewer");
    root.innerHTML = "";
    var meta = view.meta;
    header(root, meta);
    var model = buildModel(view);
    root.dataset.nodes = String(meta.n_nodes);
    root.dataset.edges = String(model.edges.length);

    if (model.nodes.length <= 2) {
      var empty = el("div", { className: "sl-empty" });
      empty.appendChild(el("div", { className: "sl-empty-title", text: "This circuit has no nodes." }));
      empty.appendChild(el("div", { text: "Pruning kept nothing: every node of " + (meta.model || "the model") +
        " is mean-ablated, so there is no graph to draw. Its task loss with nothing kept is " +
        fmt((meta.losses || {}).fit_loss) + " (target " + fmt(meta.target_loss, 2) + ")." }));
      root.appendChild(empty);
      root.dataset.ready = "1";
      return;
    }

    var geo = layout(model, meta);
    var signedNodes = model.nodes.slice(2);
    var maxDelta = d3.max(signedNodes, function (d) { return Math.abs(d.ablation ? d.ablation.circuit : 0); }) || 1;
    var warm = d3.scaleSequentialSqrt(d3.interpolateYlOrRd).domain([0, maxDelta]);
    var cool = d3.scaleSequentialSqrt(d3.interpolateBlues).domain([0, maxDelta]);
    function nodeFill(d) {
      var v = d.ablation ? d.ablation.circuit : 0;
      return v >= 0 ? warm(v * 0.85 + maxDelta * 0.02) : cool(-v * 0.8 + maxDelta * 0.05);
    }

    /* toolbar */
    var bar = el("div", { className: "sl-toolbar" });
    var search = el("input", { type: "search", placeholder: "find a node (e.g. L1 neuron 412, h3, hook_q)", list: uid + "-names", className: "sl-search" });
    var names = el("datalist", { id: uid + "-names" });
    signedNodes.forEach(function (d) { names.appendChild(el("option", { value: d.label })); });
    var slider = el("input", { type: "range", min: "0", max: "1", step: "0.01", value: "0", className: "sl-threshold" });
    var sliderValue = el("span", { className: "sl-threshold-value", text: "0.00" });
    var shown = el("span", { className: "sl-shown" });
    var residual = el("input", { type: "checkbox", checked: "checked", className: "sl-residual-toggle" });
    var fit = el("button", { type: "button", className: "sl-fit", text: "fit" });
    bar.appendChild(search);
    bar.appendChild(names);
    bar.appendChild(el("label", { className: "sl-threshold-label", title: "hide edges whose |weight| is below this fraction of the strongest edge of the same kind" },
      [el("span", { text: "min |weight| " }), slider, sliderValue]));
    bar.appendChild(el("label", { className: "sl-toggle" }, [residual, el("span", { text: " residual links" })]));
    bar.appendChild(shown);
    bar.appendChild(fit);
    var legend = el("span", { className: "sl-legend" });
    legend.innerHTML = '<span class="sl-key"><i style="background:' + POSITIVE + '"></i>positive weight</span>' +
      '<span class="sl-key"><i style="background:' + NEGATIVE + '"></i>negative weight</span>' +
      '<span class="sl-key"><i class="sl-dash"></i>q·k pair / residual link</span>' +
      '<span class="sl-key"><i class="sl-grad"></i>node: Δ loss ablated from circuit (0 → ' + fmt(maxDelta, 2) + ')</span>';
    bar.appendChild(legend);
    root.appendChild(bar);

    var body = el("div", { className: "sl-body" });
    var graphBox = el("div", { className: "sl-graph" });
    var panel = el("div", { className: "sl-panel" });
    body.appendChild(graphBox);
    body.appendChild(panel);
    root.appendChild(body);
    var tip = el("div", { className: "sl-tooltip" });
    graphBox.appendChild(tip);

    /* Three stacked SVG layers (back: rows, lanes, heads; edges; front: highlights and nodes), each
     * its own compositing layer: dimming the edges on hover changes one layer's opacity, and while a
     * dense graph is zoomed or panned the layers move as bitmaps (CSS transforms); the exact
     * transform is drawn once the gesture pauses. */
    var margin = { left: 120, right: 30, top: 20, bottom: 30 };
    function layer(cls) {
      var svg = d3.select(graphBox).append("svg").attr("class", "sl-svg " + cls);
      var zoomGroup = svg.append("g").attr("class", "sl-zoom");
      var scene = zoomGroup.append("g").attr("transform", "translate(" + margin.left + "," + margin.top + ")");
      return { svg: svg, zoom: zoomGroup, scene: scene };
    }
    var back = layer("sl-layer-back"), mid = layer("sl-layer-edges"), front = layer("sl-layer-front");
    var layers = [back, mid, front];
    var scene = back.scene;

    // residual stream: bands between sublayers, and one lane per channel
    var bands = scene.append("g").attr("class", "sl-rows");
    bands.selectAll("rect.sl-row-band").data(geo.rows).join("rect")
      .attr("class", function (r) { return "sl-row-band" + (r.index % 2 ? " sl-odd" : ""); })
      .attr("x", -margin.left + 4).attr("width", geo.width + margin.left + margin.right - 8)
      .attr("y", function (r) { return r.top; }).attr("height", function (r) { return r.height; });
    bands.selectAll("text.sl-row-label").data(geo.rows).join("text")
      .attr("class", "sl-row-label").attr("x", -margin.left + 10).attr("y", function (r) { return r.y + 4; })
      .text(function (r) { return r.label + (r.nodes.length && r.kind ? " (" + r.nodes.length + ")" : ""); });
    var lanes = scene.append("g").attr("class", "sl-lanes");
    var top = geo.rows[geo.rows.length - 1].y, bottom = geo.rows[0].y;
    lanes.selectAll("line").data(geo.lanes).join("line")
      .attr("x1", function (c) { return geo.laneX[c]; }).attr("x2", function (c) { return geo.laneX[c]; })
      .attr("y1", top).attr("y2", bottom);
    var upright = geo.laneStep < 18;  // tight lanes: labels read bottom to top
    lanes.selectAll("text").data(geo.lanes).join("text")
      .attr("transform", function (c) {
        return "translate(" + (geo.laneX[c] + (upright ? 3 : 0)) + "," + (bottom + (upright ? 16 : 22)) + ")" + (upright ? " rotate(-90)" : "");
      })
      .attr("text-anchor", upright ? "end" : "middle")
      .text(function (c) { return c; });
    lanes.append("text").attr("class", "sl-lane-title").attr("x", -margin.left + 10).attr("y", bottom + 22)
      .text("residual channel");

    // head groups
    var groups = scene.append("g").attr("class", "sl-heads");
    groups.selectAll("rect").data(geo.groups).join("rect")
      .attr("x", function (g) { return g.x0; }).attr("width", function (g) { return g.x1 - g.x0; })
      .attr("y", function (g) { return g.y - 17; }).attr("height", 34).attr("rx", 5);
    groups.selectAll("text").data(geo.groups).join("text")
      .attr("x", function (g) { return g.x0 + 3; }).attr("y", function (g) { return g.y - 20; })
      .text(function (g) { return "h" + g.head; });

    // terminals
    var terms = scene.append("g").attr("class", "sl-terminals");
    [model.nodes[0], model.nodes[1]].forEach(function (d) {
      var lo = geo.lanes.length ? geo.laneX[geo.lanes[0]] - 10 : 0;
      var hi = geo.lanes.length ? geo.laneX[geo.lanes[geo.lanes.length - 1]] + 10 : geo.width;
      var g = terms.append("g").attr("class", "sl-terminal").attr("data-node", d.id);
      g.append("rect").attr("x", lo).attr("width", Math.max(hi - lo, 60)).attr("y", d.y - 7).attr("height", 14).attr("rx", 7);
      if (d.kind === "unembed") {
        g.append("text").attr("x", lo + 6).attr("y", d.y - 12)
          .text("logits" + (meta.completions ? " — an edge's weight is how much its channel pushes A − B" : ""));
      }
    });

    // edges
    var edgeLayer = mid.scene.append("g").attr("class", "sl-edges");
    var edgeSel = edgeLayer.selectAll("path").data(model.edges).join("path")
      .attr("class", function (e) {
        var c = "sl-edge";
        if (e.weight === null) c += " sl-structural";
        if (e.kind === "write->read" || e.kind === "embed->read" || e.kind === "write->unembed") c += " sl-residual";
        return c;
      })
      .attr("d", function (e) { return edgePath(model, geo, e); })
      .attr("stroke", function (e) { return e.weight === null ? STRUCTURAL : (e.weight >= 0 ? POSITIVE : NEGATIVE); })
      .attr("stroke-width", function (e) { return e.weight === null ? 1 : 0.5 + 3 * e.rel; })
      .attr("stroke-opacity", function (e) { return e.weight === null ? 0.55 : 0.18 + 0.62 * e.rel; })
      .attr("data-edge", function (e) { return e.id; });
    var edgeEls = edgeSel.nodes();
    var hlLayer = front.scene.append("g").attr("class", "sl-highlight");

    // nodes
    var nodeLayer = front.scene.append("g").attr("class", "sl-nodes");
    var nodeSel = nodeLayer.selectAll("g").data(signedNodes).join("g")
      .attr("class", function (d) { return "sl-node sl-kind-" + d.kind; })
      .attr("transform", function (d) { return "translate(" + d.x + "," + d.y + ")"; })
      .attr("data-node", function (d) { return d.id; });
    var r = Math.max(3.5, Math.min(6, geo.laneStep * 0.34));
    nodeSel.append("circle").attr("class", "sl-hit").attr("r", r + 4);  // a larger target for the mouse
    nodeSel.append("circle").attr("class", "node").attr("r", r).attr("fill", nodeFill);
    var labelled = signedNodes.length <= 400;
    // labels above the node (q/k/v: below, inside their head box); where neighbours sit close,
    // every other label goes to the other side
    var tight = geo.step < 26;
    nodeSel.append("text").attr("class", "sl-node-label").attr("y", function (d) {
      var below = d.kind === "q" || d.kind === "k" || d.kind === "v";
      if (tight && (d.kind === "neuron" || below) && d.slot % 2) below = !below;
      return below ? r + 9 : -r - 3;
    })
      .attr("text-anchor", "middle")
      .text(function (d) { return d.kind === "q" || d.kind === "k" || d.kind === "v" ? d.kind + d.channel : d.channel; });
    var nodeEls = {};
    nodeSel.each(function (d) { nodeEls[d.id] = this; });
    root.classList.toggle("sl-dense", !labelled);

    /* zoom and pan (the behaviour sits on the graph's box, under all three layers) */
    var dense = model.edges.length >= (options.denseEdges === undefined ? 2500 : options.denseEdges);
    var committed = d3.zoomIdentity, commitTimer = null;
    function commit(t) {
      committed = t;
      layers.forEach(function (l) { l.zoom.attr("transform", t); l.svg.style("transform", null); });
      root.classList.toggle("sl-zoomed-in", t.k >= 1.6);
    }
    var zoom = d3.zoom().scaleExtent([0.05, 12]).on("zoom", function (event) {
      var t = event.transform;
      if (!dense) { commit(t); return; }
      var k = t.k / committed.k;
      var css = "translate(" + (t.x - k * committed.x) + "px," + (t.y - k * committed.y) + "px) scale(" + k + ")";
      layers.forEach(function (l) { l.svg.style("transform", css); });
      clearTimeout(commitTimer);
      commitTimer = setTimeout(function () { commit(t); }, 160);
    });
    var box = d3.select(graphBox);
    box.call(zoom).on("dblclick.zoom", null);
    var fullW = geo.width + margin.left + margin.right, fullH = geo.height + margin.top + margin.bottom + 20;
    function fitView(animate) {
      var w = graphBox.clientWidth || 900, h = graphBox.clientHeight || 600;
      var k = Math.min(w / fullW, h / fullH, 1.6);
      var t = d3.zoomIdentity.translate((w - fullW * k) / 2, Math.max(0, (h - fullH * k) / 2)).scale(k);
      (animate ? box.transition().duration(300) : box).call(zoom.transform, t);
      if (!animate) { clearTimeout(commitTimer); commit(t); }
    }
    function focusOn(d) {
      var w = graphBox.clientWidth || 900, h = graphBox.clientHeight || 600;
      var k = Math.max(d3.zoomTransform(graphBox).k, 1.4);
      var t = d3.zoomIdentity.translate(w / 2 - (d.x + margin.left) * k, h / 2 - (d.y + margin.top) * k).scale(k);
      box.transition().duration(350).call(zoom.transform, t);
    }
    fit.addEventListener("click", function () { fitView(true); });

    /* highlighting: the node's edges are copied onto a layer above the rest, which dims */
    var pinned = null;
    function highlight(d) {
      hlLayer.selectAll("*").remove();
      nodeLayer.selectAll(".sl-nbr").classed("sl-nbr", false);
      nodeLayer.selectAll(".sl-hover").classed("sl-hover", false);
      root.classList.toggle("sl-focus", !!d);
      if (!d) return;
      var ids = model.incoming[d.id].concat(model.outgoing[d.id]);
      ids.forEach(function (i) {
        var src = edgeEls[i];
        if (src.style.display === "none") return;
        var copy = src.cloneNode(false);
        copy.setAttribute("class", src.getAttribute("class") + " sl-hl " + (model.edges[i].target === d.id ? "sl-in" : "sl-out"));
        hlLayer.node().appendChild(copy);
        var e = model.edges[i];
        var other = e.source === d.id ? e.target : e.source;
        if (nodeEls[other]) nodeEls[other].classList.add("sl-nbr");
      });
      if (nodeEls[d.id]) nodeEls[d.id].classList.add("sl-hover");
    }
    nodeSel.on("mouseenter", function (event, d) {
      highlight(d);
      tip.style.display = "block";
      tip.innerHTML = "";
      tip.appendChild(el("b", { text: d.label }));
      tip.appendChild(el("div", { text: d.name }));
      tip.appendChild(el("div", { text: "Δ loss ablated from circuit " + signed(d.ablation && d.ablation.circuit) +
        " · from full model " + signed(d.ablation && d.ablation.full) }));
      tip.appendChild(el("div", { text: model.incoming[d.id].length + " in · " + model.outgoing[d.id].length + " out · mean " + fmt(d.mean) }));
    }).on("mousemove", function (event) {
      var box = graphBox.getBoundingClientRect();
      tip.style.left = (event.clientX - box.left + 14) + "px";
      tip.style.top = (event.clientY - box.top + 10) + "px";
    }).on("mouseleave", function () {
      tip.style.display = "none";
      highlight(pinned);
    }).on("click", function (event, d) {
      event.stopPropagation();
      select(d.id, false);
    });
    box.on("click", function (event) { if (!event.defaultPrevented) select(null); });
    edgeLayer.on("mouseover", function (event) {
      var path = event.target;
      var i = path.getAttribute && path.getAttribute("data-edge");
      if (i === null || i === undefined || path.firstChild) return;
      var e = model.edges[+i];
      var t = document.createElementNS("http://www.w3.org/2000/svg", "title");  // made on first hover only
      t.textContent = model.nodes[e.source].label + " → " + model.nodes[e.target].label + "  (" + e.kind + ")  weight " +
        (e.weight === null ? "— (q·k pair)" : signed(e.weight, 4));
      path.appendChild(t);
    });

    function select(id, recenter) {
      nodeLayer.selectAll(".sl-pinned").classed("sl-pinned", false);
      pinned = id === null || id === undefined ? null : model.nodes[id];
      if (pinned && nodeEls[pinned.id]) nodeEls[pinned.id].classList.add("sl-pinned");
      highlight(pinned);
      root.dataset.pinned = pinned ? String(pinned.id) : "";
      window.SparseLensNodePanel.render(panel, {
        view: view, model: model, node: pinned, select: function (j) { select(j, true); },
        preview: function (j) { highlight(j === null ? pinned : model.nodes[j]); },  // hover synced with the panel
      });
      if (pinned && recenter) focusOn(pinned);
    }

    /* threshold and residual toggle */
    function applyFilter() {
      var t = +slider.value;
      var showResidual = residual.checked;
      var visible = 0;
      for (var i = 0; i < model.edges.length; i++) {
        var e = model.edges[i];
        var isResidual = e.kind === "write->read" || e.kind === "embed->read" || e.kind === "write->unembed";
        var on = (e.weight === null || e.rel >= t) && (showResidual || !isResidual);
        var s = on ? "" : "none";
        if (edgeEls[i].style.display !== s) edgeEls[i].style.display = s;
        if (on) visible++;
      }
      sliderValue.textContent = t.toFixed(2);
      shown.textContent = visible.toLocaleString() + " of " + model.edges.length.toLocaleString() + " edges";
      root.dataset.visibleEdges = String(visible);
      highlight(pinned);
    }
    var pending = false;
    function scheduleFilter() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(function () { pending = false; applyFilter(); });
    }
    slider.addEventListener("input", scheduleFilter);
    residual.addEventListener("change", applyFilter);

    /* search */
    function matches(q) {
      q = q.trim().toLowerCase();
      if (!q) return [];
      return signedNodes.filter(function (d) {
        return d.label.toLowerCase().indexOf(q) >= 0 || d.name.toLowerCase().indexOf(q) >= 0;
      });
    }
    search.addEventListener("input", function () {
      var found = matches(search.value);
      nodeLayer.selectAll(".sl-match").classed("sl-match", false);
      found.forEach(function (d) { nodeEls[d.id].classList.add("sl-match"); });
      var exact = signedNodes.filter(function (d) { return d.label === search.value || d.name === search.value; });
      if (exact.length) select(exact[0].id, true);
    });
    search.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      var found = matches(search.value);
      if (found.length) select(found[0].id, true);
    });

    applyFilter();
    fitView(false);
    select(null);
    root.dataset.ready = "1";
  }

  window.SparseLensViewer = { mount: mount };
})();
