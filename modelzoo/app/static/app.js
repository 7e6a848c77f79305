// modelzoo viewer: the grid, the sidebar filters and the sample view.
// Plain JavaScript, no build step. The page state lives in the URL hash as JSON
// ({filters, eval, sort, hidden, colorBy, sample}); the server gets
// {filters, eval, sort} with each request and answers from MongoDB.
"use strict";

const EVAL_COLORS = { tp: [40, 200, 60], fp: [235, 40, 40], fn: [255, 160, 0] };
const LIST_KEYS = { Detections: "detections", Classifications: "classifications", Keypoints: "keypoints" };
const MASK_ALPHA = 0.5;

let info = null;            // /api/info
let state = readState();    // what the URL says
let cursor = null;          // the next grid page's cursor (null: first page)
let loading = false;
let exhausted = false;
let generation = 0;         // bumps when the filters change: late pages are dropped
let current = null;         // the sample shown in the sample view
let frameCache = {};        // frame number -> {field: label} of the video shown
let frameChunks = {};       // chunk start -> promise

// ------------------------------------------------------------------ colours

// modelzoo.drawing's palette and hash (zlib.crc32 of the UTF-8 name): a class has the
// same colour here, in every visit, and in the PNGs that `modelzoo draw` writes
const PALETTE = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
  [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [255, 215, 0], [0, 128, 128],
];
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(text) {
  let c = 0xffffffff;
  for (const b of new TextEncoder().encode(text)) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const colorCache = new Map();

function colorOf(name) {
  const key = String(name);
  if (!colorCache.has(key)) colorCache.set(key, PALETTE[crc32(key) % PALETTE.length]);
  return colorCache.get(key);
}

const css = (rgb, alpha) => (alpha === undefined ? `rgb(${rgb[0]},${rgb[1]},${rgb[2]})` : `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${alpha})`);

function objectColor(field, obj) {
  const key = state.eval && state.eval.key;
  const result = key && obj.attributes ? obj.attributes[key] : null;
  if (result && EVAL_COLORS[result]) return EVAL_COLORS[result];
  return state.colorBy === "field" ? colorOf(field) : colorOf(obj.label == null ? field : obj.label);
}

// ------------------------------------------------------------------ state and requests

function readState() {
  const m = /state=([^&]*)/.exec(location.hash);
  let s = {};
  if (m) { try { s = JSON.parse(decodeURIComponent(m[1])); } catch (e) { s = {}; } }
  s.filters = s.filters || {};
  s.hidden = s.hidden || [];
  s.colorBy = s.colorBy || "class";
  return s;
}

function writeState() {
  history.replaceState(null, "", "#state=" + encodeURIComponent(JSON.stringify(state)));
}

function serverState() {
  return JSON.stringify({ filters: state.filters, eval: state.eval || null, sort: state.sort || null });
}

async function api(path, params) {
  const q = new URLSearchParams(params || {});
  const r = await fetch(path + (q.toString() ? "?" + q : ""), { credentials: "same-origin" });
  const body = r.headers.get("content-type") && r.headers.get("content-type").includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const msg = body && body.error ? body.error : String(body);
    document.getElementById("error").textContent = msg;
    throw new Error(msg);
  }
  document.getElementById("error").textContent = "";
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e && k !== "list") e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ------------------------------------------------------------------ masks

const maskImages = new Map();  // data URL -> Promise<ImageData>

function maskData(url) {
  if (!maskImages.has(url)) {
    maskImages.set(url, new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        resolve(g.getImageData(0, 0, c.width, c.height));
      };
      img.onerror = reject;
      img.src = url;
    }));
  }
  return maskImages.get(url);
}

// the masks a set of labels needs, decoded (so drawing stays synchronous)
async function decodeMasks(labels) {
  const jobs = [];
  for (const label of Object.values(labels)) {
    if (!label) continue;
    for (const obj of objectsOf(label)) {
      if (obj.mask && obj.mask.png) jobs.push(maskData(obj.mask.png).then((d) => { obj.mask.data = d; }));
    }
    for (const key of ["mask", "map"]) {
      if ((label._cls === "Segmentation" || label._cls === "Heatmap") && label[key] && label[key].png) {
        jobs.push(maskData(label[key].png).then((d) => { label[key].data = d; }));
      }
    }
  }
  await Promise.all(jobs);
}

function tinted(data, colorFor) {  // ImageData of values -> a canvas of colours
  const c = document.createElement("canvas");
  c.width = data.width; c.height = data.height;
  const g = c.getContext("2d");
  const out = g.createImageData(data.width, data.height);
  for (let i = 0; i < data.data.length; i += 4) {
    const rgba = colorFor(data.data[i]);
    if (rgba) { out.data[i] = rgba[0]; out.data[i + 1] = rgba[1]; out.data[i + 2] = rgba[2]; out.data[i + 3] = rgba[3]; }
  }
  g.putImageData(out, 0, 0);
  return c;
}

function heatColor(v) {  // 0..255 -> a blue-to-red ramp, transparent at 0
  if (v === 0) return null;
  const t = v / 255;
  return [Math.round(255 * Math.min(1, 2 * t)), Math.round(255 * (1 - Math.abs(2 * t - 1))), Math.round(255 * Math.max(0, 1 - 2 * t)), Math.round(200 * t)];
}

// ------------------------------------------------------------------ drawing

function objectsOf(label) {
  const key = LIST_KEYS[label._cls];
  if (key) return label[key] || [];
  if (label._cls === "Detection" || label._cls === "Keypoint" || label._cls === "Classification") return [label];
  return [];
}

function skeletonEdges(label) {
  const sk = info && info.skeleton;
  if (!sk) return [];
  if (sk.edges) return sk.edges;
  if (Array.isArray(sk)) return sk;
  return (sk[label] && sk[label].edges) || [];
}

function caption(g, x, y, text, color) {
  g.font = "12px system-ui, sans-serif";
  const w = g.measureText(text).width + 6;
  g.fillStyle = css(color);
  g.fillRect(x, y, w, 16);
  g.fillStyle = color[0] * 0.299 + color[1] * 0.587 + color[2] * 0.114 > 150 ? "#000" : "#fff";
  g.fillText(text, x + 3, y + 12);
}

const fmt = (c) => (typeof c === "number" ? " " + c.toFixed(2) : "");

// Draws {field: label} over an image drawn at w x h on the 2-D context g;
// returns {field: number of objects drawn}.
function drawLabels(g, labels, w, h) {
  const gt = new Set(info.gt_fields);
  const drawn = {};
  const captions = [];
  const fields = Object.keys(labels).filter((f) => labels[f] && !state.hidden.includes(f));
  // overlays first: semantic masks, heatmaps, instance masks
  g.imageSmoothingEnabled = false;
  for (const f of fields) {
    const label = labels[f];
    if (label._cls === "Segmentation" && label.mask && label.mask.data) {
      const targets = label.mask_targets || {};
      const a = Math.round(255 * MASK_ALPHA);
      g.drawImage(tinted(label.mask.data, (v) => (v ? [...colorOf(targets[String(v)] || String(v)), a] : null)), 0, 0, w, h);
      drawn[f] = (label.mask.values || []).filter((v) => v).length;
    }
    if (label._cls === "Heatmap" && label.map && label.map.data) {
      g.drawImage(tinted(label.map.data, heatColor), 0, 0, w, h);
      drawn[f] = 1;
    }
    for (const obj of objectsOf(label)) {
      if (obj.mask && obj.mask.data && obj.bounding_box) {
        const [x, y] = obj.bounding_box;
        const [mh, mw] = obj.mask.shape;
        const col = objectColor(f, obj);
        // the mask's top-left pixel is at round(x * W), round(y * H) of the image (modelzoo.masks);
        // mw x mh pixels of the image it was made for (metadata) span mw / W of this drawing
        const W = (labels._size && labels._size[0]) || w, H = (labels._size && labels._size[1]) || h;
        const px = Math.round(x * W) / W * w, py = Math.round(y * H) / H * h;
        g.drawImage(tinted(obj.mask.data, (v) => (v ? [...col, Math.round(255 * MASK_ALPHA)] : null)), px, py, mw / W * w, mh / H * h);
      }
    }
  }
  g.imageSmoothingEnabled = true;
  for (const f of fields) {
    const label = labels[f];
    const isGt = gt.has(f) || gt.has(f.replace(/^frames\./, ""));
    let n = drawn[f] || 0;
    for (const obj of objectsOf(label)) {
      const col = objectColor(f, obj);
      if (label._cls === "Classification" || label._cls === "Classifications") {
        captions.push([`${f}: ${obj.label}${fmt(obj.confidence)}`, col]);
        n++;
        continue;
      }
      if (obj.bounding_box && (label._cls === "Detection" || label._cls === "Detections")) {
        const [x, y, bw, bh] = obj.bounding_box;
        g.strokeStyle = css(col);
        g.lineWidth = isGt ? 2 : 3;
        g.setLineDash(isGt ? [7, 4] : []);
        g.strokeRect(x * w, y * h, bw * w, bh * h);
        g.setLineDash([]);
        if (w > 120) caption(g, x * w, Math.max(0, y * h - (isGt ? 0 : 16)), `${obj.label == null ? "" : obj.label}${fmt(obj.confidence)}`, col);
        n++;
      }
      if (obj.points) {
        const pts = obj.points.map((p) => (p && p[0] != null && p[1] != null ? [p[0] * w, p[1] * h] : null));
        g.strokeStyle = css(col);
        g.lineWidth = 2;
        g.setLineDash(isGt ? [5, 3] : []);
        for (const edge of skeletonEdges(obj.label)) {
          for (let i = 0; i + 1 < edge.length; i++) {
            const a = pts[edge[i]], b = pts[edge[i + 1]];
            if (a && b) { g.beginPath(); g.moveTo(a[0], a[1]); g.lineTo(b[0], b[1]); g.stroke(); }
          }
        }
        g.setLineDash([]);
        g.fillStyle = css(col);
        for (const p of pts) {
          if (p) { g.beginPath(); g.arc(p[0], p[1], 4, 0, 2 * Math.PI); g.fill(); }
        }
        n++;
      }
    }
    drawn[f] = n;
  }
  let cy = 2;
  for (const [text, col] of captions) { caption(g, 2, cy, text, col); cy += 18; }
  return drawn;
}

// sizes a canvas over an element's drawn box and returns its context
function overlayOn(canvas, target, w, h) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  canvas.style.width = w + "px"; canvas.style.height = h + "px";
  canvas.style.left = target.offsetLeft + "px"; canvas.style.top = target.offsetTop + "px";
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  return g;
}

// ------------------------------------------------------------------ grid

function sizeOf(sample) {
  const m = sample.metadata || {};
  return m.width && m.height ? [m.width, m.height] : null;
}

function drawTile(tile, sample) {
  const img = tile.querySelector("img");
  const canvas = tile.querySelector("canvas");
  if (!img.complete || !img.naturalWidth) return;
  const w = img.offsetWidth, h = img.offsetHeight;
  const g = overlayOn(canvas, img, w, h);
  canvas.style.left = (tile.clientWidth - w) / 2 + "px";
  canvas.style.top = (100 - h / 2) + "px";
  const labels = Object.assign({}, sample.labels);
  Object.defineProperty(labels, "_size", { value: sizeOf(sample), enumerable: false });
  const drawn = drawLabels(g, labels, w, h);
  tile.dataset.objects = JSON.stringify(drawn);
  tile.dataset.drawn = "1";
}

function makeTile(sample) {
  const img = el("img", { alt: "", draggable: false });
  const canvas = el("canvas");
  const name = sample.filepath ? sample.filepath.split("/").pop() : sample.id;
  const tile = el("div", { className: "tile", dataset: { id: sample.id, drawn: "0" }, title: sample.filepath || "" },
    img, canvas, el("div", { className: "cap" }, name));
  tile._sample = sample;
  const ready = decodeMasks(sample.labels);
  img.onload = () => ready.then(() => drawTile(tile, sample));
  img.onerror = () => { tile.dataset.drawn = "error"; };
  img.src = `/media/${sample.id}/thumb`;
  tile.onclick = () => openSample(sample.id);
  return tile;
}

async function loadPage() {
  if (loading || exhausted) return;
  loading = true;
  const mine = generation;
  try {
    const params = { state: serverState() };
    if (cursor) params.after = cursor;
    const body = await api("/api/samples", params);
    if (mine !== generation) return;
    const grid = document.getElementById("grid");
    for (const s of body.samples) grid.append(makeTile(s));
    grid.dataset.loaded = String(grid.children.length);
    cursor = body.next;
    exhausted = !body.next;
    grid.dataset.complete = exhausted ? "1" : "0";
  } finally {
    loading = false;
  }
  if (!exhausted && mine === generation && sentinelVisible()) loadPage();
}

function sentinelVisible() {
  const r = document.getElementById("sentinel").getBoundingClientRect();
  return r.top < window.innerHeight + 400;
}

function redrawGrid() {
  for (const tile of document.querySelectorAll(".tile")) drawTile(tile, tile._sample);
}

async function refresh() {
  writeState();
  generation++;
  cursor = null; exhausted = false; loading = false;
  const grid = document.getElementById("grid");
  grid.replaceChildren();
  grid.dataset.loaded = "0"; grid.dataset.complete = "0";
  const count = document.getElementById("count");
  count.dataset.count = "";
  const mine = generation;
  document.body.dataset.settled = "0";  // tests (and people) can tell when the page has caught up
  const facets = api("/api/facets", { state: serverState() }).then((f) => {
    if (mine !== generation) return;
    count.textContent = `${f.count} samples`;
    count.dataset.count = String(f.count);
    renderFacets(f);
  });
  await Promise.all([loadPage(), facets]);
  if (mine === generation) document.body.dataset.settled = "1";
}

// ------------------------------------------------------------------ sidebar

function filterOf(field) {
  return state.filters[field] || (state.filters[field] = {});
}

function cleanFilters() {
  for (const [f, spec] of Object.entries(state.filters)) {
    for (const k of Object.keys(spec)) if (spec[k] == null) delete spec[k];
    if (!Object.keys(spec).length) delete state.filters[f];
  }
}

function renderFields() {
  const box = document.getElementById("fields");
  box.replaceChildren();
  const gt = new Set(info.gt_fields);
  const fields = info.label_fields.concat(info.frame_label_fields.map((f) => "frames." + f));
  for (const f of fields) {
    const check = el("input", { type: "checkbox", checked: !state.hidden.includes(f), dataset: { field: f }, className: "field-toggle" });
    check.onchange = () => {
      state.hidden = check.checked ? state.hidden.filter((x) => x !== f) : state.hidden.concat([f]);
      writeState(); redrawGrid(); if (current) drawCurrent();
    };
    const swatch = el("span", { className: "swatch", dataset: { field: f } });
    swatch.style.background = css(colorOf(f));
    const type = f.startsWith("frames.") ? info.frame_fields[f.slice(7)] : info.fields[f];
    const head = el("label", { className: "field-head" }, check, swatch, f, el("span", { className: "gt-badge" },
      (gt.has(f) ? "ground truth · " : "") + type));
    const body = el("div", { className: "field-body", dataset: { field: f } });
    if (!f.startsWith("frames.")) {
      const ex = el("select", { className: "exists", dataset: { field: f } },
        el("option", { value: "" }, "any sample"), el("option", { value: "1" }, "with this field"), el("option", { value: "0" }, "without it"));
      const cur = (state.filters[f] || {}).exists;
      ex.value = cur === true ? "1" : cur === false ? "0" : "";
      ex.onchange = () => { filterOf(f).exists = ex.value === "" ? null : ex.value === "1"; cleanFilters(); refresh(); };
      body.append(ex);
    }
    box.append(el("div", { className: "field", dataset: { field: f } }, head, body));
  }
}

function renderFacets(f) {
  for (const [field, facet] of Object.entries(f.fields)) {
    const body = document.querySelector(`.field-body[data-field="${CSS.escape(field)}"]`);
    if (!body) continue;
    for (const old of body.querySelectorAll(".classes, .conf")) old.remove();
    const spec = state.filters[field] || {};
    const list = el("div", { className: "classes", dataset: { field } });
    for (const [name, n] of facet.classes) {
      const check = el("input", { type: "checkbox", checked: !spec.classes || spec.classes.includes(name),
        className: "class-toggle", dataset: { field, class: name } });
      check.onchange = () => {
        const all = facet.classes.map((c) => c[0]);
        let chosen = spec.classes ? spec.classes.slice() : all.slice();
        chosen = check.checked ? chosen.concat([name]) : chosen.filter((c) => c !== name);
        filterOf(field).classes = chosen.length === all.length && !spec.classes ? null : chosen;
        cleanFilters(); refresh();
      };
      const sw = el("span", { className: "swatch", dataset: { class: name } });
      sw.style.background = css(colorOf(name));
      list.append(el("label", { className: "class-row" }, check, sw, name,
        el("span", { className: "n", dataset: { field, class: name, count: String(n) } }, String(n))));
    }
    body.append(list);
    if (facet.confidence) {
      const [lo, hi] = spec.confidence || [null, null];
      const mk = (cls, v, ph) => el("input", { type: "number", step: "0.01", min: "0", max: "1", className: cls,
        value: v == null ? "" : String(v), placeholder: ph.toFixed(2), dataset: { field } });
      const loIn = mk("conf-lo", lo, facet.confidence[0]), hiIn = mk("conf-hi", hi, facet.confidence[1]);
      const apply = () => {
        const a = loIn.value === "" ? null : Number(loIn.value), b = hiIn.value === "" ? null : Number(hiIn.value);
        filterOf(field).confidence = a == null && b == null ? null : [a == null ? 0 : a, b == null ? 1 : b];
        cleanFilters(); refresh();
      };
      loIn.onchange = apply; hiIn.onchange = apply;
      body.append(el("div", { className: "conf" }, "confidence ", loIn, " – ", hiIn));
    }
  }
}

function renderControls() {
  const evalKey = document.getElementById("eval-key");
  const kinds = document.getElementById("eval-kinds");
  const keys = Object.keys(info.evaluations);
  document.getElementById("eval-section").hidden = !keys.length;
  for (const k of keys) evalKey.append(el("option", { value: k }, k));
  const renderKinds = () => {
    kinds.replaceChildren();
    const ev = state.eval || {};
    if (!ev.key) return;
    const rec = info.evaluations[ev.key];
    const options = rec.kind === "detection" ? ["tp", "fp", "fn"] : ["correct", "incorrect"];
    for (const kind of ["", ...options]) {
      const b = el("label", {}, el("input", { type: "radio", name: "eval-kind", value: kind, checked: (ev.kind || "") === kind,
        className: "eval-kind", onchange: () => { state.eval.kind = kind || null; refresh(); } }), " " + (kind || "all") + " ");
      if (EVAL_COLORS[kind]) b.style.color = css(EVAL_COLORS[kind]);
      kinds.append(b);
    }
  };
  evalKey.value = (state.eval && state.eval.key) || "";
  evalKey.onchange = () => { state.eval = evalKey.value ? { key: evalKey.value } : null; renderKinds(); refresh(); };
  renderKinds();
  const sort = document.getElementById("sort-field");
  const reverse = document.getElementById("sort-reverse");
  for (const [f, t] of Object.entries(info.fields)) {
    if (["double", "int", "long", "string", "bool", "date", "decimal"].includes(t)) sort.append(el("option", { value: f }, f));
  }
  sort.append(el("option", { value: "filepath" }, "filepath"));
  sort.value = (state.sort && state.sort.field) || "";
  reverse.checked = !!(state.sort && state.sort.reverse);
  const applySort = () => { state.sort = sort.value ? { field: sort.value, reverse: reverse.checked } : null; refresh(); };
  sort.onchange = applySort; reverse.onchange = applySort;
  const colorBy = document.getElementById("color-by");
  colorBy.value = state.colorBy;
  colorBy.onchange = () => { state.colorBy = colorBy.value; writeState(); redrawGrid(); if (current) drawCurrent(); };
  document.getElementById("reset").onclick = () => { state.filters = {}; state.eval = null; state.sort = null; location.reload(); };
}

// ------------------------------------------------------------------ sample view

const modal = () => document.getElementById("modal");

async function openSample(id) {
  const sample = await api(`/api/sample/${id}`, { state: serverState() });
  current = sample;
  state.sample = id; writeState();
  const m = modal();
  m.hidden = false;
  m.dataset.sampleId = id;
  m.dataset.drawn = "0";
  document.getElementById("sample-name").textContent = (sample.filepath || id).split("/").pop();
  document.getElementById("prev").disabled = !sample.prev;
  document.getElementById("next").disabled = !sample.next;
  renderFieldTable(sample);
  const img = document.getElementById("full");
  const video = document.getElementById("player");
  const bar = document.getElementById("video-bar");
  const isVideo = sample.media_type === "video";
  img.hidden = isVideo; video.hidden = !isVideo; bar.hidden = !isVideo;
  frameCache = {}; frameChunks = {};
  frameMode = false; setPlaying(false);
  m.dataset.mode = isVideo ? "video" : "image";
  if (isVideo) {
    img.removeAttribute("src");
    openVideo(sample, video);
    return;
  }
  video.pause(); video.removeAttribute("src");
  await decodeMasks(labelsOf(sample));
  if (current !== sample) return;
  img.onload = () => { if (current === sample) drawCurrent(); };
  img.src = `/media/${id}/full`;
}

function labelsOf(sample) {
  const out = {};
  for (const f of info.label_fields) if (sample[f]) out[f] = sample[f];
  Object.defineProperty(out, "_size", { value: sizeOf(sample), enumerable: false });
  return out;
}

function drawCurrent() {
  const sample = current;
  if (!sample) return;
  const m = modal();
  const canvas = document.getElementById("overlay");
  if (sample.media_type === "video") { drawFrame(); return; }
  const img = document.getElementById("full");
  if (!img.complete || !img.naturalWidth) return;
  const g = overlayOn(canvas, img, img.offsetWidth, img.offsetHeight);
  const drawn = drawLabels(g, labelsOf(sample), img.offsetWidth, img.offsetHeight);
  m.dataset.objects = JSON.stringify(drawn);
  m.dataset.drawn = "1";
}

function renderFieldTable(sample) {
  const rows = [];
  for (const [k, v] of Object.entries(sample)) {
    if (k === "prev" || k === "next") continue;
    let text;
    if (v && typeof v === "object" && v._cls) {
      const objs = objectsOf(v);
      text = objs.length ? objs.map((o) => `${o.label == null ? "" : o.label}${fmt(o.confidence)}`).join(", ") : v._cls;
      text = `${v._cls}: ${text}`;
    } else {
      text = typeof v === "object" ? JSON.stringify(v) : String(v);
    }
    rows.push(el("tr", { dataset: { field: k } }, el("td", {}, k), el("td", {}, text)));
  }
  document.getElementById("modal-fields").replaceChildren(el("table", {}, el("tbody", {}, ...rows)));
}

function closeSample() {
  current = null;
  const video = document.getElementById("player");
  video.pause();
  modal().hidden = true;
  delete state.sample; writeState();
}

function step(direction) {
  if (!current) return;
  const id = direction > 0 ? current.next : current.prev;
  if (id) openSample(id);
}

// ------------------------------------------------------------------ video

const CHUNK = 120;

function fpsOf(sample) {
  return (sample.metadata && sample.metadata.frame_rate) || 30;
}

function frameLabels(n) {
  const start = Math.floor((n - 1) / CHUNK) * CHUNK + 1;
  if (!(start in frameChunks)) {
    const sample = current;
    frameChunks[start] = api(`/api/frames/${sample.id}`, { start, count: CHUNK }).then((body) => {
      if (current !== sample) return;
      for (let i = start; i < start + CHUNK; i++) frameCache[i] = body.frames[String(i)] || {};
      const next = start + CHUNK;  // fetch ahead: playback never waits for labels
      if (!(next in frameChunks) && next <= totalFrames(sample)) frameLabels(next);
      drawFrame();
    });
  }
  return frameCache[n];
}

function totalFrames(sample) {
  return (sample.metadata && sample.metadata.total_frame_count) || Infinity;
}

let shownFrame = 0;

function drawFrame() {
  const sample = current;
  // the browser's player, or (frame mode) the server's JPEG of each frame
  const target = frameMode ? document.getElementById("full") : document.getElementById("player");
  const natural = frameMode ? [target.naturalWidth, target.naturalHeight] : [target.videoWidth, target.videoHeight];
  if (!sample || sample.media_type !== "video" || !natural[0]) return;
  const n = shownFrame;
  const canvas = document.getElementById("overlay");
  const g = overlayOn(canvas, target, target.offsetWidth, target.offsetHeight);
  const labels = {};
  for (const f of info.label_fields) if (sample[f]) labels[f] = sample[f];
  const frame = frameLabels(n);
  if (frame) for (const [f, v] of Object.entries(frame)) if (v && v._cls) labels["frames." + f] = v;
  Object.defineProperty(labels, "_size", { value: natural, enumerable: false });
  const drawn = drawLabels(g, labels, target.offsetWidth, target.offsetHeight);
  const bar = document.getElementById("frame");
  bar.textContent = `#${n}`;
  bar.dataset.frame = String(n);
  bar.dataset.labelsFrame = frame ? String(n) : "";
  modal().dataset.objects = JSON.stringify(drawn);
  modal().dataset.drawn = frame ? "1" : "0";
  if (document.activeElement !== document.getElementById("frame-input")) document.getElementById("frame-input").value = n;
}

function openVideo(sample, video) {
  const fps = fpsOf(sample);
  shownFrame = 1;
  document.getElementById("frame-total").textContent = String(totalFrames(sample));
  const onFrame = (now, meta) => {
    if (current !== sample) return;
    shownFrame = Math.round(meta.mediaTime * fps) + 1;  // frame n is shown from (n - 1) / fps
    drawFrame();
    video.requestVideoFrameCallback(onFrame);
  };
  video.onloadeddata = () => { drawFrame(); };
  video.onseeked = () => { if (!("requestVideoFrameCallback" in video)) { shownFrame = Math.round(video.currentTime * fps) + 1; drawFrame(); } };
  video.onerror = () => {  // a codec the browser lacks: frame by frame, decoded by the server
    if (current !== sample || frameMode) return;
    document.getElementById("error").textContent =
      `This browser cannot play ${sample.metadata ? sample.metadata.codec : "this video"}: shown frame by frame`;
    enterFrameMode(sample);
  };
  if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(onFrame);
  video.muted = true;
  video.src = `/media/${sample.id}/full`;
  frameLabels(1);
}

let frameMode = false;
let framePlaying = false;

function enterFrameMode(sample) {
  frameMode = true;
  modal().dataset.mode = "frames";
  const video = document.getElementById("player");
  video.removeAttribute("src");
  video.hidden = true;
  document.getElementById("full").hidden = false;
  showFrame(sample, 1);
}

function showFrame(sample, n) {
  const img = document.getElementById("full");
  const started = performance.now();
  img.onload = () => {
    if (current !== sample) return;
    shownFrame = n;
    drawFrame();
    if (framePlaying && n < totalFrames(sample)) {
      setTimeout(() => { if (framePlaying && current === sample) showFrame(sample, n + 1); },
        Math.max(0, 1000 / fpsOf(sample) - (performance.now() - started)));
    } else {
      setPlaying(false);
    }
  };
  img.onerror = () => setPlaying(false);  // past the last frame
  img.src = `/media/${sample.id}/frame/${n}`;
}

function setPlaying(on) {
  framePlaying = on;
  document.getElementById("play").textContent = on ? "pause" : "play";
}

function togglePlay() {
  const video = document.getElementById("player");
  if (!frameMode) { if (video.paused) video.play(); else video.pause(); return; }
  setPlaying(!framePlaying);
  if (framePlaying) showFrame(current, shownFrame >= totalFrames(current) ? 1 : shownFrame + 1);
}

function seekFrame(n) {
  const sample = current, video = document.getElementById("player");
  if (!sample) return;
  n = Math.max(1, Math.min(n, totalFrames(sample)));
  if (frameMode) { setPlaying(false); showFrame(sample, n); return; }
  video.pause();
  video.currentTime = (n - 1 + 0.5) / fpsOf(sample);  // the middle of frame n: no rounding to a neighbour
}

// ------------------------------------------------------------------ wiring

document.addEventListener("keydown", (e) => {
  const typing = e.target.tagName === "SELECT" || (e.target.tagName === "INPUT" && !["checkbox", "radio"].includes(e.target.type));
  if (!current || typing) return;
  if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
  else if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
  else if (e.key === "Escape") closeSample();
  else if (current.media_type === "video" && e.key === " ") { togglePlay(); e.preventDefault(); }
  else if (current.media_type === "video" && e.key === ".") seekFrame(shownFrame + 1);
  else if (current.media_type === "video" && e.key === ",") seekFrame(shownFrame - 1);
});

async function main() {
  info = await api("/api/info");
  document.getElementById("dataset-name").textContent = info.name + (info.view ? " (view)" : "");
  document.title = `${info.name} · modelzoo`;
  renderFields();
  renderControls();
  document.getElementById("prev").onclick = () => step(-1);
  document.getElementById("next").onclick = () => step(1);
  document.getElementById("close").onclick = closeSample;
  const video = document.getElementById("player");
  document.getElementById("play").onclick = togglePlay;
  video.onplay = () => { document.getElementById("play").textContent = "pause"; };
  video.onpause = () => { document.getElementById("play").textContent = "play"; };
  const frameInput = document.getElementById("frame-input");
  frameInput.onchange = () => seekFrame(parseInt(frameInput.value, 10) || 1);
  new IntersectionObserver((entries) => { if (entries.some((x) => x.isIntersecting)) loadPage(); },
    { root: document.getElementById("grid-wrap"), rootMargin: "400px" }).observe(document.getElementById("sentinel"));
  window.addEventListener("resize", () => { redrawGrid(); if (current) drawCurrent(); });
  await refresh();
  if (state.sample) openSample(state.sample);
  document.body.dataset.ready = "1";
}

main();
